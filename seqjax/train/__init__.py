"""The training system: mesh, the trainer, checkpoints, optimizers, schedules, metrics
and plots; it runs any task of ``seqjax.tasks``. ``seqjax train`` (``seqjax/cli.py``)
is its command."""

from seqjax.config import Config, ConfigError, apply_overrides, load_config
from seqjax.train.optimizers import learning_rates, make_optimizer, param_labels
from seqjax.train.schedules import make_schedule
from seqjax.train.trainer import build, evaluate, generate, train

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "build",
    "evaluate",
    "generate",
    "learning_rates",
    "load_config",
    "make_optimizer",
    "make_schedule",
    "param_labels",
    "train",
]
