"""The per-run continual-learning report: a Markdown table, a CSV and two PNG plots.

``write_report(DIR, R, b, task_names, title=...)`` writes

- ``DIR/cl_report.md``: the accuracy matrix ``R`` in percent (one row per training
  stage, one column per task), the random-init accuracies ``b`` and the metrics of
  ``seqjax.cl.metrics`` (ACC, average incremental accuracy, BWT, FWT, forgetting);
- ``DIR/cl_matrix.csv``: ``R`` as fractions at full precision under a header of
  task names (``np.loadtxt(path, delimiter=",", skiprows=1)`` reads it back);
- ``DIR/r_matrix.png``: ``R`` as an annotated heatmap;
- ``DIR/task_accuracy.png``: each task's accuracy over the stream, one line a task.

``R[i, j]`` is the test accuracy (a fraction in ``[0, 1]``) on task ``j`` after
training through task ``i``; the rows of tasks not yet trained are all NaN, and a
partial report shows them empty and computes the metrics over the trained tasks.
Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half a report file.

matplotlib is imported inside the plotting functions, so importing this module is
cheap; figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never
with ``pyplot``, so no display is needed and the caller's backend is untouched.

Example:
  >>> paths = write_report("runs/cl", R, b, ["t0", "t1"], title="EWC")  # doctest: +SKIP
  >>> sorted(paths)  # doctest: +SKIP
  ['accuracy_png', 'csv', 'markdown', 'matrix_png']
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np

from seqjax.cl import metrics

MARKDOWN_FILE = "cl_report.md"
CSV_FILE = "cl_matrix.csv"
MATRIX_PNG = "r_matrix.png"
ACCURACY_PNG = "task_accuracy.png"

# summary key -> label of its row in the Markdown metrics table
METRIC_LABELS = {
    "acc": "ACC: average accuracy (%)",
    "avg_incremental_acc": "average incremental accuracy (%)",
    "bwt": "BWT: backward transfer (pp)",
    "fwt": "FWT: forward transfer (pp)",
    "forgetting": "forgetting (pp)",
}


def _matrix(R) -> np.ndarray:
    """``R`` as a float64 ``[T, T]`` array of fractions, checked by the metrics."""
    metrics.summary(R)  # raises ValueError naming R for a malformed matrix
    r = np.asarray(R, dtype=np.float64)
    _check_fractions(r, "R")
    return r


def _check_fractions(values: np.ndarray, name: str) -> None:
    """Raises when a finite entry of ``values`` lies outside ``[0, 1]``."""
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError(
            f"{name} must hold accuracies as fractions in [0, 1], got values in "
            f"[{finite.min()}, {finite.max()}] (percentages? divide by 100)."
        )


def _names(task_names: Sequence[str], num_tasks: int) -> list[str]:
    """``task_names`` as a list of ``num_tasks`` strings."""
    if isinstance(task_names, str):
        raise ValueError(
            f"task_names must be a sequence of {num_tasks} names, got the string "
            f"{task_names!r}."
        )
    names = [str(n) for n in task_names]
    if len(names) != num_tasks:
        raise ValueError(
            f"task_names must name the {num_tasks} tasks of R, got {len(names)} "
            f"names: {names!r}."
        )
    return names


def _trained(r: np.ndarray) -> int:
    """The number of trained tasks: the rows of ``r`` that are not all NaN."""
    return int(np.sum(~np.all(np.isnan(r), axis=1)))


def _percent(value: float) -> str:
    """``value`` (a fraction) in percent with one decimal; NaN as an empty cell."""
    if not np.isfinite(value):
        return ""
    return f"{round(100.0 * float(value), 1) + 0.0:.1f}"  # + 0.0: no "-0.0"


def _cell(text: str) -> str:
    """``text`` made safe for a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(R, b, task_names: Sequence[str], title: str) -> str:
    """The report's Markdown section: the accuracy matrix and its metrics.

    The matrix table has a row ``after task i: NAME`` per training stage and a
    column per task, accuracies in percent with one decimal (an empty cell for
    NaN), then a ``random init`` row for ``b`` when given. The metrics table gives
    ACC and average incremental accuracy in percent and BWT, FWT (when ``b`` is
    given) and forgetting in percentage points, over the trained tasks.

    Args:
      R: ``[T, T]`` accuracy matrix of fractions; ``R[i, j]`` is the accuracy on
        task ``j`` after training through task ``i``; rows of untrained tasks NaN.
      b: ``[T]`` accuracy of the randomly initialised model on each task, or
        ``None``.
      task_names: ``T`` task names.
      title: the section heading.

    Returns:
      The Markdown text, ending with a newline.

    Raises:
      ValueError: when ``R`` or ``b`` is malformed (see ``seqjax.cl.metrics``) or
        holds values outside ``[0, 1]``, or ``task_names`` is not ``T`` names.

    Example:
      >>> print(markdown_table([[0.9]], None, ["mnist"], "demo"))  # doctest: +SKIP
    """
    r = _matrix(R)
    num_tasks = r.shape[0]
    names = _names(task_names, num_tasks)
    stats = metrics.summary(r, b)
    if b is not None:
        base = np.asarray(b, dtype=np.float64)
        _check_fractions(base, "b")
    k = _trained(r)

    lines = [f"## {title}", ""]
    lines.append(
        "Test accuracy (%) on each task (columns) after training through each task "
        f"(rows); {k} of {num_tasks} tasks trained."
    )
    lines.append("")
    lines.append("| trained through | " + " | ".join(_cell(n) for n in names) + " |")
    lines.append("|---|" + "---:|" * num_tasks)
    for i, name in enumerate(names):
        cells = " | ".join(_percent(v) for v in r[i])
        lines.append(f"| after task {i}: {_cell(name)} | {cells} |")
    if b is not None:
        lines.append("| random init | " + " | ".join(_percent(v) for v in base) + " |")
    lines.append("")
    scope = "all" if k == num_tasks else f"the first {k} of"
    lines.append(f"Metrics over {scope} {num_tasks} tasks:")
    lines.append("")
    lines.append("| metric | value |")
    lines.append("|---|---:|")
    for key, value in stats.items():
        lines.append(f"| {METRIC_LABELS[key]} | {_percent(value)} |")
    lines.append("")
    return "\n".join(lines)


