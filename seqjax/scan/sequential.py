"""Sequential evaluation of a linear recurrence with ``jax.lax.scan``.

.. math:: h_t = a_t \\circ h_{t-1} + b_t, \\quad t = 0, \\dots, T-1, \\quad h_{-1} = h_0

O(T) work and O(T) steps; the fastest method on CPUs and the reference the others are
tested against. Arrays are time-leading and already broadcast (see ``linear.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.scan import transitions


def default_unroll(step_elements: int, backend: str | None = None) -> int:
    """Unroll factor for ``lax.scan``.

    Measured on CPU (``experiments/bench_linear_scan.py``): unrolling makes XLA's CPU
    loop slower at every state size tried (1 to 4096 elements), so it is 1 there. On
    accelerators a step that touches few elements is dominated by the loop's own
    per-iteration cost, which unrolling amortises.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu" or step_elements > 1 << 16:
        return 1
    return 4


def scan(
    a: jnp.ndarray,
    b: jnp.ndarray,
    h0: jnp.ndarray,
    *,
    reverse: bool,
    matrix: bool,
    unroll: int | None = None,
) -> jnp.ndarray:
    """Evaluates the recurrence one step at a time.

    Args:
      a: transitions, ``[T, *state]`` (elementwise) or ``[T, *state, k]`` (matrix).
      b: inputs, ``[T, *state]``.
      h0: initial state, ``[*state]``.
      reverse: run from ``t = T-1`` down to ``0`` (then ``h_t = a_t ∘ h_{t+1} + b_t``).
      matrix: whether ``a`` acts on the last state axis as a matrix.
      unroll: ``lax.scan`` unroll factor; ``None`` picks ``default_unroll``.

    Returns:
      ``[T, *state]``, every ``h_t``.
    """
    if unroll is None:
        unroll = default_unroll(a[0].size)

    def step(h, ab):
        a_t, b_t = ab
        h = transitions.apply(a_t, h, matrix) + b_t
        return h, h

    _, hs = jax.lax.scan(step, h0, (a, b), reverse=reverse, unroll=unroll)
    return hs
