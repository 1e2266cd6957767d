"""The per-run continual-learning report: Markdown, CSV and PNG files."""

import ast
import pathlib
import struct

import numpy as np
import pytest

from seqjax.cl import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["digits 0/1", "digits 2/3", "digits 4|5"]
R3 = np.array(
    [
        [0.90, 0.15, 0.10],
        [0.92, 0.95, 0.20],
        [0.70, 0.80, 0.875],
    ]
)
B3 = np.array([0.10, 0.12, 0.08])
# Metrics by hand (see tests/cl/test_metrics.py), in percent / points:
# ACC 79.1666 -> "79.2", average incremental 87.5555 -> "87.6", BWT "-17.5",
# FWT "7.5", forgetting "18.5".


def _check_png(path: pathlib.Path) -> tuple[int, int]:
    """Checks ``path`` is a PNG; returns its (width, height) from the IHDR chunk."""
    data = path.read_bytes()
    assert len(data) > 1000, f"{path} is suspiciously small ({len(data)} bytes)"
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    return width, height


def _row(markdown: str, label: str) -> list[str]:
    """The cells of the first table row of ``markdown`` starting with ``label``."""
    for line in markdown.splitlines():
        if line.startswith(f"| {label}"):
            return [c.strip() for c in line.strip().strip("|").split(" | ")]
    raise AssertionError(f"no row {label!r} in:\n{markdown}")


def test_write_report_full_matrix(tmp_path):
    paths = report.write_report(tmp_path / "run", R3, B3, NAMES, title="EWC demo")
    assert set(paths) == {"markdown", "csv", "matrix_png", "accuracy_png"}
    assert paths["markdown"] == tmp_path / "run" / "cl_report.md"
    assert paths["csv"] == tmp_path / "run" / "cl_matrix.csv"
    assert paths["matrix_png"] == tmp_path / "run" / "r_matrix.png"
    assert paths["accuracy_png"] == tmp_path / "run" / "task_accuracy.png"
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 600
    _check_png(paths["matrix_png"])
    _check_png(paths["accuracy_png"])
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        p.name for p in paths.values()
    )

    md = paths["markdown"].read_text(encoding="utf-8")
    assert md.startswith("## EWC demo\n")
    assert "3 of 3 tasks trained" in md
    assert "| trained through | digits 0/1 | digits 2/3 | digits 4\\|5 |" in md
    assert _row(md, "after task 0: digits 0/1")[1:] == ["90.0", "15.0", "10.0"]
    assert _row(md, "after task 1: digits 2/3")[1:] == ["92.0", "95.0", "20.0"]
    assert _row(md, "after task 2: digits 4\\|5")[1:] == ["70.0", "80.0", "87.5"]
    assert _row(md, "random init")[1:] == ["10.0", "12.0", "8.0"]
    assert "Metrics over all 3 tasks" in md
    assert _row(md, "ACC")[1] == "79.2"
    assert _row(md, "average incremental accuracy")[1] == "87.6"
    assert _row(md, "BWT")[1] == "-17.5"
    assert _row(md, "FWT")[1] == "7.5"
    assert _row(md, "forgetting")[1] == "18.5"

    back = np.loadtxt(paths["csv"], delimiter=",", skiprows=1)
    np.testing.assert_array_equal(back, R3)
    header = paths["csv"].read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(NAMES)


def test_write_report_partial_matrix(tmp_path):
    r = R3.copy()
    r[2] = np.nan  # task 2 not trained yet
    paths = report.write_report(tmp_path, r, B3, NAMES, title="in progress")
    for key in ("matrix_png", "accuracy_png"):
        _check_png(paths[key])

    md = paths["markdown"].read_text(encoding="utf-8")
    assert "2 of 3 tasks trained" in md
    assert "Metrics over the first 2 of 3 tasks" in md
    assert _row(md, "after task 2: digits 4\\|5")[1:] == ["", "", ""]
    # the 2x2 block: ACC 93.5, AIA 91.75, BWT +2.0, FWT +3.0, forgetting -2.0
    assert _row(md, "ACC")[1] == "93.5"
    assert _row(md, "BWT")[1] == "2.0"
    assert _row(md, "FWT")[1] == "3.0"
    assert _row(md, "forgetting")[1] == "-2.0"

    back = np.loadtxt(paths["csv"], delimiter=",", skiprows=1)
    np.testing.assert_array_equal(back, r)  # NaN rows survive (equal_nan)


def test_write_report_without_baseline(tmp_path):
    paths = report.write_report(tmp_path, R3, None, NAMES, title="no b")
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "random init" not in md
    assert "FWT" not in md
    assert _row(md, "ACC")[1] == "79.2"


def test_write_report_replaces_an_earlier_report(tmp_path):
    report.write_report(tmp_path, R3, B3, NAMES, title="first")
    paths = report.write_report(tmp_path, R3[:1, :1], None, NAMES[:1], title="second")
    assert paths["markdown"].read_text(encoding="utf-8").startswith("## second\n")
    np.testing.assert_array_equal(
        np.loadtxt(paths["csv"], delimiter=",", skiprows=1, ndmin=2), [[0.90]]
    )


def test_no_negative_zero():
    r = np.array([[0.5, 0.1], [0.5, 0.6]])  # BWT = 0, forgetting = 0
    md = report.markdown_table(r, None, ["a", "b"], "zeros")
    assert _row(md, "BWT")[1] == "0.0"
    assert _row(md, "forgetting")[1] == "0.0"
    assert "-0.0" not in md


def test_plot_functions_write_pngs(tmp_path):
    out = report.plot_matrix(R3, NAMES, tmp_path / "m.png", title="t")
    assert out == tmp_path / "m.png"
    _check_png(out)
    out = report.plot_task_accuracy(R3, NAMES, str(tmp_path / "a.png"))
    assert out == tmp_path / "a.png"
    _check_png(out)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_names": ["a", "b"]}, r"task_names must name the 3 tasks.*got 2"),
        ({"task_names": "abc"}, r"task_names must be a sequence"),
        ({"R": 100.0 * R3}, r"R must hold accuracies as fractions in \[0, 1\]"),
        ({"b": 100.0 * B3}, r"b must hold accuracies as fractions"),
        ({"R": np.zeros((2, 3))}, r"R must be a square"),
        ({"b": np.zeros(2)}, r"b must have shape \(3,\)"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, kwargs, match):
    args = {"R": R3, "b": B3, "task_names": NAMES} | kwargs
    with pytest.raises(ValueError, match=match):
        report.write_report(tmp_path / "run", title="bad", **args)
    assert not (tmp_path / "run").exists()


def test_module_does_not_import_matplotlib_at_import_time():
    source = pathlib.Path(report.__file__).read_text(encoding="utf-8")
    top_level = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            top_level.append(node.module or "")
    assert top_level and not any(m.split(".")[0] == "matplotlib" for m in top_level)