def _png_bytes(fig) -> bytes:
    """The PNG encoding of a ``matplotlib.figure.Figure``, drawn on Agg."""
    from matplotlib.backends import backend_agg

    backend_agg.FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _matrix_png(r: np.ndarray, names: list[str], title: str | None) -> bytes:
    """The heatmap of ``r`` (fractions) as PNG bytes."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    t = r.shape[0]
    side = 3.0 + 0.7 * t
    fig = Figure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="0.92")
    image = ax.imshow(np.ma.masked_invalid(100.0 * r), cmap=cmap, vmin=0.0, vmax=100.0)
    for i in range(t):
        for j in range(t):
            if np.isfinite(r[i, j]):
                value = 100.0 * r[i, j]
                ax.text(
                    j,
                    i,
                    f"{value:.1f}",
                    ha="center",
                    va="center",
                    fontsize=9 if t <= 10 else 6,
                    color="black" if value > 60.0 else "white",
                )
    ax.set_xticks(range(t), names, rotation=30, ha="right")
    ax.set_yticks(range(t), [f"{i}: {n}" for i, n in enumerate(names)])
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("trained through task")
    ax.set_title(title or "Accuracy matrix R")
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    return _png_bytes(fig)


def _accuracy_png(r: np.ndarray, names: list[str], title: str | None) -> bytes:
    """Each task's accuracy over the stream as PNG bytes."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    t = r.shape[0]
    fig = Figure(figsize=(max(6.0, 2.0 + 0.6 * t), 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    colors = colormaps["tab10" if t <= 10 else "tab20"].colors
    steps = np.arange(t)
    for j, name in enumerate(names):
        color = colors[j % len(colors)]
        column = 100.0 * r[:, j]
        after = steps >= j
        ax.plot(steps[after], column[after], marker="o", color=color, label=name)
        # before task j is trained (zero-shot accuracy): faint and dashed
        before = steps <= j
        if np.isfinite(column[before]).sum() > 1:
            ax.plot(
                steps[before], column[before], linestyle="--", color=color, alpha=0.4
            )
    ax.set_xticks(steps, [f"{i}: {n}" for i, n in enumerate(names)])
    if t > 4:
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlim(-0.3, t - 0.7)
    ax.set_ylim(0.0, 102.0)
    ax.set_xlabel("after training task i")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Accuracy of each task over the stream")
    ax.grid(True, alpha=0.3)
    ax.legend(title="task", fontsize=8, loc="best")
    return _png_bytes(fig)


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Replaces ``path`` by ``data`` via a temporary file in its folder (mode 644:
    a report is for reading, not the private 600 of ``mkstemp``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def plot_matrix(
    R, task_names: Sequence[str], path, *, title: str | None = None
) -> pathlib.Path:
    """Writes the accuracy matrix as an annotated heatmap PNG.

    Cell ``(i, j)`` is ``100 R[i, j]`` on a 0–100 % colour scale with its value
    printed in it; rows are the training stages ("trained through task"), columns
    the evaluated tasks; NaN cells (untrained tasks) are left grey and blank.

    Args:
      R: ``[T, T]`` accuracy matrix of fractions; rows of untrained tasks NaN.
      task_names: ``T`` task names.
      path: the PNG file to write (atomically); its folder must exist.
      title: the figure title; a generic one by default.

    Returns:
      ``path`` as a ``pathlib.Path``.

    Raises:
      ValueError: when ``R`` is malformed or ``task_names`` is not ``T`` names.
    """
    r = _matrix(R)
    names = _names(task_names, r.shape[0])
    path = pathlib.Path(path)
    _write_atomically(path, _matrix_png(r, names, title))
    return path


def plot_task_accuracy(
    R, task_names: Sequence[str], path, *, title: str | None = None
) -> pathlib.Path:
    """Writes each task's accuracy over the stream as a line plot PNG.

    Task ``j`` is a line of ``100 R[i, j]`` against ``i``, solid with a marker at
    each point from ``i = j`` (the stage that trained it) onwards, dashed and faint
    before (its accuracy before being trained). Untrained stages (NaN rows) are
    left out; the x axis always spans the whole stream.

    Args:
      R: ``[T, T]`` accuracy matrix of fractions; rows of untrained tasks NaN.
      task_names: ``T`` task names, used for the legend and the x ticks.
      path: the PNG file to write (atomically); its folder must exist.
      title: the figure title; a generic one by default.

    Returns:
      ``path`` as a ``pathlib.Path``.

    Raises:
      ValueError: when ``R`` is malformed or ``task_names`` is not ``T`` names.
    """
    r = _matrix(R)
    names = _names(task_names, r.shape[0])
    path = pathlib.Path(path)
    _write_atomically(path, _accuracy_png(r, names, title))
    return path


def _csv_bytes(r: np.ndarray, names: list[str]) -> bytes:
    """``r`` as CSV under a header of ``names``, floats at full precision."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    for row in r:
        writer.writerow(repr(float(v)) for v in row)
    return text.getvalue().encode("utf-8")


def write_report(
    directory, R, b, task_names: Sequence[str], *, title: str
) -> dict[str, pathlib.Path]:
    """Writes the run's report files into ``directory``.

    Files: ``cl_report.md`` (``markdown_table``), ``cl_matrix.csv`` (``R`` as
    fractions with a header of task names), ``r_matrix.png`` (``plot_matrix``) and
    ``task_accuracy.png`` (``plot_task_accuracy``). Everything is computed before
    the first file is written, and each file is replaced atomically. A partial
    ``R`` (rows of untrained tasks NaN) gives a partial report.

    Args:
      directory: the folder to write into; created if missing.
      R: ``[T, T]`` accuracy matrix of fractions; ``R[i, j]`` is the accuracy on
        task ``j`` after training through task ``i``; rows of untrained tasks NaN.
      b: ``[T]`` accuracy of the randomly initialised model on each task, or
        ``None`` (no random-init row and no FWT).
      task_names: ``T`` task names.
      title: the report's heading and the plots' titles.

    Returns:
      ``{"markdown", "csv", "matrix_png", "accuracy_png"}``: the written paths.

    Raises:
      ValueError: when ``R`` or ``b`` is malformed (see ``seqjax.cl.metrics``) or
        holds values outside ``[0, 1]``, or ``task_names`` is not ``T`` names.

    Example:
      >>> paths = write_report("runs/cl", R, b, names, title="EWC")  # doctest: +SKIP
      >>> paths["markdown"]  # doctest: +SKIP
      PosixPath('runs/cl/cl_report.md')
    """
    text = markdown_table(R, b, task_names, title)
    r = np.asarray(R, dtype=np.float64)
    names = _names(task_names, r.shape[0])
    contents = {
        "markdown": (MARKDOWN_FILE, text.encode("utf-8")),
        "csv": (CSV_FILE, _csv_bytes(r, names)),
        "matrix_png": (MATRIX_PNG, _matrix_png(r, names, f"{title}: accuracy matrix")),
        "accuracy_png": (
            ACCURACY_PNG,
            _accuracy_png(r, names, f"{title}: accuracy over the stream"),
        ),
    }
    folder = pathlib.Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, (filename, data) in contents.items():
        paths[key] = folder / filename
        _write_atomically(paths[key], data)
    return paths
