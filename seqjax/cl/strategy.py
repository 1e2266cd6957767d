"""The shape of a continual-learning strategy: in-step pure functions plus host-side
updates at task boundaries, with all state explicit.

A ``Strategy`` bundles

* ``extension``: a ``seqjax.train.extension.Extension`` whose functions run inside
  the jitted train step (an extra loss, a gradient or batch transform, a per-step
  state update) and whose state travels in the train state and the checkpoint;
* ``end_task``: a host-side function called after the last step of each task, which
  returns the extension's next state (EWC's Fisher, SI's importance, LwF's frozen
  snapshot) from a ``TaskEnd`` record;
* ``data``: which tasks' training data task ``k`` trains on: ``"current"`` (task
  ``k`` only), ``"cumulative"`` (tasks ``0..k``) or ``"joint"`` (every task of the
  stream, from the first; the upper bound).

Strategies never hold mutable attributes: everything that changes is in the state
pytree, so a run resumes bit for bit after a kill (unlike designs that freeze strategy
state into jitted methods).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax

from seqjax.train import extension as extension_lib

DATA_CHOICES = ("current", "cumulative", "joint")


class StreamSpec(NamedTuple):
    """What a strategy may know of the stream when it is built.

    Attributes:
      num_tasks: tasks in the stream.
      task_classes: per task, the output units (global labels) its examples use.
      num_classes: the model's output units.
      setting: ``"task"``, ``"class"`` or ``"domain"``.
      example: one batch row's arrays as ``jax.ShapeDtypeStruct`` (no batch axis):
        ``inputs``, ``lengths``, ``targets``, ``weights``, ``task``.
      batch_size: rows per training batch.
      train_sizes: per task, the number of training examples.
    """

    num_tasks: int
    task_classes: tuple[tuple[int, ...], ...]
    num_classes: int
    setting: str
    example: dict[str, jax.ShapeDtypeStruct]
    batch_size: int
    train_sizes: tuple[int, ...]


class TaskEnd(NamedTuple):
    """What ``Strategy.end_task`` receives after the last step of task ``index``.

    Attributes:
      index: the task that just ended (0-based).
      state: the extension's current state.
      params: the model's parameters (``nnx.State`` of ``nnx.Param``) after the task.
      ctx: the model as pure functions of its parameters (evaluation mode); wrap
        them in ``jax.jit`` for speed.
      batches: a callable returning a fresh iterable of the task's training batches
        (dicts of numpy arrays, the training batch size, a fixed seeded order, one
        pass); ``weights`` is 0 on padding rows.
    """

    index: int
    state: Any
    params: Any
    ctx: extension_lib.StepContext
    batches: Callable[[], Iterable[dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A continual-learning strategy (see the module docstring)."""

    name: str
    extension: extension_lib.Extension | None = None
    end_task: Callable[[TaskEnd], Any] | None = None
    data: str = "current"

    def __post_init__(self):
        if self.data not in DATA_CHOICES:
            raise ValueError(
                f"Strategy.data must be one of {DATA_CHOICES}, got {self.data!r}"
            )
