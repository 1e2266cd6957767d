"""Training configuration: typed dataclasses, loaded from ``configs/NAME.py``.

A config file defines ``get_config() -> Config`` (and may define named variants such as
``tiny``; see ``load_config``). Every field can be overridden from the command line as
``section.field=value`` (``train.steps=500``,
``model.mixer_options={"state_size": 64}``).

Why dataclasses rather than ``ml_collections``: the field types are the schema, so an
override is parsed to the field's type and an unknown key or a wrong type is an error
that names the key and lists the valid ones; configs are plain Python objects that
type checkers and IDEs understand; and the resolved config round-trips through JSON,
which is how it is stored in the work directory and in every checkpoint.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import json
import pathlib
import types
import typing
from typing import Any


@dataclasses.dataclass
class ModelConfig:
    """The network. ``mixer`` is a name from ``seqjax.nn.registry`` (``"paragru"``,
    ``"lru"``, ``"s5"``, ``"mamba"``, ...); ``mixer_options`` are its options."""

    mixer: str = "paragru"
    mixer_options: dict = dataclasses.field(default_factory=dict)
    features: int = 128
    depth: int = 2
    mlp: str = "glu"
    mlp_options: dict = dataclasses.field(default_factory=dict)
    conv_width: int | None = None
    dropout: float = 0.0
    norm: str = "rmsnorm"
    tie_embeddings: bool = True
    bidirectional: str | None = None
    pooling: str = "mean"
    dtype: str = "float32"


@dataclasses.dataclass
class DataConfig:
    """Where batches come from. For language modelling, ``source`` is ``"builtin"``
    (the Python standard library and its help topics), ``"files"`` (``files``: a glob
    or a folder) or ``"tfds"`` (``tfds_name``, e.g. ``"lm1b"``)."""

    source: str = "builtin"
    kind: str = "both"
    files: str = ""
    tfds_name: str = ""
    tfds_data_dir: str = ""
    max_bytes: int | None = None
    seq_len: int = 256
    batch_size: int = 16
    eval_batch_size: int | None = None
    held_out_fraction: float = 0.1
    options: dict = dataclasses.field(default_factory=dict)
    seed: int = 0


@dataclasses.dataclass
class OptimConfig:
    """AdamW with parameter groups (see ``seqjax.train.optimizers``) and a schedule
    from ``seqjax.train.schedules`` (``schedule_options`` are its keyword options)."""

    learning_rate: float = 2e-3
    ssm_learning_rate: float | None = None
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    grad_clip_norm: float | None = 1.0
    schedule: str = "warmup_cosine"
    warmup_steps: int = 100
    schedule_options: dict = dataclasses.field(default_factory=dict)
    accumulation_steps: int = 1


@dataclasses.dataclass
class MeshConfig:
    """Device mesh axes; ``-1`` takes the devices left over (at most one axis)."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    fsdp_min_size: int = 2**14


@dataclasses.dataclass
class TrainConfig:
    """The loop: steps, logging, evaluation, checkpoints, sampling."""

    steps: int = 1000
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    best_metric: str = "eval/loss"
    best_mode: str = "min"
    sample_prompt: str = ""
    sample_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 40
    progress: bool = True


@dataclasses.dataclass
class ContinualConfig:
    """A continual-learning run (``seqjax cl``): a stream of tasks and a strategy.

    ``stream`` names a stream of ``seqjax.cl.streams`` (``"permuted_mnist"``,
    ``"split_mnist"``, ...; empty: not a continual-learning run); ``setting`` is
    ``"task"``, ``"class"`` or ``"domain"``-incremental (empty: the stream's
    default); ``num_tasks`` 0 takes the stream's default. Each task trains
    ``steps_per_task`` steps, so a run has ``num_tasks * steps_per_task`` steps
    (``train.steps`` is set from them). ``strategy`` names a strategy of
    ``seqjax.cl.strategies`` with ``strategy_options`` as its keyword options.
    ``train_examples`` / ``eval_examples`` (0: all) limit each task's splits.
    """

    stream: str = ""
    setting: str = ""
    num_tasks: int = 0
    steps_per_task: int = 200
    strategy: str = "naive"
    strategy_options: dict = dataclasses.field(default_factory=dict)
    train_examples: int = 0
    eval_examples: int = 0


