"""Smoke tests of ``experiments/bench_linear_scan.py``, ``bench_newton.py`` and
``bench_damping.py``."""

from __future__ import annotations

import csv
import importlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench(module, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    benchlib = importlib.import_module("experiments.benchlib")
    monkeypatch.setattr(benchlib, "RESULTS", tmp_path)  # read at import: patch it
    return importlib.import_module(f"experiments.{module}")


def _rows(tmp_path, stem):
    (path,) = tmp_path.glob(f"{stem}_*.csv")
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_bench_linear_scan(tmp_path, monkeypatch):
    bench = _bench("bench_linear_scan", tmp_path, monkeypatch)
    bench.main(["--lengths", "64", "--widths", "32", "--structures", "elementwise",
                "block2", "--min-time", "0", "--name", "scan_smoke"])  # fmt: skip
    header, *rows = _rows(tmp_path, "scan_smoke")
    assert "bandwidth / copy" in header and "temp mem fwd+bwd" in header
    assert [r[3].split()[0] for r in rows] == [
        "sequential", "associative", "chunked", "auto"
    ] * 2  # fmt: skip
    assert all(r[10].endswith("x") for r in rows)
    bench.main(["--lengths", "64", "--widths", "32", "--chunk-sweep", "4", "16",
                "--min-time", "0"])  # fmt: skip
    assert len(_rows(tmp_path, "linear_scan_chunks")) == 3


def test_bench_newton(tmp_path, monkeypatch):
    bench = _bench("bench_newton", tmp_path, monkeypatch)
    bench.main(["--preset", "demo", "--lengths", "32", "--hiddens", "8",
                "--conv-hidden", "8", "--iterations", "3", "--cells", "ParaGRU",
                "--min-time", "0", "--name", "newton_smoke"])  # fmt: skip
    header, *rows = _rows(tmp_path, "newton_smoke")
    assert rows[0][:3] == ["ParaGRU", "8", "32"]
    assert float(rows[0][-2]) < 1e-4  # outputs agree with lax.scan
    text = next(tmp_path.glob("newton_smoke_*.md")).read_text()
    assert "## Convergence at initialisation" in text
    conv = [line for line in text.splitlines() if line.startswith("| ParaGRU | 8 | 32")]
    assert conv and conv[0].split("|")[-2].strip() != "never"


def test_bench_damping(tmp_path, monkeypatch):
    bench = _bench("bench_damping", tmp_path, monkeypatch)
    monkeypatch.setattr(bench, "GAINS", (0.5, 3.0))
    bench.main(["--length", "24", "--max-iters", "30", "--min-time", "0"])
    header, *rows = _rows(tmp_path, "damping")
    assert header[:5] == ["cell", "gain", "damping", "mean iterations", "converged"]
    assert len(rows) == len(bench.CELLS) * len(bench.DAMPINGS) * 2
    calm = {r[2]: r for r in rows if r[0] == "tanh" and r[1] == "0.5"}
    # A calm recurrence converges with every damping; Newton within a few steps.
    assert all(r[4] == f"{bench.BATCH}/{bench.BATCH}" for r in calm.values())
    assert float(calm["none (Newton)"][3]) <= 4
    assert next(tmp_path.glob("damping_*.png")).stat().st_size > 0
