"""Loss curves and other metric plots from a run's ``metrics.jsonl``.

``plot_metrics(DIR)`` groups the metrics of ``DIR/metrics.jsonl`` into families by
the last part of their name and writes one PNG per family to ``DIR/plots/``:

- ``loss.png``: every ``*/loss`` series; the training loss is drawn faint with a
  smoothed line over it (a bias-corrected exponential moving average), evaluation
  losses with markers; log scale when the values span a factor of 3 or more;
- ``bits_per_byte.png``, ``accuracy.png`` (training curves smoothed as above),
  ``lr.png`` (learning rate, unsmoothed);
- ``throughput.png``: tokens per second and step time, one panel each;
- one ``NAME.png`` for any other family (``train/grad_norm`` -> ``grad_norm.png``),
  training curves smoothed.

If a step was logged twice (a resumed run whose file was not truncated), the later
value wins. Non-finite values (a diverged loss) are left out of the curves.

The figures are drawn with ``matplotlib.figure.Figure`` and its Agg canvas, never
with ``pyplot``, so no display is needed and the caller's backend is untouched.

Example:
  >>> paths = plot_metrics("runs/demo")  # doctest: +SKIP
  >>> [p.name for p in paths]  # doctest: +SKIP
  ['loss.png', 'bits_per_byte.png', 'lr.png', 'throughput.png']
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np
from matplotlib.backends import backend_agg
from matplotlib.figure import Figure

from seqjax.train import metrics as metrics_lib

PLOTS_DIR = "plots"

# family -> (figure title, y label, log scale allowed, smooth training curves)
FAMILIES = {
    "loss": ("Loss", "cross-entropy (nats)", True, True),
    "bits_per_byte": ("Bits per byte", "bits per byte", True, True),
    "accuracy": ("Accuracy", "accuracy", False, True),
    "lr": ("Learning rate", "learning rate", False, False),
    "throughput": ("Throughput", "", False, False),
}
THROUGHPUT = {"tokens_per_sec": "tokens per second", "step_time": "seconds per step"}
ORDER = ("loss", "bits_per_byte", "accuracy", "lr", "throughput")


def family_of(name: str) -> str:
    """The family of a metric name: ``"eval/loss" -> "loss"``,
    ``"train/tokens_per_sec" -> "throughput"``."""
    last = name.rsplit("/", 1)[-1]
    return "throughput" if last in THROUGHPUT else last


def smooth(values: Sequence[float], weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average.

    .. math:: m_t = w\\,m_{t-1} + (1-w)\\,x_t,\\qquad s_t = m_t / (1 - w^{t+1})

    Args:
      values: ``[n]`` finite values in step order.
      weight: ``w`` in ``[0, 1)``; 0 returns ``values``.

    Returns:
      ``[n]`` float64 smoothed values; the first equals ``values[0]``.

    Raises:
      ValueError: when ``weight`` is outside ``[0, 1)``.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight must be in [0, 1), got {weight!r}.")
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    m = 0.0
    for t, v in enumerate(x):
        m = weight * m + (1.0 - weight) * v
        out[t] = m / (1.0 - weight ** (t + 1))
    return out


def _series(events: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Metric name -> (steps, values), sorted by step, later duplicates winning,
    non-finite values dropped."""
    by_name: dict[str, dict[int, float]] = {}
    for event in events:
        step = int(event["step"])
        for name, value in event.items():
            if name == "step" or isinstance(value, str) or value is None:
                continue
            by_name.setdefault(name, {})[step] = float(value)
    series = {}
    for name, points in by_name.items():
        steps = np.array(sorted(points), dtype=np.int64)
        values = np.array([points[s] for s in steps], dtype=np.float64)
        keep = np.isfinite(values)
        if keep.any():
            series[name] = (steps[keep], values[keep])
    return series


def _use_log(values: list[np.ndarray]) -> bool:
    allv = np.concatenate(values)
    return bool(np.all(allv > 0) and allv.max() / allv.min() >= 3.0)


