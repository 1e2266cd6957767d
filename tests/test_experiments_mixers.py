"""Smoke test of ``experiments/bench_mixers.py`` at its smallest size, two mixers."""

from __future__ import annotations

import csv
import importlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_mixers_writes_its_table(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("SEQJAX_RESULTS_DIR", str(tmp_path))
    benchlib = importlib.import_module("experiments.benchlib")
    # benchlib reads SEQJAX_RESULTS_DIR at import time: point an already imported
    # module at tmp_path too (restored after the test).
    monkeypatch.setattr(benchlib, "RESULTS", tmp_path)
    bench = importlib.import_module("experiments.bench_mixers")
    assert "conv" not in bench.all_mixers()
    assert {"lru", "mamba", "paragru"} <= set(bench.all_mixers())

    path = bench.main(
        [
            "--preset", "demo", "--mixers", "lru", "paragru", "--width", "8",
            "--depth", "1", "--lengths", "8", "--batch", "2", "--decode-batch", "2",
            "--decode-tokens", "3", "--min-time", "0", "--name", "mixers_smoke",
        ]
    )  # fmt: skip

    assert path.parent == tmp_path and path.exists()
    (csv_path,) = tmp_path.glob("mixers_smoke_*.csv")
    with open(csv_path, newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == bench.HEADER
    for column in ("train tok/s", "compile fwd+bwd", "temp mem fwd+bwd", "params"):
        assert column in header
    assert any("decode" in c for c in header)
    assert any("method" in c for c in header)
    assert [r[0] for r in rows] == ["lru", "paragru"]
    col = {name: i for i, name in enumerate(header)}
    for row in rows:
        assert len(row) == len(header)
        assert row[col["T"]] == "8" and row[col["batch"]] == "2"
        assert float(row[col["train tok/s"]].replace(",", "")) > 0
        assert float(row[col["decode tok/s"]].replace(",", "")) > 0
        assert int(row[col["params"]].replace(",", "")) > 0
    method = header.index("parallel method (default)")
    assert rows[0][method].startswith("linear_scan")
    assert "lax.scan" in rows[1][method] or "newton" in rows[1][method]

    markdown = path.read_text()
    assert "| " + " | ".join(bench.HEADER) + " |" in markdown
    assert "load average" in markdown
