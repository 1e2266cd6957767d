"""Packed sequences: where segments (documents) start, and resetting state there.

A packed batch holds several documents per row, labelled by ``segment_ids``
(``[batch, time]`` integers, equal within a document). A recurrent layer must not carry
state across a boundary: at every position where a new segment starts, the state
restarts as if the sequence began there. For a linear recurrence
``h_t = a_t ∘ h_{t-1} + b_t`` this is ``a_t <- 0`` at those positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def segment_starts(segment_ids: jax.Array) -> jax.Array:
    """Returns ``[batch, time]`` booleans, true where a segment starts.

    Position 0 always starts a segment; position ``t > 0`` starts one when
    ``segment_ids[:, t] != segment_ids[:, t - 1]``.

    Args:
      segment_ids: ``[batch, time]`` integer segment labels.

    Raises:
      ValueError: ``segment_ids`` is not two-dimensional.
      TypeError: ``segment_ids`` is not an integer array.
    """
    segment_ids = jnp.asarray(segment_ids)
    if segment_ids.ndim != 2:
        raise ValueError(
            f"segment_ids must be [batch, time], got shape {segment_ids.shape}."
        )
    if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
        raise TypeError(f"segment_ids must be integers, got {segment_ids.dtype}.")
    first = jnp.ones_like(segment_ids[:, :1], dtype=bool)
    return jnp.concatenate([first, segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)


def reset_transitions(a: jax.Array, starts: jax.Array | None) -> jax.Array:
    """Zeroes the transition ``a_t`` wherever a segment starts.

    Args:
      a: ``[batch, time, ...]`` transitions of a linear recurrence (any trailing axes,
        matrix transitions included).
      starts: ``[batch, time]`` booleans from ``segment_starts``, or ``None`` (no-op).

    Returns:
      ``a`` with ``a[b, t] = 0`` where ``starts[b, t]``.
    """
    if starts is None:
        return a
    mask = starts.reshape(starts.shape + (1,) * (a.ndim - 2))
    return jnp.where(mask, jnp.zeros((), a.dtype), a)