@dataclasses.dataclass
class Config:
    """A whole run: ``task`` (``"lm"`` or a task from ``seqjax.tasks``) and its
    sections (``cl`` only for continual-learning runs)."""

    task: str = "lm"
    name: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    cl: ContinualConfig = dataclasses.field(default_factory=ContinualConfig)


class ConfigError(ValueError):
    """A config file, key or value that does not fit the schema."""


# --- loading ------------------------------------------------------------------------


def load_config(path: str | pathlib.Path, variant: str | None = None) -> Config:
    """Loads ``configs/NAME.py``: its ``get_config()``, or ``get_config(variant)``.

    A path may carry the variant after a colon: ``configs/listops.py:tiny``.

    Raises:
      ConfigError: missing file, no ``get_config``, or a result that is not a Config.
    """
    path = str(path)
    if ":" in path and variant is None and not pathlib.Path(path).exists():
        path, variant = path.rsplit(":", 1)
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    spec = importlib.util.spec_from_file_location(f"seqjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get = getattr(module, "get_config", None)
    if get is None:
        raise ConfigError(f"{file} defines no get_config()")
    try:
        config = get(variant) if variant is not None else get()
    except ValueError as e:  # the config files refuse an unknown variant so
        if variant is None:
            raise
        raise ConfigError(f"{file}: {e}") from None
    if not isinstance(config, Config):
        raise ConfigError(
            f"{file}: get_config() returned {type(config).__name__}, not a Config"
        )
    return config


# --- overrides ----------------------------------------------------------------------


def _fields(obj) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def valid_keys(config: Config) -> list[str]:
    """Every overridable key, ``section.field`` or top-level ``field``."""
    keys = []
    for name in _fields(config):
        value = getattr(config, name)
        if dataclasses.is_dataclass(value):
            keys += [f"{name}.{sub}" for sub in _fields(value)]
        else:
            keys.append(name)
    return keys


def _resolved_type(owner, name: str):
    hints = typing.get_type_hints(type(owner))
    return hints[name]


def _parse(raw: str, annotation, key: str):
    """Parses a command-line string to ``annotation`` (int, float, bool, str, dict,
    unions with None)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and raw.strip().lower() in ("none", "null"):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _parse(raw, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} expects a bool (true/false), got {raw!r}")
    if annotation is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key} expects an int, got {raw!r}") from None
    if annotation is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key} expects a float, got {raw!r}") from None
    if annotation is str:
        return raw
    if annotation is dict or origin is dict:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise ConfigError(
                    f"{key} expects a dict (JSON or Python literal), got {raw!r}"
                ) from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key} expects a dict, got {raw!r}")
        return value
    raise ConfigError(f"{key}: cannot parse values of type {annotation}")


def _check_type(value, annotation, key: str):
    """Checks a Python value against a field annotation (used for JSON and configs)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if any(_type_ok(value, a) for a in typing.get_args(annotation)):
            return
    elif _type_ok(value, annotation):
        return
    raise ConfigError(
        f"{key} expects {getattr(annotation, '__name__', annotation)}, got "
        f"{type(value).__name__} {value!r}"
    )


def _type_ok(value, annotation) -> bool:
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(annotation) is dict:
        return isinstance(value, dict)
    return isinstance(value, annotation)


def apply_overrides(config: Config, overrides: list[str] | dict[str, Any]) -> Config:
    """Returns a copy of ``config`` with ``key=value`` overrides applied.

    Args:
      config: the base config.
      overrides: strings ``"section.field=value"`` (parsed to the field's type) or a
        dict of key to Python value (type-checked).

    Raises:
      ConfigError: unknown key (the message lists the valid keys), missing ``=``, or
        a value of the wrong type.
    """
    config = copy_config(config)
    items = overrides.items() if isinstance(overrides, dict) else None
    if items is None:
        pairs = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"override {text!r} is not key=value")
            key, raw = text.split("=", 1)
            pairs.append((key.strip(), raw, True))
    else:
        pairs = [(k, v, False) for k, v in items]
    for key, value, from_text in pairs:
        owner, name = _locate(config, key)
        annotation = _resolved_type(owner, name)
        if from_text:
            value = _parse(value, annotation, key)
        else:
            _check_type(value, annotation, key)
        if annotation is float and isinstance(value, int):
            value = float(value)
        setattr(owner, name, value)
    validate(config)
    return config


