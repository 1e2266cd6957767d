"""Imports only go down the layers of DESIGN.md; the core imports stay light."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqjax"

# layer -> seqjax layers it may import
ALLOWED = {
    "scan": {"scan"},
    "nn": {"scan", "nn"},
    "data": {"data"},
    "config": set(),
    "tasks": {"scan", "nn", "data", "config", "tasks"},
    "train": {"scan", "nn", "data", "config", "tasks", "train"},
    "cl": {"scan", "nn", "data", "config", "tasks", "train", "cl"},
}
# layer -> third-party packages that belong to a higher layer
FORBIDDEN = {
    "scan": {"flax", "optax", "orbax", "grain", "tensorflow_datasets", "tensorflow"},
    "nn": {"optax", "orbax", "grain", "tensorflow_datasets", "tensorflow"},
    "data": {"flax", "optax", "orbax"},
    "config": {"jax", "flax", "optax", "orbax", "grain", "tensorflow_datasets"},
    "tasks": {"orbax"},
}


def _imports(path: pathlib.Path):
    """Yields ``(dotted module, line)`` for every import in ``path``."""
    package = list(path.relative_to(ROOT).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield (
                    ".".join(base + ([node.module] if node.module else [])),
                    node.lineno,
                )
            else:
                yield node.module or "", node.lineno


def _violations():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        layer = pathlib.Path(parts[1]).stem if len(parts) >= 2 else ""
        if layer not in ALLOWED:
            continue  # seqjax/__init__.py and cli.py may import anything
        for module, line in _imports(path):
            top = module.split(".")
            if top[0] == "seqjax" and len(top) > 1 and top[1] not in ALLOWED[layer]:
                yield f"{path.relative_to(ROOT)}:{line} ({layer}) imports {module}"
            elif top[0] in FORBIDDEN.get(layer, ()):
                yield f"{path.relative_to(ROOT)}:{line} ({layer}) imports {top[0]}"


def test_imports_go_down_the_layers():
    assert list(_violations()) == []


def test_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself can fail: a scan module importing flax is reported."""
    fake = tmp_path / "seqjax" / "scan"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("import flax\nfrom seqjax.nn import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "seqjax")
    assert len(list(_violations())) == 2


@pytest.mark.parametrize("module", ["seqjax", "seqjax.scan", "seqjax.nn"])
def test_core_imports_no_data_or_checkpoint_libraries(module):
    """``import seqjax``/``.scan``/``.nn`` must not pull in grain, TFDS or orbax."""
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "heavy = [m for m in ('grain', 'tensorflow_datasets', 'orbax', 'tensorflow') "
        "if m in sys.modules]; print(heavy)"
    )
    try:
        __import__(module)
    except ModuleNotFoundError:
        pytest.skip(f"{module} does not exist yet")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
