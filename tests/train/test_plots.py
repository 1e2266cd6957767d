"""Loss-curve and metric PNGs from metrics.jsonl."""

import json
import struct

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from seqjax.train import metrics, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_run(workdir, steps=60, eval_every=20, with_accuracy=False):
    rng = np.random.default_rng(0)
    with metrics.MetricsWriter(workdir, tensorboard=False) as writer:
        for step in range(1, steps + 1):
            loss = 5.0 * np.exp(-step / 20) + 0.5 + 0.05 * rng.standard_normal()
            writer.write(
                step,
                {
                    "train/loss": np.float32(loss),
                    "train/lr": 1e-3 * min(1.0, step / 10),
                    "train/tokens_per_sec": 5e4 + 1e3 * rng.standard_normal(),
                    "train/step_time": 0.1 + 0.01 * rng.random(),
                },
            )
            if step % eval_every == 0:
                ev = {"eval/loss": 5.0 * np.exp(-step / 20) + 0.6}
                ev["eval/bits_per_byte"] = ev["eval/loss"] / np.log(2)
                if with_accuracy:
                    ev["eval/accuracy"] = 1.0 - np.exp(-step / 30)
                writer.write(step, ev)


def _check_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (height, width)
    assert width >= 400 and height >= 300
    # something was drawn: many distinct colours and some ink, not a blank canvas
    rgb = (image[..., :3] * 255).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 20
    assert (packed != 0xFFFFFF).mean() > 0.01
    return image


def test_one_png_per_family(tmp_path):
    _write_run(tmp_path, with_accuracy=True)
    backend = matplotlib.get_backend()
    paths = plots.plot_metrics(tmp_path)
    assert matplotlib.get_backend() == backend  # the caller's backend untouched
    assert [p.name for p in paths] == [
        "loss.png",
        "bits_per_byte.png",
        "accuracy.png",
        "lr.png",
        "throughput.png",
    ]
    assert all(p.parent == tmp_path / "plots" for p in paths)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        p.name for p in paths
    )
    for path in paths:
        _check_png(path)


def test_only_families_present_and_custom_out(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(
            json.dumps({"step": s, "train/loss": 3.0 / s, "train/grad_norm": 1.0 + s})
            + "\n"
            for s in range(1, 30)
        )
    )
    out = tmp_path / "figs"
    paths = plots.plot_metrics(path, out)
    assert [p.name for p in paths] == ["loss.png", "grad_norm.png"]
    assert all(p.parent == out for p in paths)
    for p in paths:
        _check_png(p)


def test_loss_plot_is_log_scale_and_labelled(tmp_path, monkeypatch):
    _write_run(tmp_path)
    figures = {}
    real = plots._plot_family

    def spy(family, *args):
        figures[family] = fig = real(family, *args)
        return fig

    monkeypatch.setattr(plots, "_plot_family", spy)
    plots.plot_metrics(tmp_path)
    (ax,) = figures["loss"].axes
    assert ax.get_yscale() == "log"  # loss falls from ~5.5 to ~0.7
    assert ax.get_xlabel() == "step" and "nats" in ax.get_ylabel()
    assert ax.get_title().startswith("Loss")
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["train/loss", "train/loss (smoothed)", "eval/loss"]
    raw, smoothed, evals = ax.get_lines()
    np.testing.assert_array_equal(evals.get_xdata(), [20, 40, 60])
    assert len(raw.get_xdata()) == 60
    # the smoothed line is smoother: smaller step-to-step changes
    assert (
        np.abs(np.diff(smoothed.get_ydata())).sum()
        < np.abs(np.diff(raw.get_ydata())).sum()
    )
    (lr_ax,) = figures["lr"].axes
    assert lr_ax.get_yscale() == "linear" and len(lr_ax.get_lines()) == 1
    assert [a.get_title() for a in figures["throughput"].axes] == [
        "train/tokens_per_sec",
        "train/step_time",
    ]


def test_duplicate_steps_keep_the_last_value_and_nan_is_dropped(tmp_path):
    events = [
        {"step": 1, "train/loss": 4.0},
        {"step": 2, "train/loss": 3.0},
        {"step": 2, "train/loss": 2.5},  # logged again after a resume
        {"step": 3, "train/loss": float("nan")},
        {"step": 4, "train/loss": 2.0},
    ]
    series = plots._series(events)
    steps, values = series["train/loss"]
    np.testing.assert_array_equal(steps, [1, 2, 4])
    np.testing.assert_array_equal(values, [4.0, 2.5, 2.0])


def test_smooth_matches_a_loop():
    x = np.random.default_rng(1).standard_normal(50)
    w = 0.8
    m, expected = 0.0, []
    for t, v in enumerate(x):
        m = w * m + (1 - w) * v
        expected.append(m / (1 - w ** (t + 1)))
    np.testing.assert_allclose(plots.smooth(x, w), expected, rtol=1e-12)
    np.testing.assert_array_equal(plots.smooth(x, 0.0), x)
    assert plots.smooth(x, 0.99)[0] == x[0]
    with pytest.raises(ValueError, match="weight must be in"):
        plots.smooth(x, 1.0)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("train/loss", "loss"),
        ("eval/bits_per_byte", "bits_per_byte"),
        ("train/tokens_per_sec", "throughput"),
        ("train/step_time", "throughput"),
        ("eval/task2/accuracy", "accuracy"),
        ("loss", "loss"),
    ],
)
def test_family_of(name, family):
    assert plots.family_of(name) == family


def test_missing_or_empty_metrics_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        plots.plot_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no metrics to plot"):
        plots.plot_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": NaN}\n')
    with pytest.raises(ValueError, match="no metrics to plot"):
        plots.plot_metrics(tmp_path)
    _write_run(tmp_path / "run", steps=5)
    with pytest.raises(ValueError, match="smoothing must be in"):
        plots.plot_metrics(tmp_path / "run", smoothing=1.5)
