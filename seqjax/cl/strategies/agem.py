"""Averaged Gradient Episodic Memory (A-GEM): never let the step raise the memory loss.

Chaudhry et al. 2019, "Efficient Lifelong Learning with A-GEM". A buffer holds
examples of PAST tasks only. Each step draws a reference batch of ``memory_batch``
rows uniformly (with replacement) from the filled buffer, takes its gradient
:math:`g_{ref} = \\nabla_\\theta \\mathcal{L}(\\theta; \\text{memory batch})` (the
task's loss, so a task-incremental mask applies per row), and projects the step's
gradient :math:`g` when it conflicts:

.. math:: \\tilde g = \\begin{cases} g - \\dfrac{g^\\top g_{ref}}{g_{ref}^\\top
   g_{ref}}\\, g_{ref} & g^\\top g_{ref} < 0 \\\\ g & \\text{otherwise}\\end{cases}

with the dot products over ALL parameters flattened into one vector, so
:math:`\\tilde g^\\top g_{ref} \\ge 0` (it is 0 after a projection). Before the
first task end the buffer is empty and :math:`g` passes through unchanged.

**Memory.** Filled host-side at each task end from ``TaskEnd.batches()`` (real rows
only), not per step. After :math:`K` finished tasks the ``buffer_size`` slots are
split equally among them: task :math:`t < K` gets :math:`\\lfloor S/K \\rfloor +
[t < S \\bmod K]` slots (or all its examples, if fewer). An older task shrinks to its
new share by keeping the first rows of its segment; the ending task's rows are a
uniform sample of its real training examples (reservoir sampling over one pass of
``batches()``, seeded from the state's key and the task index) stored in random
order, so every prefix of a segment is itself a uniform sample. Segments are packed
in task order from slot 0; ``counts[t]`` holds task ``t``'s rows.

State layout: ``AGEMState(buffer, counts, key)``: per batch key (those of
``StreamSpec.example``) an array ``[buffer_size, ...]``, int32 ``[num_tasks]`` rows
per task, and a typed PRNG key for the reference batch. ``Extension.grads`` returns
no state, so it draws with the current key and ``update`` advances the key after
every step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config as config_lib
from seqjax.cl import strategy as strategy_lib
from seqjax.train import extension as extension_lib


class AGEMState(NamedTuple):
    """A-GEM's episodic memory.

    Attributes:
      buffer: per batch key an array ``[buffer_size, ...]``; slots
        ``0 .. sum(counts) - 1`` are filled, task by task.
      counts: int32 ``[num_tasks]``, rows of each task in the buffer.
      key: a typed PRNG key for the reference batch.
    """

    buffer: dict[str, jax.Array]
    counts: jax.Array
    key: jax.Array


def init_state(
    example: dict[str, jax.ShapeDtypeStruct],
    buffer_size: int,
    num_tasks: int,
    key: jax.Array,
) -> AGEMState:
    """An empty memory shaped after one batch row (``example``, no batch axis)."""
    buffer = {
        name: jnp.zeros((buffer_size, *s.shape), s.dtype) for name, s in example.items()
    }
    return AGEMState(buffer, jnp.zeros((num_tasks,), jnp.int32), key)


def shares(buffer_size: int, finished: int) -> list[int]:
    """Slots per finished task: ``S // K`` each, the first ``S % K`` one more.

    Example:
      >>> shares(10, 3)
      [4, 3, 3]
    """
    base, extra = divmod(buffer_size, finished)
    return [base + (t < extra) for t in range(finished)]


def _uniform_sample(
    batches: Iterable[dict[str, Any]], size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A uniform random sample of ``size`` real rows (all, if fewer), shuffled.

    One pass of reservoir sampling (algorithm R) over the rows with ``weights > 0``.
    """
    reservoir: dict[str, np.ndarray] = {}
    seen = 0
    for batch in batches:
        batch = {name: np.asarray(value) for name, value in batch.items()}
        real = np.flatnonzero(batch["weights"] > 0)
        if not reservoir:
            reservoir = {
                name: np.zeros((size, *value.shape[1:]), value.dtype)
                for name, value in batch.items()
            }
        numbers = seen + np.arange(len(real))
        draws = rng.integers(0, numbers + 1) if len(real) else numbers
        slots = np.where(numbers < size, numbers, draws)
        for row, slot in zip(real, slots, strict=True):
            if slot < size:
                for name, value in batch.items():
                    reservoir[name][slot] = value[row]
        seen += len(real)
    kept = min(seen, size)
    order = rng.permutation(kept)
    return {name: value[:kept][order] for name, value in reservoir.items()}


