"""``LightNet``: the additive recurrence of "You Only Scan Once" (Qin et al., 2024).

.. math::
   S_t = S_{t-1} + e^{k_t \\top} v_t, \\quad Z_t = \\sum_{s \\le t} e^{k_s}, \\quad
   o_t = q_t\\,(S_t / Z_t)

per head, with the division per key feature (``S_t: [d_k, d_v]``, ``Z_t: [d_k]``)
and ``q = SiLU(x W_q)``. Because the state is a plain sum it does not depend on the
order of the scan, which is what lets LightNet cover several dimensions with one scan.

It is evaluated stably as gated linear attention on normalised quantities: with the
running log-normaliser :math:`z_t = \\log Z_t` (a float32 logcumsumexp),

.. math::
   \\tilde S_t = S_t / Z_t = e^{z_{t-1} - z_t} \\tilde S_{t-1} + e^{k_t - z_t \\top}
   v_t,

i.e. GLA with the data-dependent decay ``g_t = z_{t-1} - z_t <= 0`` and keys
``exp(k_t - z_t) <= 1``; nothing is exponentiated above 1. Normaliser convention:
:math:`Z_t = \\sum_{s \\le t} e^{k_s}` over the current document only, as in the paper's
equation and the flash-linear-attention implementation (another code base uses
:math:`1 + \\sum_s e^{k_s}`, which differs slightly). Decoding carries ``z`` next to
the state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import chunked_gla, gla, sequence_checks


class LightNetState(NamedTuple):
    """Decoding state of ``LightNet``.

    Attributes:
      state: ``[batch, heads, d_k, d_v]`` float32 normalised state ``S_t / Z_t``.
      log_normalizer: ``[batch, heads, d_k]`` float32 ``z_t = log Z_t`` (``-inf``
        before the first step).
    """

    state: jax.Array
    log_normalizer: jax.Array


def segment_logcumsumexp(k: jax.Array, starts: jax.Array | None) -> jax.Array:
    """``z_t = log Σ exp(k_s)`` over ``s <= t`` in the same segment, along axis 1.

    .. math:: z_t = \\log \\sum_{s_0(t) \\le s \\le t} e^{k_s}

    where :math:`s_0(t)` is the start of the segment containing ``t``.

    Args:
      k: ``[batch, time, ...]`` values (computed in float32).
      starts: ``[batch, time]`` booleans, true where a segment starts, or ``None``
        (one segment per row).

    Returns:
      float32 ``z`` with the shape of ``k``.
    """
    k = k.astype(jnp.float32)
    if starts is None:
        return jax.lax.cumlogsumexp(k, axis=1)
    flags = jnp.broadcast_to(
        starts.reshape(starts.shape + (1,) * (k.ndim - 2)), k.shape
    )

    def combine(left, right):
        z_left, f_left = left
        z_right, f_right = right
        return jnp.where(f_right, z_right, jnp.logaddexp(z_left, z_right)), (
            f_left | f_right
        )

    z, _ = jax.lax.associative_scan(combine, (k, flags), axis=1)
    return z


class LightNet(nnx.Module):
    """LightNet's normalised additive recurrence, with output gate and norm.

    .. math::
       o_t = q_t \\Big(\\sum_{s \\le t} e^{k_s \\top} v_s \\Big/
       \\sum_{s \\le t} e^{k_s}\\Big), \\quad
       y_t = W_o\\,(\\mathrm{RMSNorm}(o_t) \\odot \\mathrm{SiLU}(x_t W_{g1} W_{g2}))

    per head, with ``q = SiLU(x W_q) d_k^{-1/2}``, ``k = x W_k``, ``v = x W_v``. The
    parallel form is the chunked GLA algorithm (``seqjax.nn.chunked_gla``) with decay
    ``z_{t-1} - z_t`` from a float32 logcumsumexp; ``step`` carries ``(S_t/Z_t,
    log Z_t)``. See the module docstring for the normaliser convention.

    Defaults follow the flash-linear-attention implementation of the paper's layer:
    key width 128 per head (``head_k_dim``), ``num_heads = features // 128``, the
    full ``features`` as value width, a rank-128 output gate and a SiLU-gated
    RMSNorm over all value features. Like that code, queries are scaled by
    ``d_k^{-1/2}``; projections use Flax's default initialisation.

    Args:
      features: model width (input and output features).
      num_heads: number of heads; default ``max(1, features // head_k_dim)``.
      head_k_dim: key width per head (reference code: 128).
      gate_low_rank_dim: rank of the output-gate projection (reference code: 128).
      norm_eps: RMSNorm epsilon.
      chunk_size: chunk length of the training form.
      dtype: compute dtype of the projections (the recurrence is float32); the
        output has this dtype.
      param_dtype: parameter dtype.
      rngs: random streams (``params`` is used).

    Raises:
      ValueError: ``features`` not divisible by ``num_heads`` or non-positive sizes.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqjax.nn.lightnet import LightNet
      >>> layer = LightNet(16, num_heads=2, head_k_dim=8, gate_low_rank_dim=4,
      ...                  rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 16))).shape
      (2, 10, 16)

    References:
      Qin et al., "You Only Scan Once: Efficient
      Multi-dimension Sequential Modeling with LightNet" (2024).
    """

    def __init__(
        self,
        features: int,
        *,
        num_heads: int | None = None,
        head_k_dim: int = 128,
        gate_low_rank_dim: int = 128,
        norm_eps: float = 1e-5,
        chunk_size: int = chunked_gla.DEFAULT_CHUNK_SIZE,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_heads is None and isinstance(features, int):
            num_heads = max(1, features // head_k_dim)
        for name, value in (
            ("features", features),
            ("num_heads", num_heads),
            ("head_k_dim", head_k_dim),
            ("gate_low_rank_dim", gate_low_rank_dim),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"LightNet: {name} must be a positive int, got {value!r}."
                )
        if features % num_heads:
            raise ValueError(
                f"LightNet: features={features} must be a multiple of "
                f"num_heads={num_heads}."
            )
        self.features = features
        self.num_heads = num_heads
        self.head_k = head_k_dim
        self.head_v = features // num_heads
        self.norm_eps = norm_eps
        self.chunk_size = chunk_size
        self.dtype = dtype

        key_dim = num_heads * head_k_dim
        lin = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = nnx.Linear(features, key_dim, **lin)
        self.k_proj = nnx.Linear(features, key_dim, **lin)
        self.v_proj = nnx.Linear(features, features, **lin)
        self.g_down = nnx.Linear(features, gate_low_rank_dim, **lin)
        self.g_up = nnx.Linear(gate_low_rank_dim, features, **lin)
        self.norm_scale = nnx.Param(jnp.ones((features,), param_dtype))
        self.o_proj = nnx.Linear(features, features, **lin)

    def _qkv(self, x: jax.Array):
        """Per-head scaled ``q``, float32 ``k`` (logits) and ``v``."""
        heads = x.shape[:-1] + (self.num_heads, -1)
        q = jax.nn.silu(self.q_proj(x)).reshape(heads) * (self.head_k**-0.5)
        k = self.k_proj(x).reshape(heads).astype(jnp.float32)
        v = self.v_proj(x).reshape(heads)
        return q, k, v

    def _output(self, o: jax.Array, x: jax.Array) -> jax.Array:
        """RMSNorm over all value features, SiLU gate and ``W_o``."""
        o = o.reshape(o.shape[:-2] + (-1,))
        o = gla.head_norm(
            o, self.norm_scale[...], None, kind="rmsnorm", eps=self.norm_eps
        )
        o = o.astype(self.dtype) * jax.nn.silu(self.g_up(self.g_down(x)))
        return self.o_proj(o)

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """The chunked parallel (training) form.

        Args:
          x: ``[batch, time, features]`` inputs.
          segment_ids: optional ``[batch, time]`` integer document labels; the sums
            ``S`` and ``Z`` restart where a document starts.

        Returns:
          ``[batch, time, features]`` outputs in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` has the wrong shape.
        """
        x = sequence_checks.sequence("LightNet", x, self.features).astype(self.dtype)
        starts = sequence_checks.segment_starts("LightNet", segment_ids, x)
        q, k, v = self._qkv(x)
        z = segment_logcumsumexp(k, starts)  # [b, t, h, d_k], float32
        z_prev = jnp.concatenate([z[:, :1], z[:, :-1]], axis=1)
        g = z_prev - z  # log Z_{t-1} - log Z_t <= 0; position 0 / starts reset
        if starts is not None:
            g = jnp.where(starts[..., None, None], 0.0, g)
        k_norm = jnp.exp(k - z)
        o = chunked_gla.chunked_gla(
            q, k_norm, v, g, starts=starts, chunk_size=self.chunk_size
        )
        return self._output(o, x)

    def init_state(self, batch_size: int) -> LightNetState:
        """Zero state and ``log Z = -inf`` (an empty sum).

        Args:
          batch_size: number of sequences.

        Returns:
          A ``LightNetState``.
        """
        shape = (batch_size, self.num_heads, self.head_k)
        return LightNetState(
            state=jnp.zeros(shape + (self.head_v,), jnp.float32),
            log_normalizer=jnp.full(shape, -jnp.inf, jnp.float32),
        )

    def step(
        self, state: LightNetState, x_t: jax.Array
    ) -> tuple[LightNetState, jax.Array]:
        """One recurrent step on the normalised state.

        .. math:: z_t = \\mathrm{logaddexp}(z_{t-1}, k_t), \\quad
           \\tilde S_t = e^{z_{t-1} - z_t} \\tilde S_{t-1} + e^{k_t - z_t \\top} v_t,
           \\quad o_t = q_t \\tilde S_t

        Args:
          state: a ``LightNetState`` from ``init_state`` or ``step``.
          x_t: ``[batch, features]`` input.

        Returns:
          ``(state, y_t)`` with ``y_t: [batch, features]`` in ``dtype``.

        Raises:
          ValueError: ``x_t`` has the wrong shape.
        """
        x_t = sequence_checks.step_input("LightNet", x_t, self.features).astype(
            self.dtype
        )
        q, k, v = self._qkv(x_t)
        z_prev = state.log_normalizer
        z = jnp.logaddexp(z_prev, k)
        decay = jnp.exp(z_prev - z)  # 0 at the first step (z_prev = -inf)
        s = decay[..., None] * state.state + (
            jnp.exp(k - z)[..., None] * v.astype(jnp.float32)[..., None, :]
        )
        o = jnp.einsum("bhi,bhij->bhj", q.astype(jnp.float32), s)
        return LightNetState(state=s, log_normalizer=z), self._output(o, x_t)
