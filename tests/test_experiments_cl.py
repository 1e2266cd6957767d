"""``experiments/cl_benchmarks.py``: a smoke run at a micro size (two tasks of a few
steps on the offline MNIST t10k files) writes its table, CSV and plot, and a rerun
skips the finished runs."""

from __future__ import annotations

import csv
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("experiments.cl_benchmarks")


@pytest.mark.skipif(not MNIST.is_dir(), reason="no offline MNIST files")
def test_one_micro_run_writes_the_table(bench, tmp_path):
    """The fast smoke test: one run, no timing table."""
    argv = ["--preset", "micro", "--out", str(tmp_path), "--mnist-dir", str(MNIST),
            "--streams", "split_mnist", "--strategies", "naive",
            "--no-timing"]  # fmt: skip
    path = bench.main(argv)
    assert "| split_mnist | task | naive |" in path.read_text()
    assert "87.2" in path.read_text()  # the published number beside ours
    assert (tmp_path / "runs" / "split_mnist-naive-s0" / "cl" / "result.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not MNIST.is_dir(), reason="no offline MNIST files")
def test_micro_run_writes_the_table_and_resumes(bench, tmp_path, capsys):
    argv = ["--preset", "micro", "--out", str(tmp_path), "--mnist-dir", str(MNIST),
            "--streams", "split_mnist", "--strategies", "naive", "ewc"]  # fmt: skip
    path = bench.main(argv)
    assert path == tmp_path / f"cl_micro_{bench.benchlib.device_slug()}.md"
    text = path.read_text()
    assert "| split_mnist | task | ewc |" in text
    assert "98.6" in text  # the published EWC number beside ours
    assert "vs naive" in text and "1.00x" in text
    with open(path.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["naive", "ewc"]
    assert all(0 <= float(r["ACC (%)"]) <= 100 for r in rows)
    assert path.with_suffix(".png").stat().st_size > 0
    done = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert done == ["split_mnist-ewc-s0", "split_mnist-naive-s0"]
    # A rerun finds both runs finished and only rebuilds the tables.
    capsys.readouterr()
    bench.main([*argv, "--no-timing"])
    assert "ACC" in capsys.readouterr().out
    assert path.read_text().count("| split_mnist |") == 2
