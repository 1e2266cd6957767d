"""The selective scan of Mamba (S6), chunked so the per-step states never exist at once.

.. math::
   h_t = \\exp(\\Delta_t A) \\odot h_{t-1} + (\\Delta_t x_t) B_t^\\top, \\qquad
   y_t = h_t C_t + D \\odot x_t

with ``h_t: [d, n]`` per sequence (``d`` channels, ``n`` state size), ``Δ_t, x_t:
[d]``, ``B_t, C_t: [n]`` and ``A: [d, n]`` (negative). Materialising every ``h_t``
costs ``batch x time x d x n`` memory (16 times the activations for Mamba's defaults),
so the time axis is cut into chunks of ``L`` steps and only the state entering each
chunk, ``[batch, d, n]``, is kept. The chunks are visited in order with
``jax.lax.scan``; the chunk body is rematerialised in the backward pass
(``jax.checkpoint``), so training memory is ``O(batch·time·d + batch·(time/L)·d·n)``
plus the working set of the one chunk being processed.

Inside a chunk the ``L`` steps are evaluated in one of three ways (``intra_chunk``):

* ``"scan"``: the chunk's transitions ``exp(Δ_t A)`` and inputs are composed with a
  parallel prefix scan (``jax.lax.associative_scan``) into the chunk's ``[b, L, d,
  n]`` states, then ``y_t = h_t C_t``. Working set ``O(batch·L·d·n)``.
* ``"quadratic"``: with cumulative log-decays
  :math:`\\Lambda_{t,s} = \\sum_{s < r \\le t} \\Delta_r` (float32) and ``h`` the
  entering state, the outputs come directly from one masked contraction,

  .. math::
     y_t = \\sum_{s \\le t} \\sum_n C_t[n]\\, e^{A[:, n] \\Lambda_{t,s}} B_s[n]\\,
     \\Delta_s x_s + \\sum_n C_t[n]\\, e^{A[:, n] \\Lambda_{t,-1}} h[:, n],

  the form of the SSD algorithm of Mamba-2. Because Mamba's decay differs per
  ``(d, n)`` the decay tensor is ``[b, L, L, d, n]``: working set ``O(batch·L²·d·n)``
  and ``L`` times the arithmetic.

* ``"sequential"``: one step at a time with ``jax.lax.scan``; only the running
  ``[b, d, n]`` state is live. No parallelism inside the chunk, and the least work.

``"auto"`` picks ``"sequential"`` on CPU and ``"scan"`` elsewhere (``resolve``).
All three only exponentiate ``A Λ <= 0``: no exponential of a large positive number is
taken, and a large step ``Δ`` underflows to a zero transition instead of overflowing.

References: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces" (2023), Algorithm 2 and Section 3.3; Dao & Gu, "Transformers are SSMs:
Generalized Models and Efficient Algorithms Through Structured State Space Duality"
(2024), for the chunked (SSD) decomposition.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

DEFAULT_CHUNK_SIZE = 32
INTRA_CHUNK = ("auto", "scan", "quadratic", "sequential")


def selective_scan(
    x: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array | None = None,
    *,
    starts: jax.Array | None = None,
    h0: jax.Array | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    intra_chunk: str = "auto",
    return_final_state: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Runs the selective state-space recurrence over time, chunk by chunk.

    .. math::
       h_t = \\exp(\\Delta_t A) \\odot h_{t-1} + (\\Delta_t x_t) B_t^\\top, \\quad
       y_t = h_t C_t + D \\odot x_t, \\quad h_{-1} = h_0

    Where ``starts[b, t]`` is true the state restarts: ``h_t = (Δ_t x_t) B_tᵀ`` (the
    transition is zero there), as for the first step of a packed document.

    All arithmetic is in float32; the ``[batch, time, d, n]`` states are never
    materialised (see the module docstring for the memory bound). The result does
    not depend on ``chunk_size`` beyond float rounding.

    Args:
      x: ``[batch, time, d]`` inputs.
      delta: ``[batch, time, d]`` positive step sizes ``Δ``.
      A: ``[d, n]`` continuous-time diagonal state matrix (negative entries for a
        stable recurrence; only ``A Δ <= 0`` is guaranteed overflow-free).
      B: ``[batch, time, n]`` input matrices.
      C: ``[batch, time, n]`` output matrices.
      D: optional ``[d]`` skip connection.
      starts: optional ``[batch, time]`` booleans, true where a segment starts (see
        ``seqjax.nn.segments.segment_starts``).
      h0: optional ``[batch, d, n]`` initial state (zeros if ``None``).
      chunk_size: steps per chunk ``L``.
      intra_chunk: how a chunk is evaluated: ``"scan"``, ``"quadratic"``,
        ``"sequential"`` (see the module docstring) or ``"auto"`` (``resolve``).
      return_final_state: also return the last state ``h_{T-1}``.

    Returns:
      ``y: [batch, time, d]`` in the promoted dtype of ``x``, ``delta``, ``B``, ``C``,
      and with ``return_final_state`` also ``h: [batch, d, n]`` in float32.

    Raises:
      ValueError: shapes that do not fit, a ``chunk_size`` that is not a positive
        int, or an unknown ``intra_chunk``.

    Example:
      >>> import jax.numpy as jnp
      >>> from seqjax.nn.selective_scan import selective_scan
      >>> x = jnp.ones((1, 5, 3)); dt = jnp.full((1, 5, 3), 0.1)
      >>> A = -jnp.ones((3, 2)); Bm = jnp.ones((1, 5, 2)); Cm = jnp.ones((1, 5, 2))
      >>> selective_scan(x, dt, A, Bm, Cm).shape
      (1, 5, 3)
    """
    x, delta, A, B, C = (jnp.asarray(v) for v in (x, delta, A, B, C))
    if x.ndim != 3:
        raise ValueError(f"selective_scan: x must be [batch, time, d], got {x.shape}.")
    batch, time, d = x.shape
    if delta.shape != x.shape:
        raise ValueError(
            f"selective_scan: delta must have the shape of x {x.shape}, got "
            f"{delta.shape}."
        )
    if A.ndim != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A must be [d={d}, n], got {A.shape}.")
    n = A.shape[1]
    for name, m in (("B", B), ("C", C)):
        if m.shape != (batch, time, n):
            raise ValueError(
                f"selective_scan: {name} must be [batch, time, n] = "
                f"{(batch, time, n)}, got {m.shape}."
            )
    if D is not None:
        D = jnp.asarray(D)
        if D.shape != (d,):
            raise ValueError(f"selective_scan: D must be [d={d}], got {D.shape}.")
    if starts is not None:
        starts = jnp.asarray(starts)
        if starts.shape != (batch, time):
            raise ValueError(
                f"selective_scan: starts must be [batch, time] = {(batch, time)}, "
                f"got {starts.shape}."
            )
    if h0 is not None:
        h0 = jnp.asarray(h0)
        if h0.shape != (batch, d, n):
            raise ValueError(
                f"selective_scan: h0 must be [batch, d, n] = {(batch, d, n)}, got "
                f"{h0.shape}."
            )
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"selective_scan: chunk_size must be a positive int, got {chunk_size!r}."
        )

    if intra_chunk not in INTRA_CHUNK:
        raise ValueError(
            f"selective_scan: intra_chunk must be one of {INTRA_CHUNK}, got "
            f"{intra_chunk!r}."
        )
    chunk_fn = {
        "scan": _chunk_scan,
        "quadratic": _chunk_quadratic,
        "sequential": _chunk_sequential,
    }[resolve(intra_chunk)]

    out_dtype = jnp.result_type(x.dtype, delta.dtype, B.dtype, C.dtype)
    f32 = jnp.float32
    h = jnp.zeros((batch, d, n), f32) if h0 is None else h0.astype(f32)
    if time == 0:
        y = jnp.zeros((batch, 0, d), out_dtype)
        return (y, h) if return_final_state else y

    size = min(chunk_size, time)
    chunks = -(-time // size)
    pad = chunks * size - time
    # Padded steps have Δ = 0, x = B = C = 0: they leave the state unchanged.
    inputs = [
        x.astype(f32),
        delta.astype(f32),
        B.astype(f32),
        C.astype(f32),
        (jnp.zeros((batch, time), bool) if starts is None else starts.astype(bool)),
    ]

    def to_chunks(v):
        v = jnp.pad(v, [(0, 0), (0, pad)] + [(0, 0)] * (v.ndim - 2))
        v = v.reshape((batch, chunks, size) + v.shape[2:])
        return jnp.moveaxis(v, 1, 0)  # [chunks, batch, size, ...]

    body = jax.checkpoint(functools.partial(chunk_fn, A.astype(f32)), prevent_cse=False)
    h, ys = jax.lax.scan(body, h, tuple(to_chunks(v) for v in inputs))
    y = jnp.moveaxis(ys, 0, 1).reshape(batch, chunks * size, d)[:, :time]
    if D is not None:
        y = y + D.astype(f32) * inputs[0]
    y = y.astype(out_dtype)
    return (y, h) if return_final_state else y


def resolve(intra_chunk: str, backend: str | None = None) -> str:
    """Maps ``"auto"`` to a concrete ``intra_chunk``; others are returned unchanged.

    Policy: ``"sequential"`` on CPU, where a step-by-step loop does the least work:
    at batch 8, T 512, d 512, n 16 it measured 4.9x faster forward and 2.6x faster
    forward+backward than ``"scan"``, with half the temporary memory; ``"quadratic"``
    was slower still. ``"scan"`` on GPU and TPU, where the chunk's steps run in
    parallel (not yet measured against the others there).
    """
    if intra_chunk != "auto":
        return intra_chunk
    backend = backend or jax.default_backend()
    return "sequential" if backend == "cpu" else "scan"


def _chunk_scan(A, h, inputs):
    """One chunk by a parallel prefix scan: ``(h_in, inputs) -> (h_out, y)``.

    The transitions ``exp(Δ_t A) <= 1`` and inputs ``(Δ_t x_t) B_tᵀ`` of the chunk
    (``[b, L, d, n]``, this chunk only) are composed with ``associative_scan``; the
    entering state is folded into the first input.
    """
    x, dt, Bm, Cm, starts = inputs
    a = jnp.where(starts[..., None, None], 0.0, jnp.exp(dt[..., None] * A))
    b = (dt * x)[..., None] * Bm[:, :, None, :]
    b = b.at[:, 0].add(a[:, 0] * h)

    def combine(left, right):
        return right[0] * left[0], right[0] * left[1] + right[1]

    _, hs = jax.lax.associative_scan(combine, (a, b), axis=1)
    y = jnp.einsum("btdn,btn->btd", hs, Cm)
    return hs[:, -1], y


def _chunk_sequential(A, h, inputs):
    """One chunk step by step (``jax.lax.scan``): ``(h_in, inputs) -> (h_out, y)``.

    Only the running state ``[b, d, n]`` is live in the forward pass; the backward
    pass (the chunk is rematerialised) keeps the chunk's ``L`` states.
    """

    def step(h, step_inputs):
        x, dt, b, c, start = step_inputs  # [b, d], [b, d], [b, n], [b, n], [b]
        a = jnp.where(start[:, None, None], 0.0, jnp.exp(dt[..., None] * A))
        h = a * h + (dt * x)[..., None] * b[:, None, :]
        return h, jnp.einsum("bdn,bn->bd", h, c)

    h, ys = jax.lax.scan(step, h, tuple(jnp.moveaxis(v, 1, 0) for v in inputs))
    return h, jnp.moveaxis(ys, 0, 1)


def _chunk_quadratic(A, h, inputs):
    """One chunk in the masked quadratic form: ``(h_in, inputs) -> (h_out, y)``.

    Shapes: ``A: [d, n]``, ``h: [b, d, n]``, ``x, dt: [b, L, d]``, ``Bm, Cm: [b, L,
    n]``, ``starts: [b, L]``.
    """
    x, dt, Bm, Cm, starts = inputs
    size = x.shape[1]
    # seg[t] = number of segment starts in [0, t]: s -> t is connected iff
    # seg[s] == seg[t] (no start in (s, t]); the entering state reaches t iff
    # seg[t] == 0.
    seg = jnp.cumsum(starts.astype(jnp.int32), axis=1)
    idx = jnp.arange(size)
    later = idx[:, None] > idx[None, :]  # [r, s]: r > s
    # lam[b, t, s, :] = sum_{s < r <= t} dt[b, r]: cumulative sums of a masked copy,
    # so no difference of large partial sums is ever taken.
    lam = jnp.cumsum(jnp.where(later[None, :, :, None], dt[:, :, None, :], 0), axis=1)
    valid = (idx[:, None] >= idx[None, :])[None] & (
        seg[:, :, None] == seg[:, None, :]
    )  # [b, t, s]
    lam = jnp.where(valid[..., None], lam, 0.0)
    decay = jnp.where(
        valid[..., None, None], jnp.exp(lam[..., None] * A), 0.0
    )  # [b, t, s, d, n]
    u = dt * x  # [b, L, d]
    cb = Cm[:, :, None, :] * Bm[:, None, :, :]  # [b, t, s, n]
    y = jnp.einsum("btsdn,btsn,bsd->btd", decay, cb, u)

    # Entering state: decays by exp(A * sum_{r <= t} dt[r]).
    total = jnp.cumsum(dt, axis=1)  # [b, L, d]
    carry_in = (seg == 0).astype(dt.dtype)  # [b, L]
    decay_in = jnp.exp(total[..., None] * A)  # [b, L, d, n]
    y = y + jnp.einsum("btdn,btn,bdn->btd", decay_in, Cm, h) * carry_in[..., None]

    h_out = jnp.einsum("bsdn,bsn,bsd->bdn", decay[:, -1], Bm, u)
    h_out = h_out + decay_in[:, -1] * h * carry_in[:, -1, None, None]
    return h_out, y