def add_task(
    state: AGEMState,
    index: int,
    batches: Iterable[dict[str, Any]],
) -> AGEMState:
    """Task ``index`` ended: rebalance the memory to equal shares and add its rows.

    Args:
      state: the memory before.
      index: the task that ended; tasks ``0 .. index`` then share the buffer.
      batches: the task's training batches (numpy; ``weights`` 0 = padding).

    Returns:
      The memory after (host-built, as ``jax.Array``).
    """
    buffer = {name: np.array(value) for name, value in state.buffer.items()}
    counts = np.array(state.counts, np.int32)
    size = len(buffer["weights"])
    quota = shares(size, index + 1)
    seed = np.asarray(jax.random.key_data(jax.random.fold_in(state.key, index)))
    rng = np.random.default_rng(seed.astype(np.uint32).ravel().tolist())
    fresh = _uniform_sample(batches, quota[index], rng)
    missing = sorted(set(buffer) - set(fresh)) if fresh else []
    if missing:
        raise ValueError(f"agem: task {index}'s batches lack the keys {missing}")
    packed = {name: np.zeros_like(value) for name, value in buffer.items()}
    new_counts = np.zeros_like(counts)
    start, at = 0, 0
    for task in range(index + 1):
        if task < index:
            keep = min(int(counts[task]), quota[task])
            segment = {
                name: value[start : start + keep] for name, value in buffer.items()
            }
            start += int(counts[task])
        else:
            segment = {
                name: fresh.get(name, value[:0]) for name, value in buffer.items()
            }
            keep = len(segment["weights"])
        for name in buffer:
            packed[name][at : at + keep] = segment[name]
        new_counts[task] = keep
        at += keep
    return AGEMState(
        {name: jnp.asarray(value) for name, value in packed.items()},
        jnp.asarray(new_counts),
        state.key,
    )


def _tree_dot(a, b) -> jax.Array:
    parts = jax.tree.map(
        lambda x, y: jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32)), a, b
    )
    return sum(jax.tree.leaves(parts))


def project(
    state: AGEMState,
    grads,
    params,
    ctx: extension_lib.StepContext,
    memory_batch: int,
):
    """A-GEM's projection of ``grads`` against a reference batch of the memory.

    Args:
      state: the memory (drawn from with ``state.key``).
      grads: the step's gradient, a pytree like ``params``.
      params: the params.
      ctx: ``ctx.task_loss(params, batch)`` gives the reference loss.
      memory_batch: rows of the reference batch.

    Returns:
      :math:`\\tilde g` (see the module docstring); ``grads`` unchanged while the
      memory is empty.
    """
    filled = jnp.sum(state.counts)
    draw_key, _ = jax.random.split(state.key)
    index = jax.random.randint(draw_key, (memory_batch,), 0, jnp.maximum(filled, 1))
    memory = {name: value[index] for name, value in state.buffer.items()}
    g_ref = jax.grad(ctx.task_loss)(params, memory)
    dot = _tree_dot(grads, g_ref)
    ref_norm = _tree_dot(g_ref, g_ref)
    apply = (filled > 0) & (dot < 0) & (ref_norm > 0)
    scale = jnp.where(apply, dot / jnp.where(apply, ref_norm, 1.0), 0.0)
    return jax.tree.map(
        lambda g, r: jnp.where(apply, g - (scale * r).astype(g.dtype), g),
        grads,
        g_ref,
    )


def make(
    spec: strategy_lib.StreamSpec,
    *,
    buffer_size: int = 500,
    memory_batch: int | None = None,
    seed: int = 0,
) -> strategy_lib.Strategy:
    """A-GEM (see the module docstring).

    Args:
      spec: the stream (``example`` shapes the buffer, ``train_sizes`` bounds it).
      buffer_size: slots, ``1 .. sum(spec.train_sizes)``.
      memory_batch: rows of the reference batch (``None``: ``spec.batch_size``).
      seed: seeds the state's PRNG key (``Extension.init`` receives no key).

    Returns:
      ``Strategy("agem")`` with ``extension.grads`` (the projection),
      ``extension.update`` (advances the key) and ``end_task`` (fills the memory).

    Raises:
      ConfigError: a value out of range, naming ``cl.strategy_options[key]``.

    Example:
      >>> strategy = make(spec, buffer_size=200)
      >>> state = strategy.extension.init(params)
    """
    total = sum(spec.train_sizes)
    if not 1 <= buffer_size <= total:
        raise config_lib.ConfigError(
            f"cl.strategy_options['buffer_size'] must be in [1, {total}] (the "
            f"stream's training examples), got {buffer_size!r}"
        )
    if memory_batch is None:
        memory_batch = spec.batch_size
    if not memory_batch >= 1:
        raise config_lib.ConfigError(
            f"cl.strategy_options['memory_batch'] must be >= 1 (or None: the batch "
            f"size), got {memory_batch!r}"
        )
    example = dict(spec.example)
    num_tasks = spec.num_tasks

    def init(params):
        del params
        return init_state(example, buffer_size, num_tasks, jax.random.key(seed))

    def grads(state, grads, params, batch, ctx):
        del batch
        return project(state, grads, params, ctx, memory_batch)

    def update(state, old_params, new_params, grads, batch):
        del old_params, new_params, grads, batch
        return state._replace(key=jax.random.split(state.key)[1])

    def end_task(end: strategy_lib.TaskEnd) -> AGEMState:
        if not 0 <= end.index < num_tasks:
            raise ValueError(
                f"agem: TaskEnd.index must be in [0, {num_tasks}), got {end.index}"
            )
        return add_task(end.state, end.index, end.batches())

    extension = extension_lib.Extension(
        init=init, grads=grads, update=update, name="agem"
    )
    return strategy_lib.Strategy("agem", extension=extension, end_task=end_task)
