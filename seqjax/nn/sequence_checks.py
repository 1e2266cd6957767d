"""Input checks shared by the sequence mixers (see the protocol in ``seqjax.nn``).

Each raises ``ValueError`` naming the argument, the shape or value received and what
was expected; ``owner`` (the layer's name) starts every message.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from seqjax.nn import segments


def positive_int(owner: str, name: str, value: Any) -> int:
    """Returns ``value`` if it is a positive int, else raises ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}.")
    return value


def sequence(owner: str, x: Any, features: int) -> jax.Array:
    """Checks ``x`` is ``[batch, time, features]``; returns it as an array."""
    x = jnp.asarray(x)
    if x.ndim != 3 or x.shape[-1] != features:
        raise ValueError(
            f"{owner}: x must be [batch, time, features={features}], got shape "
            f"{x.shape}."
        )
    return x


def step_input(owner: str, x_t: Any, features: int) -> jax.Array:
    """Checks ``x_t`` is ``[batch, features]``; returns it as an array."""
    x_t = jnp.asarray(x_t)
    if x_t.ndim != 2 or x_t.shape[-1] != features:
        raise ValueError(
            f"{owner}.step: x_t must be [batch, features={features}], got shape "
            f"{x_t.shape}."
        )
    return x_t


def state_shape(owner: str, name: str, value: Any, shape: tuple[int, ...]) -> None:
    """Checks that a state array has the shape ``init_state`` gives."""
    if tuple(jnp.shape(value)) != tuple(shape):
        raise ValueError(
            f"{owner}.step: {name} must have shape {tuple(shape)} (from init_state), "
            f"got {tuple(jnp.shape(value))}."
        )


def segment_starts(owner: str, segment_ids: Any, x: jax.Array) -> jax.Array | None:
    """``segments.segment_starts`` after checking ``segment_ids`` fits ``x``.

    Returns ``None`` when ``segment_ids`` is ``None``.
    """
    if segment_ids is None:
        return None
    segment_ids = jnp.asarray(segment_ids)
    if segment_ids.shape != x.shape[:2]:
        raise ValueError(
            f"{owner}: segment_ids must be [batch, time] = {tuple(x.shape[:2])}, got "
            f"shape {segment_ids.shape}."
        )
    return segments.segment_starts(segment_ids)
