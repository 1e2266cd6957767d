"""Every file in ``configs/`` loads, validates, documents its command and has a fast
variant (``tiny`` or ``smoke``)."""

import pathlib

import pytest

from seqjax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_with_its_tiny_variant(path):
    config = config_lib.load_config(path)
    config_lib.validate(config)
    text = path.read_text()
    assert "seqjax train --config" in text or "seqjax cl --config" in text, (
        "the docstring gives the command that runs it"
    )
    variant = "tiny" if "tiny" in text else "smoke"
    small = config_lib.load_config(f"{path}:{variant}")
    config_lib.validate(small)
    assert small.train.steps <= 2000
