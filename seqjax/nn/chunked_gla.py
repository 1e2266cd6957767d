"""Chunked gated linear attention: a matrix-valued state with a per-key-feature decay.

.. math::
   S_t = \\mathrm{diag}(\\alpha_t) S_{t-1} + k_t^\\top v_t, \\qquad o_t = q_t S_t

per head, with ``S_t: [d_k, d_v]``, ``q_t, k_t, α_t: [d_k]`` (``0 < α <= 1``) and
``v_t: [d_v]``. This is the recurrence of "Gated Linear Attention Transformers with
Hardware-Efficient Training" (Yang et al., 2024); its chunkwise-parallel training
form (their Section 4) is:

* cut time into chunks of ``L`` steps; inside a chunk let
  :math:`b_t = \\sum_{r \\le t} \\log \\alpha_r` (cumulative log-decays from the chunk
  start, float32, non-increasing);
* *intra-chunk*: masked attention with decay,
  :math:`P_{ts} = \\sum_i q_t[i] k_s[i] e^{b_t[i] - b_s[i]}` for ``s <= t``, and
  ``o = P v``;
* *inter-chunk*: each chunk's end state from zero
  :math:`\\sum_s (k_s \\odot e^{b_{L-1} - b_s})^\\top v_s` and its decay
  :math:`e^{b_{L-1}}` are combined across chunks with ``seqjax.scan.linear_scan``,
  giving the state ``S`` entering every chunk, which adds
  :math:`(q_t \\odot e^{b_t}) S` to the outputs.

Every exponent is a difference ``b_t - b_s`` with ``t >= s``, hence ``<= 0``: the
paper's first-level factorisation ``(q ⊙ e^{b}) (k ⊙ e^{-b})ᵀ``, which overflows for
strong decays, is not used. The intra-chunk decay is evaluated in log space as a
``[L, L, d_k]`` tensor per chunk and head (the role of the paper's secondary-level
chunking, here done directly). Memory is ``O(batch·time·heads·(L·d_k + d_v) +
batch·(time/L)·heads·d_k·d_v)``; the per-step states ``[time, d_k, d_v]`` are never
formed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.scan import linear_scan

DEFAULT_CHUNK_SIZE = 16


def chunked_gla(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    log_alpha: jax.Array,
    *,
    starts: jax.Array | None = None,
    h0: jax.Array | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    return_final_state: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Computes every output of gated linear attention with the chunked form.

    .. math::
       S_t = \\mathrm{diag}(e^{g_t}) S_{t-1} + k_t^\\top v_t, \\quad o_t = q_t S_t,
       \\quad S_{-1} = h_0

    with ``g = log_alpha <= 0``. Where ``starts[b, t]`` is true the state restarts
    (``S_t = k_tᵀ v_t``), as at the first step of a packed document. The arithmetic
    is float32. No scaling is applied to ``q``: scale it before the call.

    Args:
      q: ``[batch, time, heads, d_k]`` queries.
      k: ``[batch, time, heads, d_k]`` keys.
      v: ``[batch, time, heads, d_v]`` values.
      log_alpha: ``[batch, time, heads, d_k]`` log-decays ``g <= 0`` (a positive
        value is a growing state, allowed but not overflow-safe).
      starts: optional ``[batch, time]`` booleans, true where a segment starts.
      h0: optional ``[batch, heads, d_k, d_v]`` initial state (zeros if ``None``).
      chunk_size: steps per chunk ``L``.
      return_final_state: also return the last state ``S_{T-1}``.

    Returns:
      ``o: [batch, time, heads, d_v]`` in the promoted dtype of ``q, k, v``, and with
      ``return_final_state`` also ``S: [batch, heads, d_k, d_v]`` in float32.

    Raises:
      ValueError: shapes that do not fit, or a ``chunk_size`` that is not a positive
        int.

    Example:
      >>> import jax.numpy as jnp
      >>> from seqjax.nn.chunked_gla import chunked_gla
      >>> q = k = jnp.ones((1, 6, 2, 4)); v = jnp.ones((1, 6, 2, 3))
      >>> chunked_gla(q, k, v, jnp.full((1, 6, 2, 4), -0.1)).shape
      (1, 6, 2, 3)

    References:
      Yang, Wang, Shen, Panda & Kim, "Gated Linear Attention Transformers with
      Hardware-Efficient Training" (ICML 2024).
    """
    q, k, v, log_alpha = (jnp.asarray(a) for a in (q, k, v, log_alpha))
    if q.ndim != 4:
        raise ValueError(
            f"chunked_gla: q must be [batch, time, heads, d_k], got {q.shape}."
        )
    batch, time, heads, d_k = q.shape
    for name, a in (("k", k), ("log_alpha", log_alpha)):
        if a.shape != q.shape:
            raise ValueError(
                f"chunked_gla: {name} must have the shape of q {q.shape}, got "
                f"{a.shape}."
            )
    if v.ndim != 4 or v.shape[:3] != (batch, time, heads):
        raise ValueError(
            f"chunked_gla: v must be [batch, time, heads, d_v] with [batch, time, "
            f"heads] = {(batch, time, heads)}, got {v.shape}."
        )
    d_v = v.shape[-1]
    if starts is not None:
        starts = jnp.asarray(starts)
        if starts.shape != (batch, time):
            raise ValueError(
                f"chunked_gla: starts must be [batch, time] = {(batch, time)}, got "
                f"{starts.shape}."
            )
    if h0 is not None:
        h0 = jnp.asarray(h0)
        if h0.shape != (batch, heads, d_k, d_v):
            raise ValueError(
                f"chunked_gla: h0 must be [batch, heads, d_k, d_v] = "
                f"{(batch, heads, d_k, d_v)}, got {h0.shape}."
            )
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"chunked_gla: chunk_size must be a positive int, got {chunk_size!r}."
        )

    out_dtype = jnp.result_type(q.dtype, k.dtype, v.dtype)
    f32 = jnp.float32
    state0 = jnp.zeros((batch, heads, d_k, d_v), f32) if h0 is None else h0.astype(f32)
    if time == 0:
        o = jnp.zeros((batch, 0, heads, d_v), out_dtype)
        return (o, state0) if return_final_state else o

    size = min(chunk_size, time)
    chunks = -(-time // size)
    pad = chunks * size - time

    def to_chunks(a):  # [batch, time, ...] -> [batch, chunks, size, ...], padded
        a = jnp.pad(a.astype(f32), [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
        return a.reshape((batch, chunks, size) + a.shape[2:])

    # Padded steps have q = k = v = 0 and g = 0: they leave the state unchanged.
    q, k, v, g = (to_chunks(a) for a in (q, k, v, log_alpha))
    st = jnp.zeros((batch, time), f32) if starts is None else starts.astype(f32)
    seg = jnp.cumsum(to_chunks(st), axis=2)  # [b, c, L]: starts in [0, t]
    cum = jnp.cumsum(g, axis=2)  # [b, c, L, h, d_k], b_t from the chunk start

    # Intra-chunk: P[t, s] = sum_i q_t k_s exp(b_t - b_s), s <= t, same segment.
    idx = jnp.arange(size)
    valid = (idx[:, None] >= idx[None, :]) & (
        seg[..., :, None] == seg[..., None, :]
    )  # [b, c, t, s]
    diff = cum[:, :, :, None] - cum[:, :, None, :]  # [b, c, t, s, h, d_k]
    decay = jnp.exp(jnp.where(valid[..., None, None], diff, -jnp.inf))
    scores = jnp.einsum("bcthi,bcshi,bctshi->bctsh", q, k, decay)
    o = jnp.einsum("bctsh,bcshj->bcthj", scores, v)

    # Chunk summaries: end state from zero and the decay across the whole chunk.
    last = cum[:, :, -1:]  # [b, c, 1, h, d_k]
    tail = (seg == seg[:, :, -1:])[..., None, None]  # s reaches the chunk end
    k_end = k * jnp.exp(jnp.where(tail, last - cum, -jnp.inf))
    local = jnp.einsum("bcshi,bcshj->bchij", k_end, v)  # [b, c, h, d_k, d_v]
    through = seg[:, :, -1] == 0  # no start inside the chunk
    a_chunk = jnp.where(through[..., None, None], jnp.exp(last[:, :, 0]), 0.0)
    ends = linear_scan(a_chunk[..., None], local, state0, axis=1)
    entering = jnp.concatenate([state0[:, None], ends[:, :-1]], axis=1)

    # Inter-chunk: the entering state, decayed to t, read by q_t.
    q_in = q * jnp.exp(jnp.where((seg == 0)[..., None, None], cum, -jnp.inf))
    o = o + jnp.einsum("bcthi,bchij->bcthj", q_in, entering)

    o = o.reshape(batch, chunks * size, heads, d_v)[:, :time].astype(out_dtype)
    return (o, ends[:, -1]) if return_final_state else o
