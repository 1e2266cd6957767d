"""Two-level (chunked) evaluation of a linear recurrence.

The time axis is cut into ``n`` chunks of ``C`` steps. With ``c`` the chunk and ``i``
the step inside it (``t = cC + i``):

1. *Summaries* (all chunks at once, ``C`` steps): each chunk's composed transition
   :math:`P_c = a_{c,C-1} \\circ \\dots \\circ a_{c,0}` and its end state from zero
   :math:`s_c`, i.e. the affine map ``h_in -> P_c ∘ h_in + s_c`` (``chunk_summary``).
2. *Across chunks* (``n`` items, parallel prefix): the state entering every chunk,
   :math:`e_c = P_c \\circ e_{c-1} + s_c` from ``h_0``.
3. *Inside chunks* (all chunks at once, ``C`` steps): rerun each chunk from its true
   entering state and write every :math:`h_t`.

Only chunk summaries (``n`` states) are materialised besides the output, so memory
traffic is two reads of ``(a, b)`` and one write of ``h``, and the loop has
``2C + O(log n)`` sequential steps instead of ``T``, each over ``n`` times more data.
This is the structure of the chunked scans in "Gated Linear Attention Transformers
with Hardware-Efficient Training" (Yang et al., 2024) and of the block-wise scans in
RecurrentGemma, with a sequential form inside chunks. The chunk summary and the
across-chunk combine are the pieces sequence-parallel scans reuse across devices.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from seqjax.scan import associative, transitions


def default_chunk_size(length: int, backend: str | None = None) -> int:
    """Chunk length: 16 on accelerators; on CPU the power of two nearest
    ``sqrt(2 * length)``, at least 8.

    Steps 1 and 3 cost ``C`` loop iterations each and step 2 ``log n`` levels of a
    prefix scan over ``n = length / C`` items. On a CPU loop iterations are cheap and
    ``C`` near the square root keeps both small; on a GPU every iteration is a kernel
    launch, and a chunk-size sweep on an H200 (T = 16K, width 1024) was fastest at
    8 to 16 steps per chunk (``experiments/results/linear_scan_chunks_*.md``).
    """
    if length <= 8:
        return max(length, 1)
    if (backend or jax.default_backend()) != "cpu":
        return 16
    return max(8, 2 ** round(math.log2(math.sqrt(2 * length))))


def _loop_over_chunk(body, init, size: int, reverse: bool, unroll: int):
    """Runs ``body(i, carry)`` for ``i`` over one chunk, backwards if ``reverse``."""
    if reverse:
        return jax.lax.fori_loop(
            0, size, lambda j, c: body(size - 1 - j, c), init, unroll=unroll
        )
    return jax.lax.fori_loop(0, size, body, init, unroll=unroll)


def chunk_summary(
    a: jnp.ndarray,
    b: jnp.ndarray,
    *,
    reverse: bool,
    matrix: bool,
    unroll: int = 1,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Composes every chunk's steps into one affine map ``h -> P ∘ h + s``.

    Args:
      a: transitions, ``[n, C, *state]`` or ``[n, C, *state, k]``.
      b: inputs, ``[n, C, *state]``.
      reverse: compose from the end of each chunk.
      matrix: whether ``a`` acts on the last state axis as a matrix.
      unroll: unroll factor of the loop over the ``C`` steps.

    Returns:
      ``(P, s)`` with shapes ``[n, *state(, k)]`` and ``[n, *state]``: the composed
      transition and the end state of each chunk when it starts from zero.
    """
    size = a.shape[1]

    def body(i, carry):
        p, s = carry
        a_i = jax.lax.dynamic_index_in_dim(a, i, axis=1, keepdims=False)
        b_i = jax.lax.dynamic_index_in_dim(b, i, axis=1, keepdims=False)
        return transitions.compose(a_i, p, matrix), transitions.apply(
            a_i, s, matrix
        ) + b_i

    init = (transitions.identity_like(a[:, 0], matrix), jnp.zeros_like(b[:, 0]))
    return _loop_over_chunk(body, init, size, reverse, unroll)


def _scan_inside_chunks(a, b, h_in, *, reverse, matrix, unroll):
    """Step 3: every chunk from its entering state ``h_in`` (``[n, *state]``)."""
    size = a.shape[1]

    def body(i, carry):
        h, out = carry
        a_i = jax.lax.dynamic_index_in_dim(a, i, axis=1, keepdims=False)
        b_i = jax.lax.dynamic_index_in_dim(b, i, axis=1, keepdims=False)
        h = transitions.apply(a_i, h, matrix) + b_i
        out = jax.lax.dynamic_update_index_in_dim(out, h, i, axis=1)
        return h, out

    _, out = _loop_over_chunk(body, (h_in, jnp.zeros_like(b)), size, reverse, unroll)
    return out


def scan(
    a: jnp.ndarray,
    b: jnp.ndarray,
    h0: jnp.ndarray,
    *,
    reverse: bool,
    matrix: bool,
    chunk_size: int | None = None,
    unroll: int = 1,
) -> jnp.ndarray:
    """Evaluates the recurrence in chunks (see the module docstring).

    Args:
      a: transitions, ``[T, *state]`` (elementwise) or ``[T, *state, k]`` (matrix).
      b: inputs, ``[T, *state]``.
      h0: initial state, ``[*state]``.
      reverse: run from the end (``h_t = a_t ∘ h_{t+1} + b_t``).
      matrix: whether ``a`` acts on the last state axis as a matrix.
      chunk_size: steps per chunk; ``None`` uses ``default_chunk_size(T)``.
      unroll: unroll factor of the loops inside chunks.

    Returns:
      ``[T, *state]``, every ``h_t``.
    """
    length = b.shape[0]
    size = min(chunk_size or default_chunk_size(length), length)
    n = -(-length // size)
    pad = n * size - length
    if pad:
        # Padding goes where the scan ends, so it never feeds a real step.
        where = (pad, 0) if reverse else (0, pad)
        a = jnp.pad(a, [where] + [(0, 0)] * (a.ndim - 1))
        b = jnp.pad(b, [where] + [(0, 0)] * (b.ndim - 1))
    a = a.reshape((n, size) + a.shape[1:])
    b = b.reshape((n, size) + b.shape[1:])

    p, s = chunk_summary(a, b, reverse=reverse, matrix=matrix, unroll=unroll)
    ends = associative.scan(p, s, h0, reverse=reverse, matrix=matrix)
    if reverse:
        h_in = jnp.concatenate([ends[1:], h0[None]], axis=0)
    else:
        h_in = jnp.concatenate([h0[None], ends[:-1]], axis=0)
    hs = _scan_inside_chunks(a, b, h_in, reverse=reverse, matrix=matrix, unroll=unroll)
    hs = hs.reshape((n * size,) + hs.shape[2:])
    return hs[pad:] if reverse else hs[:length]