def _locate(config: Config, key: str):
    parts = key.split(".")
    valid = valid_keys(config)
    if len(parts) == 1 and parts[0] in _fields(config):
        if dataclasses.is_dataclass(getattr(config, parts[0])):
            raise ConfigError(
                f"{key} is a section; set one of its fields, e.g. {key}.…"
            )
        return config, parts[0]
    if len(parts) == 2 and parts[0] in _fields(config):
        section = getattr(config, parts[0])
        if dataclasses.is_dataclass(section) and parts[1] in _fields(section):
            return section, parts[1]
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ConfigError(
        f"unknown config key {key!r}{hint} (valid keys: {', '.join(valid)})"
    )


def copy_config(config: Config) -> Config:
    return from_dict(to_dict(config))


# --- JSON round trip and validation -----------------------------------------------


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def from_dict(data: dict) -> Config:
    """Builds a Config from ``to_dict``'s output, checking keys and types."""
    config = Config()
    for key, value in data.items():
        if key not in _fields(config):
            raise ConfigError(
                f"unknown config key {key!r}; valid keys: "
                + ", ".join(valid_keys(config))
            )
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a mapping, got {value!r}")
            for sub, sub_value in value.items():
                owner, name = _locate(config, f"{key}.{sub}")
                annotation = _resolved_type(owner, name)
                _check_type(sub_value, annotation, f"{key}.{sub}")
                setattr(owner, name, sub_value)
        else:
            _check_type(value, _resolved_type(config, key), key)
            setattr(config, key, value)
    return config


def save_json(config: Config, path: str | pathlib.Path) -> None:
    pathlib.Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load_json(path: str | pathlib.Path) -> Config:
    return from_dict(json.loads(pathlib.Path(path).read_text()))


_CHOICES = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.pooling": ("mean", "last"),
    "train.best_mode": ("min", "max"),
}


def validate(config: Config) -> None:
    """Checks values that types alone do not: positive sizes, known choices.

    Raises:
      ConfigError: naming the key, the value and what is allowed.
    """
    positive = {
        "model.features": config.model.features,
        "model.depth": config.model.depth,
        "data.seq_len": config.data.seq_len,
        "data.batch_size": config.data.batch_size,
        "optim.accumulation_steps": config.optim.accumulation_steps,
        "train.steps": config.train.steps,
        "train.log_every": config.train.log_every,
        "train.eval_every": config.train.eval_every,
        "train.checkpoint_every": config.train.checkpoint_every,
        "train.keep_checkpoints": config.train.keep_checkpoints,
        "cl.steps_per_task": config.cl.steps_per_task,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
    for key in ("cl.num_tasks", "cl.train_examples", "cl.eval_examples"):
        value = getattr(config.cl, key.split(".")[1])
        if value < 0:
            raise ConfigError(f"{key} must be >= 0 (0: the default), got {value}")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(
            f"model.dropout must be in [0, 1), got {config.model.dropout}"
        )
    if config.data.batch_size % config.optim.accumulation_steps:
        raise ConfigError(
            f"data.batch_size ({config.data.batch_size}) must be divisible by "
            f"optim.accumulation_steps ({config.optim.accumulation_steps})"
        )
