"""Parallel evaluation of a linear recurrence with ``jax.lax.associative_scan``.

The affine steps ``(a_t, b_t)`` are combined with the associative operator of
``transitions.combine``; the ``b`` component of the prefix composition is ``h_t``.
O(T) work (O(T k^3) for ``k x k`` matrices) in O(log T) parallel steps. The initial
state is folded into the first step: ``b_0 <- a_0 ∘ h_0 + b_0``.

Reference: Blelloch, "Prefix sums and their applications" (1990); Martin & Cundy,
"Parallelizing linear recurrent neural nets over sequence length" (ICLR 2018).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.scan import transitions


def scan(
    a: jnp.ndarray,
    b: jnp.ndarray,
    h0: jnp.ndarray,
    *,
    reverse: bool,
    matrix: bool,
) -> jnp.ndarray:
    """Evaluates the recurrence as a parallel prefix scan.

    Args:
      a: transitions, ``[T, *state]`` (elementwise) or ``[T, *state, k]`` (matrix).
      b: inputs, ``[T, *state]``.
      h0: initial state, ``[*state]``.
      reverse: run from the end (``h_t = a_t ∘ h_{t+1} + b_t``).
      matrix: whether ``a`` acts on the last state axis as a matrix.

    Returns:
      ``[T, *state]``, every ``h_t``.
    """
    first = -1 if reverse else 0
    b = b.at[first].add(transitions.apply(a[first], h0, matrix))
    _, hs = jax.lax.associative_scan(
        lambda x, y: transitions.combine(x, y, matrix), (a, b), reverse=reverse
    )
    return hs