def _auto_weight(n: int) -> float:
    """Smoothing weight whose effective window is about ``n / 25`` points."""
    window = max(1.0, n / 25.0)
    return 1.0 - 1.0 / window


def _new_figure(rows: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(7.0, 4.0 + 2.5 * (rows - 1)), dpi=100, layout="constrained")
    backend_agg.FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes


def _plot_family(
    family: str,
    names: list[str],
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    smoothing: float | None,
    run: str,
) -> Figure:
    default = (family.replace("_", " "), "", False, True)
    title, ylabel, log_ok, smoothed = FAMILIES.get(family, default)
    if family == "throughput":
        kinds = list(THROUGHPUT)
        names = sorted(names, key=lambda n: (kinds.index(n.rsplit("/", 1)[-1]), n))
        fig, axes = _new_figure(len(names))
        for ax, name in zip(axes, names, strict=True):
            steps, values = series[name]
            ax.plot(steps, values, marker="." if len(steps) < 50 else None)
            ax.set_ylabel(THROUGHPUT[name.rsplit("/", 1)[-1]])
            ax.set_title(name)
            ax.grid(True, alpha=0.3)
        axes[-1].set_xlabel("step")
        fig.suptitle(f"{title} — {run}")
        return fig
    fig, (ax,) = _new_figure()
    for name in names:
        steps, values = series[name]
        if smoothed and name.startswith("train/") and len(steps) > 2:
            weight = _auto_weight(len(steps)) if smoothing is None else smoothing
            (raw,) = ax.plot(steps, values, alpha=0.3, linewidth=1.0, label=name)
            ax.plot(
                steps,
                smooth(values, weight),
                color=raw.get_color(),
                linewidth=2.0,
                label=f"{name} (smoothed)",
            )
        else:
            ax.plot(steps, values, marker="o", markersize=4, label=name)
    if log_ok and _use_log([series[n][1] for n in names]):
        ax.set_yscale("log")
    if family == "accuracy":
        lo = min(float(series[n][1].min()) for n in names)
        hi = max(float(series[n][1].max()) for n in names)
        if 0.0 <= lo and hi <= 1.0:
            ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or family.replace("_", " "))
    ax.set_title(f"{title} — {run}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def plot_metrics(
    workdir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    smoothing: float | None = None,
    dpi: int = 120,
) -> list[pathlib.Path]:
    """Writes one PNG per metric family of ``workdir/metrics.jsonl``.

    Args:
      workdir: the run's work directory (or its ``metrics.jsonl``).
      out: the folder for the PNGs (created); defaults to ``workdir/plots``.
      smoothing: the training curves' moving-average weight in ``[0, 1)``;
        ``None`` picks one with an effective window of about 1/25 of the points.
      dpi: resolution of the PNGs.

    Returns:
      The written paths, ``loss.png`` first, then bits per byte, accuracy,
      learning rate, throughput and any other family in name order.

    Raises:
      FileNotFoundError: when there is no metrics file.
      ValueError: when it has no events with finite metric values, or
        ``smoothing`` is outside ``[0, 1)``.

    Example:
      >>> plot_metrics("runs/demo")  # doctest: +SKIP
      [PosixPath('runs/demo/plots/loss.png'), ...]
    """
    if smoothing is not None and not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}.")
    file = metrics_lib.metrics_path(workdir)
    events = metrics_lib.read_metrics(file)
    series = _series(events)
    if not series:
        raise ValueError(
            f"{file} has no metrics to plot ({len(events)} events, none with a "
            "finite metric value); train for a few steps first."
        )
    families: dict[str, list[str]] = {}
    for name in sorted(series):
        families.setdefault(family_of(name), []).append(name)
    order = [f for f in ORDER if f in families]
    order += sorted(f for f in families if f not in ORDER)
    out_dir = pathlib.Path(out) if out is not None else file.parent / PLOTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    run = file.parent.resolve().name or str(file.parent)
    paths = []
    for family in order:
        names = sorted(families[family], key=lambda n: (not n.startswith("train/"), n))
        fig = _plot_family(family, names, series, smoothing, run)
        path = out_dir / f"{_safe(family)}.png"
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned.strip(".") or "metric"
