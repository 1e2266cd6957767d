"""Configs: loading, overrides with types, clear errors, JSON round trip."""

import pytest

from seqjax import config as config_lib


def test_overrides_are_parsed_to_field_types():
    config = config_lib.Config()
    out = config_lib.apply_overrides(
        config,
        [
            "train.steps=50",
            "optim.learning_rate=1e-3",
            "model.tie_embeddings=false",
            "model.conv_width=none",
            'model.mixer_options={"state_size": 8}',
            "data.max_bytes=1000",
            "name=run-a",
        ],
    )
    assert out.train.steps == 50 and isinstance(out.train.steps, int)
    assert out.optim.learning_rate == 1e-3
    assert out.model.tie_embeddings is False
    assert out.model.conv_width is None
    assert out.model.mixer_options == {"state_size": 8}
    assert out.data.max_bytes == 1000
    assert out.name == "run-a"
    assert config.train.steps == 1000, "the original is not modified"


@pytest.mark.parametrize(
    "override, match",
    [
        (
            "train.stepz=5",
            r"unknown config key 'train.stepz'; did you mean 'train.steps'[^?]*\? "
            r"\(valid keys: .*train.steps",
        ),
        ("trian.steps=5", r"unknown config key 'trian.steps'"),
        ("train.steps=five", r"train.steps expects an int, got 'five'"),
        ("model.tie_embeddings=maybe", r"expects a bool"),
        ("model.mixer_options=[1]", r"expects a dict"),
        ("train.steps", r"is not key=value"),
        ("model=lru", r"model is a section"),
        ("train.steps=0", r"train.steps must be >= 1"),
        ("model.dtype=float8", r"model.dtype must be one of"),
        (
            "optim.accumulation_steps=3",
            r"must be divisible by optim.accumulation_steps",
        ),
    ],
)
def test_override_errors_name_the_key(override, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        config_lib.apply_overrides(config_lib.Config(), [override])


def test_dict_overrides_are_type_checked():
    with pytest.raises(config_lib.ConfigError, match=r"train.steps expects int"):
        config_lib.apply_overrides(config_lib.Config(), {"train.steps": "10"})
    out = config_lib.apply_overrides(config_lib.Config(), {"optim.learning_rate": 1})
    assert out.optim.learning_rate == 1.0


def test_json_round_trip(tmp_path):
    config = config_lib.apply_overrides(config_lib.Config(), ["model.depth=3"])
    config_lib.save_json(config, tmp_path / "c.json")
    assert config_lib.load_json(tmp_path / "c.json") == config
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'bogus'"):
        config_lib.from_dict({"bogus": 1})
    with pytest.raises(config_lib.ConfigError, match=r"model.depth expects int"):
        config_lib.from_dict({"model": {"depth": "3"}})


def test_load_config_errors(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="not found"):
        config_lib.load_config(tmp_path / "missing.py")
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(config_lib.ConfigError, match="defines no get_config"):
        config_lib.load_config(tmp_path / "bad.py")
    (tmp_path / "wrong.py").write_text("def get_config():\n    return {}\n")
    with pytest.raises(config_lib.ConfigError, match="not a Config"):
        config_lib.load_config(tmp_path / "wrong.py")
