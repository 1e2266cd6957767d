"""Experience replay from a reservoir buffer (compute-equivalent: same batch size).

A buffer of ``buffer_size`` rows holds a uniform random sample of every real training
example seen so far, kept by reservoir sampling (Vitter 1985, "Random Sampling with a
Reservoir", algorithm R): the ``n``-th real example (0-based) goes to slot ``n`` while
``n < size``; afterwards it draws :math:`j \\sim U\\{0, \\dots, n\\}` and replaces
slot ``j`` if ``j < size``. After ``N`` examples each one is in the buffer with
probability exactly :math:`\\min(1, \\mathrm{size}/N)`.

Every training batch of ``B`` rows then has its first :math:`r =
\\lfloor \\mathrm{batch\\_share} \\cdot B + \\tfrac12 \\rfloor` rows replaced by rows
drawn uniformly with replacement from the filled part of the buffer (once it holds
any), so the loss is

.. math:: \\mathcal{L} = \\frac{1}{\\sum_b w_b} \\Big(\\sum_{b \\ge r} w_b\\,
   \\ell(x_b, y_b) + \\sum_{b < r} w_{m_b}\\, \\ell(x_{m_b}, y_{m_b})\\Big),\\quad
   m_b \\sim U\\{0, \\dots, \\min(N, \\mathrm{size}) - 1\\}

The batch size the model sees is unchanged: replay costs no extra compute and
displaces ``r`` rows of new data per step (the compute-equivalent replay of Ibrahim et
al. 2024, "Simple and Scalable Strategies to Continually Pre-train Large Language
Models"). The displaced rows still enter the buffer: ``update`` inserts the step's
ORIGINAL batch, so each example is offered to the reservoir once, whether or not it
was trained on. Replayed rows keep their own ``targets``, ``weights`` and ``task``,
so a task-incremental loss masks them with their own task's classes.

Reference: Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning"
(experience replay with a reservoir buffer).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax import config as config_lib
from seqjax.cl import strategy as strategy_lib
from seqjax.train import extension as extension_lib


class ReplayState(NamedTuple):
    """The replay buffer.

    Attributes:
      buffer: per batch key (those of ``StreamSpec.example``) an array
        ``[buffer_size, ...]``; slots ``0 .. min(seen, buffer_size) - 1`` are filled.
      seen: int32 ``[]``, the real examples offered to the reservoir so far.
      key: a typed PRNG key for the reservoir's and the batch's draws.
    """

    buffer: dict[str, jax.Array]
    seen: jax.Array
    key: jax.Array


def replay_rows(batch_share: float, batch_size: int) -> int:
    """Rows of a batch replaced by buffer rows: ``share * B`` rounded half up.

    Args:
      batch_share: the fraction, in ``(0, 1)``.
      batch_size: ``B``.

    Returns:
      ``floor(batch_share * batch_size + 0.5)``.

    Example:
      >>> replay_rows(0.5, 8), replay_rows(0.25, 6)
      (4, 2)
    """
    return int(batch_share * batch_size + 0.5)


def init_state(
    example: dict[str, jax.ShapeDtypeStruct], buffer_size: int, key: jax.Array
) -> ReplayState:
    """An empty buffer shaped after one batch row.

    Args:
      example: one row's arrays (no batch axis), as ``StreamSpec.example``.
      buffer_size: slots.
      key: a typed PRNG key.

    Returns:
      ``ReplayState`` with zero-filled buffers and ``seen = 0``.
    """
    buffer = {
        name: jnp.zeros((buffer_size, *s.shape), s.dtype) for name, s in example.items()
    }
    return ReplayState(buffer, jnp.zeros((), jnp.int32), key)


def _buffer_size(state: ReplayState) -> int:
    return jax.tree.leaves(state.buffer)[0].shape[0]


def _check_keys(state: ReplayState, batch: extension_lib.Batch) -> None:
    if set(batch) != set(state.buffer):
        raise ValueError(
            f"replay: batch keys {sorted(batch)} differ from the buffer's "
            f"{sorted(state.buffer)} (StreamSpec.example)"
        )


def reservoir_insert(state: ReplayState, batch: extension_lib.Batch) -> ReplayState:
    """Offers every real row (``weights > 0``) of ``batch`` to the reservoir.

    The rows are inserted in order, with algorithm R's semantics exactly: real row
    ``b`` is example number :math:`n_b = \\mathrm{seen} + \\#\\{b' < b \\text{ real}\\}`
    and targets slot :math:`p_b = n_b` if :math:`n_b < \\mathrm{size}`, else
    :math:`p_b = j_b \\sim U\\{0..n_b\\}` (kept if :math:`j_b < \\mathrm{size}`).
    Because the draws do not depend on the buffer's contents they are made at once,
    and of several rows aiming at one slot the last one wins, as it would in a loop.
    Padding rows are never stored and do not count in ``seen``.

    Args:
      state: the buffer.
      batch: ``{name: [B, ...]}`` with the buffer's keys; ``weights`` ``[B]``.

    Returns:
      The new state (``seen`` grows by the number of real rows; ``key`` advances).
    """
    _check_keys(state, batch)
    size = _buffer_size(state)
    real = batch["weights"] > 0
    rows = real.shape[0]
    key, draw_key = jax.random.split(state.key)
    number = state.seen + jnp.cumsum(real.astype(jnp.int32)) - 1
    drawn = jax.random.randint(draw_key, (rows,), 0, number + 1)
    slot = jnp.where(number < size, number, drawn)
    writes = real & (slot < size)
    order = jnp.arange(rows, dtype=jnp.int32)
    # Last writer wins: the highest row index aiming at each slot.
    winner = jnp.full((size,), -1, jnp.int32)
    winner = winner.at[jnp.where(writes, slot, size)].max(order, mode="drop")
    keep = writes & (winner[jnp.minimum(slot, size - 1)] == order)
    target = jnp.where(keep, slot, size)  # out of range: dropped
    buffer = {
        name: buf.at[target].set(batch[name].astype(buf.dtype), mode="drop")
        for name, buf in state.buffer.items()
    }
    seen = state.seen + jnp.sum(real.astype(jnp.int32))
    return ReplayState(buffer, seen, key)


def replay_batch(
    state: ReplayState, batch: extension_lib.Batch, batch_share: float
) -> tuple[extension_lib.Batch, ReplayState]:
    """Replaces the first ``replay_rows(batch_share, B)`` rows by buffer rows.

    Rows are drawn uniformly with replacement from the filled slots. While the
    buffer is empty the batch comes back unchanged (selected with ``jnp.where``,
    no branching on traced values). Every array keeps its shape and dtype.

    Args:
      state: the buffer.
      batch: ``{name: [B, ...]}`` with the buffer's keys.
      batch_share: the fraction of rows to replace, in ``(0, 1)``.

    Returns:
      ``(batch, state)`` with the mixed batch and the key advanced.
    """
    _check_keys(state, batch)
    size = _buffer_size(state)
    rows = replay_rows(batch_share, batch["weights"].shape[0])
    key, draw_key = jax.random.split(state.key)
    filled = jnp.minimum(state.seen, size)
    index = jax.random.randint(draw_key, (rows,), 0, jnp.maximum(filled, 1))
    out = {}
    for name, x in batch.items():
        head = jnp.where(
            filled > 0, state.buffer[name][index].astype(x.dtype), x[:rows]
        )
        out[name] = x.at[:rows].set(head)
    return out, state._replace(key=key)


def make(
    spec: strategy_lib.StreamSpec,
    *,
    buffer_size: int = 500,
    batch_share: float = 0.5,
    seed: int = 0,
) -> strategy_lib.Strategy:
    """Experience replay with a reservoir buffer (see the module docstring).

    Args:
      spec: the stream: ``example`` shapes the buffer, ``train_sizes`` bounds it.
      buffer_size: slots, ``1 .. sum(spec.train_sizes)``.
      batch_share: fraction of each batch's rows replaced by buffer rows, in
        ``(0, 1)``.
      seed: seeds the state's PRNG key (``Extension.init`` receives no key).

    Returns:
      ``Strategy("replay")`` whose extension has ``init``, ``batch`` and
      ``update``.

    Raises:
      ConfigError: a value out of range, naming ``cl.strategy_options[key]``.

    Example:
      >>> strategy = make(spec, buffer_size=200, batch_share=0.25)
      >>> state = strategy.extension.init(params)
    """
    total = sum(spec.train_sizes)
    if not 1 <= buffer_size <= total:
        raise config_lib.ConfigError(
            f"cl.strategy_options['buffer_size'] must be in [1, {total}] (the "
            f"stream's training examples), got {buffer_size!r}"
        )
    if not 0.0 < batch_share < 1.0:
        raise config_lib.ConfigError(
            f"cl.strategy_options['batch_share'] must be in (0, 1), got {batch_share!r}"
        )
    example = dict(spec.example)

    def init(params):
        del params
        return init_state(example, buffer_size, jax.random.key(seed))

    def batch(state, batch):
        return replay_batch(state, batch, batch_share)

    def update(state, old_params, new_params, grads, batch):
        del old_params, new_params, grads
        return reservoir_insert(state, batch)

    extension = extension_lib.Extension(
        init=init, batch=batch, update=update, name="replay"
    )
    return strategy_lib.Strategy("replay", extension=extension)
