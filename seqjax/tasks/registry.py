"""The ``Task`` protocol and the registry of tasks the trainer can run.

Tasks: what the trainer trains — a model, its data, its loss and its metrics.

A task is an object with

* ``build_model(config, rngs) -> nnx.Module``;
* ``datasets(config, process_index, process_count) -> (train, eval)``: grain
  ``MapDataset``\\ s of batches (dicts of numpy arrays, this process's share);
* ``loss(model, batch) -> (loss, sums)``: the mean training loss and a dict of summed
  statistics (``sums`` are added over batches for evaluation);
* ``summarize(sums) -> dict``: evaluation metrics (``"eval/loss"``, ...);
* ``tokens(batch) -> int``: tokens a batch trains on (for throughput).

The trainer knows nothing else about the task. ``TASKS`` maps names to tasks;
``register_task`` adds one.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import config as config_lib

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class Task(Protocol):
    name: str

    def build_model(self, config: config_lib.Config, rngs: nnx.Rngs) -> nnx.Module: ...

    def datasets(
        self, config: config_lib.Config, process_index: int, process_count: int
    ): ...

    def loss(self, model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]: ...

    def summarize(self, sums: dict) -> dict[str, float]: ...

    def tokens(self, batch: dict) -> int: ...


def backbone_options(model: config_lib.ModelConfig) -> dict[str, Any]:
    """Keyword options shared by every seqjax model: the residual backbone's."""
    return dict(
        mixer_options=dict(model.mixer_options),
        norm=model.norm,
        mlp=model.mlp,
        mlp_options=dict(model.mlp_options),
        conv_width=model.conv_width,
        dropout=model.dropout,
        dtype=DTYPES[model.dtype],
    )


TASKS: dict[str, Task] = {}

# Modules that register tasks when imported (language modelling; classification and
# retrieval over LRA and MNIST; the synthetic memory tasks). Imported in this order on
# first lookup, stopping at the first that registers the name asked for, so that the
# language-modelling path does not load the others.
TASK_MODULES = (
    "seqjax.tasks.lm",
    "seqjax.tasks.classification",
    "seqjax.tasks.synthetic",
)


def register_task(task: Task) -> None:
    """Adds a task under ``task.name`` (replacing one of the same name)."""
    TASKS[task.name] = task


def _load_task_modules(until: str | None = None) -> None:
    for module in TASK_MODULES:
        if until is not None and until in TASKS:
            return
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def task_names() -> list[str]:
    _load_task_modules()
    return sorted(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        _load_task_modules(until=name)
    try:
        return TASKS[name]
    except KeyError:
        raise config_lib.ConfigError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}"
        ) from None


def local_batch(global_batch: int, process_count: int, key: str) -> int:
    if global_batch % process_count:
        raise config_lib.ConfigError(
            f"{key} ({global_batch}) must be divisible by the number of processes "
            f"({process_count})"
        )
    return global_batch // process_count
