"""``GatedLinearAttention``: the GLA layer of Yang et al. (2024).

.. math::
   \\alpha_t = \\sigma(x_t W_{\\alpha 1} W_{\\alpha 2} + b_\\alpha)^{1/\\tau}, \\quad
   S_t = \\mathrm{diag}(\\alpha_t) S_{t-1} + k_t^\\top v_t, \\quad o_t = q_t S_t,

.. math::
   y_t = W_O\\,(\\mathrm{Norm}(o_t) \\odot \\mathrm{Swish}(x_t W_r))

per head, with ``q = x W_Q`` (scaled by ``d_k^{-1/2}``), ``k = x W_K``, ``v = x W_V``.
Reference: "Gated Linear Attention Transformers with Hardware-Efficient Training"
(Yang, Wang, Shen, Panda & Kim, ICML 2024), Section 4.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import chunked_gla, sequence_checks

NORMS = ("rmsnorm", "layernorm")


def head_norm(
    o: jax.Array,
    scale: jax.Array,
    bias: jax.Array | None,
    *,
    kind: str,
    eps: float,
) -> jax.Array:
    """Normalises the last axis (one head's values) in float32.

    .. math:: \\mathrm{RMSNorm}(o) = o / \\sqrt{\\overline{o^2} + \\epsilon} \\odot
       \\gamma, \\quad \\mathrm{LayerNorm}(o) = (o - \\bar o) /
       \\sqrt{\\mathrm{Var}(o) + \\epsilon} \\odot \\gamma + \\beta

    Args:
      o: ``[..., d]`` values.
      scale: ``[d]`` gain ``γ``.
      bias: ``[d]`` offset ``β`` (layernorm) or ``None``.
      kind: ``"rmsnorm"`` or ``"layernorm"``.
      eps: added to the variance.

    Returns:
      The normalised values, float32, shape of ``o``.
    """
    o = o.astype(jnp.float32)
    if kind == "layernorm":
        o = o - o.mean(-1, keepdims=True)
    o = o * jax.lax.rsqrt(jnp.mean(o * o, -1, keepdims=True) + eps)
    o = o * scale.astype(jnp.float32)
    if bias is not None:
        o = o + bias.astype(jnp.float32)
    return o


class GatedLinearAttention(nnx.Module):
    """Gated linear attention with a data-dependent, low-rank, per-key decay.

    .. math::
       S_t = \\mathrm{diag}(\\alpha_t) S_{t-1} + k_t^\\top v_t, \\quad
       o_t = q_t S_t, \\quad
       \\log \\alpha_t = \\log\\sigma(x_t W_{\\alpha 1} W_{\\alpha 2} + b_\\alpha)/\\tau

    per head (``S_t: [d_k, d_v]``), followed by a per-head norm, the output gate
    ``Swish(x W_r)`` and ``W_O``. The parallel form is the chunked algorithm of
    ``seqjax.nn.chunked_gla`` (intra-chunk masked attention with decay, inter-chunk
    state passing through ``linear_scan``); ``step`` is the recurrent form.

    Defaults follow the paper and its reference code: ``d_k = features/2`` in total
    (``expand_k = 0.5``), ``d_v = features`` (``expand_v = 1``), 4 heads, gate rank
    16, temperature ``τ = 16``. Following the authors' released code, queries are
    scaled by ``d_k^{-1/2}`` (per head), the output gate projection has no bias and
    the per-head norm is an RMSNorm (``norm="layernorm"`` gives a LayerNorm; which of
    the two the paper's text uses is unverified here). Projections use Flax's default
    initialisation (the paper does not specify one).

    Args:
      features: model width (input and output features).
      num_heads: number of heads (paper: 4).
      expand_k: total key width as a multiple of ``features`` (paper: 0.5).
      expand_v: total value width as a multiple of ``features`` (paper: 1).
      gate_low_rank_dim: rank of the decay projection (paper: 16).
      gate_logit_normalizer: the temperature ``τ`` (paper: 16).
      use_output_gate: multiply by ``Swish(x W_r)`` before ``W_O``.
      norm: ``"rmsnorm"`` or ``"layernorm"`` per head.
      norm_eps: epsilon of the norm.
      chunk_size: chunk length of the training form.
      dtype: compute dtype of the projections (the recurrence is float32); the
        output has this dtype.
      param_dtype: parameter dtype.
      rngs: random streams (``params`` is used).

    Raises:
      ValueError: widths not divisible by ``num_heads``, non-positive sizes or an
        unknown ``norm``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqjax.nn.gla import GatedLinearAttention
      >>> layer = GatedLinearAttention(16, num_heads=2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 16))).shape
      (2, 10, 16)

    References:
      Yang, Wang, Shen, Panda & Kim, "Gated Linear Attention Transformers with
      Hardware-Efficient Training" (ICML 2024).
    """

    def __init__(
        self,
        features: int,
        *,
        num_heads: int = 4,
        expand_k: float = 0.5,
        expand_v: float = 1.0,
        gate_low_rank_dim: int = 16,
        gate_logit_normalizer: float = 16.0,
        use_output_gate: bool = True,
        norm: str = "rmsnorm",
        norm_eps: float = 1e-5,
        chunk_size: int = chunked_gla.DEFAULT_CHUNK_SIZE,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        for name, value in (
            ("features", features),
            ("num_heads", num_heads),
            ("gate_low_rank_dim", gate_low_rank_dim),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"GatedLinearAttention: {name} must be a positive int, got "
                    f"{value!r}."
                )
        key_dim, value_dim = int(features * expand_k), int(features * expand_v)
        if key_dim < num_heads or key_dim % num_heads or value_dim % num_heads:
            raise ValueError(
                f"GatedLinearAttention: key width {key_dim} (features * expand_k) and "
                f"value width {value_dim} (features * expand_v) must be positive "
                f"multiples of num_heads={num_heads}."
            )
        if norm not in NORMS:
            raise ValueError(
                f"GatedLinearAttention: norm must be one of {NORMS}, got {norm!r}."
            )
        if gate_logit_normalizer <= 0:
            raise ValueError(
                "GatedLinearAttention: gate_logit_normalizer must be positive, got "
                f"{gate_logit_normalizer!r}."
            )
        self.features = features
        self.num_heads = num_heads
        self.head_k = key_dim // num_heads
        self.head_v = value_dim // num_heads
        self.gate_logit_normalizer = float(gate_logit_normalizer)
        self.norm = norm
        self.norm_eps = norm_eps
        self.chunk_size = chunk_size
        self.dtype = dtype

        lin = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = nnx.Linear(features, key_dim, use_bias=False, **lin)
        self.k_proj = nnx.Linear(features, key_dim, use_bias=False, **lin)
        self.v_proj = nnx.Linear(features, value_dim, use_bias=False, **lin)
        self.gk_down = nnx.Linear(features, gate_low_rank_dim, use_bias=False, **lin)
        self.gk_up = nnx.Linear(gate_low_rank_dim, key_dim, use_bias=True, **lin)
        self.g_proj = (
            nnx.Linear(features, value_dim, use_bias=False, **lin)
            if use_output_gate
            else None
        )
        self.norm_scale = nnx.Param(jnp.ones((self.head_v,), param_dtype))
        self.norm_bias = (
            nnx.Param(jnp.zeros((self.head_v,), param_dtype))
            if norm == "layernorm"
            else None
        )
        self.o_proj = nnx.Linear(value_dim, features, use_bias=False, **lin)

    def _qkvg(self, x: jax.Array):
        """Per-head ``q`` (scaled), ``k``, ``v`` and float32 log-decays ``g``."""
        heads = x.shape[:-1] + (self.num_heads, -1)
        q = self.q_proj(x).reshape(heads) * (self.head_k**-0.5)
        k = self.k_proj(x).reshape(heads)
        v = self.v_proj(x).reshape(heads)
        logits = self.gk_up(self.gk_down(x)).astype(jnp.float32).reshape(heads)
        g = jax.nn.log_sigmoid(logits) / self.gate_logit_normalizer
        return q, k, v, g

    def _output(self, o: jax.Array, x: jax.Array) -> jax.Array:
        """Norm per head, output gate and ``W_O``; ``o: [..., heads, d_v]``."""
        bias = None if self.norm_bias is None else self.norm_bias[...]
        o = head_norm(o, self.norm_scale[...], bias, kind=self.norm, eps=self.norm_eps)
        o = o.reshape(o.shape[:-2] + (-1,)).astype(self.dtype)
        if self.g_proj is not None:
            o = o * jax.nn.silu(self.g_proj(x))
        return self.o_proj(o)

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """The chunked parallel (training) form.

        Args:
          x: ``[batch, time, features]`` inputs.
          segment_ids: optional ``[batch, time]`` integer document labels; the state
            restarts where a document starts.

        Returns:
          ``[batch, time, features]`` outputs in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` has the wrong shape.
        """
        x = sequence_checks.sequence("GatedLinearAttention", x, self.features).astype(
            self.dtype
        )
        starts = sequence_checks.segment_starts("GatedLinearAttention", segment_ids, x)
        q, k, v, g = self._qkvg(x)
        o = chunked_gla.chunked_gla(
            q, k, v, g, starts=starts, chunk_size=self.chunk_size
        )
        return self._output(o, x)

    def init_state(self, batch_size: int) -> jax.Array:
        """Zero state.

        Args:
          batch_size: number of sequences.

        Returns:
          ``[batch_size, num_heads, d_k, d_v]`` float32 zeros (per-head ``S``).
        """
        return jnp.zeros(
            (batch_size, self.num_heads, self.head_k, self.head_v), jnp.float32
        )

    def step(self, state: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One recurrent step: ``S ← diag(α_t) S + k_tᵀ v_t``, ``o_t = q_t S``.

        Args:
          state: ``[batch, num_heads, d_k, d_v]`` from ``init_state`` or ``step``.
          x_t: ``[batch, features]`` input.

        Returns:
          ``(state, y_t)`` with ``y_t: [batch, features]`` in ``dtype``.

        Raises:
          ValueError: ``x_t`` has the wrong shape.
        """
        x_t = sequence_checks.step_input(
            "GatedLinearAttention", x_t, self.features
        ).astype(self.dtype)
        q, k, v, g = self._qkvg(x_t)
        q, k, v = (a.astype(jnp.float32) for a in (q, k, v))
        state = jnp.exp(g)[..., None] * state + k[..., None] * v[..., None, :]
        o = jnp.einsum("bhi,bhij->bhj", q, state)
        return state, self._output(o, x_t)
