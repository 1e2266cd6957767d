"""``Mamba``: the selective state-space (S6) block of Gu & Dao (2023).

.. math::
   [x; z] = W_{in} u_t, \\quad \\tilde x = \\mathrm{SiLU}(\\mathrm{conv}(x)), \\quad
   [\\delta; B_t; C_t] = W_x \\tilde x_t, \\quad
   \\Delta_t = \\mathrm{softplus}(W_\\Delta \\delta + b_\\Delta),

.. math::
   h_t = e^{\\Delta_t A} \\odot h_{t-1} + (\\Delta_t \\tilde x_t) B_t^\\top, \\quad
   y_t = h_t C_t + D \\odot \\tilde x_t, \\quad
   o_t = W_{out}(y_t \\odot \\mathrm{SiLU}(z_t))

with ``A = -exp(A_log)``. Reference: "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces" (Gu & Dao, 2023), Section 3 and Appendix; defaults as in its
reference implementation.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import conv, selective_scan, sequence_checks


class MambaState(NamedTuple):
    """Decoding state of ``Mamba``.

    Attributes:
      conv: ``[batch, d_conv - 1, d_inner]`` last inputs of the causal convolution.
      ssm: ``[batch, d_inner, d_state]`` float32 state ``h``.
    """

    conv: jax.Array
    ssm: jax.Array


def _dt_bias_init(dt_min: float, dt_max: float, dt_init_floor: float):
    """Bias with ``softplus(bias) = Δ``, ``Δ`` log-uniform in ``[dt_min, dt_max]``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32)
        dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = jnp.maximum(dt, dt_init_floor)
        # softplus^{-1}(dt) = dt + log(1 - exp(-dt)), computed without cancellation.
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

    return init


class Mamba(nnx.Module):
    """The Mamba (S6) selective state-space mixer.

    .. math::
       h_t = e^{\\Delta_t A} \\odot h_{t-1} + (\\Delta_t \\tilde x_t) B_t^\\top, \\quad
       o_t = W_{out}((h_t C_t + D \\odot \\tilde x_t) \\odot \\mathrm{SiLU}(z_t))

    with ``x̃ = SiLU(causal depthwise conv(x))``, ``[x; z] = W_in u``, and the
    input-dependent ``Δ_t = softplus(W_Δ W_δ x̃_t + b_Δ)``, ``B_t``, ``C_t`` from
    ``x̃_t`` (see the module docstring). The parallel form evaluates the recurrence
    with the chunked ``selective_scan``, never materialising ``[batch, time, d_inner,
    d_state]``; ``step`` is the recurrent form.

    Initialisation (paper / reference code): ``A_log[d, n] = log(n + 1)`` (S4D-Real,
    ``A = -(1, 2, ..., d_state)`` for every channel); ``D = 1``; the ``Δ`` bias is
    ``softplus⁻¹(Δ₀)`` with ``Δ₀`` log-uniform in ``[dt_min, dt_max]`` and floored at
    ``dt_init_floor``; the ``Δ`` projection weight is ``U(±dt_scale/sqrt(dt_rank))``
    (``dt_init="random"``) or that constant (``"constant"``); the convolution is
    ``U(±1/sqrt(d_conv))``; the other projections use Flax's default (LeCun normal).
    ``A_log`` and ``D`` should not get weight decay.

    Args:
      features: model width ``d_model`` (input and output features).
      d_state: state size ``N`` per channel (paper: 16).
      d_conv: causal convolution width (paper: 4).
      expand: ``d_inner = expand * d_model`` (paper: 2).
      dt_rank: rank of the ``Δ`` projection; ``"auto"`` is ``ceil(d_model / 16)``.
      dt_min: smallest initial ``Δ`` (paper: 1e-3).
      dt_max: largest initial ``Δ`` (paper: 0.1).
      dt_init: ``"random"`` or ``"constant"`` initialisation of the ``Δ`` weight.
      dt_scale: scale of that weight (paper: 1).
      dt_init_floor: floor on the initial ``Δ`` (paper: 1e-4).
      conv_bias: bias in the convolution (paper: true).
      use_bias: biases in the input and output projections (paper: false).
      chunk_size: chunk length of the selective scan.
      intra_chunk: evaluation inside a chunk (see ``selective_scan``).
      dtype: compute dtype of the projections and convolution; the scan runs in
        float32 and the output has this dtype.
      param_dtype: parameter dtype.
      rngs: random streams (``params`` is used).

    Raises:
      ValueError: a non-positive size or an unknown ``dt_init``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqjax.nn.mamba import Mamba
      >>> layer = Mamba(16, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 16))).shape
      (2, 10, 16)

    References:
      Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
      (2023).
    """

    def __init__(
        self,
        features: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        use_bias: bool = False,
        chunk_size: int = selective_scan.DEFAULT_CHUNK_SIZE,
        intra_chunk: str = "auto",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        for name, value in (
            ("features", features),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("expand", expand),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Mamba: {name} must be a positive int, got {value!r}."
                )
        if dt_rank == "auto":
            dt_rank = math.ceil(features / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(
                f"Mamba: dt_rank must be a positive int or 'auto', got {dt_rank!r}."
            )
        if dt_init not in ("random", "constant"):
            raise ValueError(
                f"Mamba: dt_init must be 'random' or 'constant', got {dt_init!r}."
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                f"Mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, "
                f"dt_max={dt_max}."
            )
        d_inner = expand * features
        self.features = features
        self.d_inner = d_inner
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank
        self.chunk_size = chunk_size
        self.intra_chunk = intra_chunk
        self.dtype = dtype

        linear = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.in_proj = nnx.Linear(features, 2 * d_inner, use_bias=use_bias, **linear)
        self.conv = conv.CausalConv1d(
            d_inner,
            d_conv,
            use_bias=conv_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.x_proj = nnx.Linear(
            d_inner, dt_rank + 2 * d_state, use_bias=False, **linear
        )
        std = dt_scale / math.sqrt(dt_rank)
        if dt_init == "constant":
            dt_kernel_init = jax.nn.initializers.constant(std)
        else:

            def dt_kernel_init(key, shape, dtype=jnp.float32):
                return jax.random.uniform(key, shape, dtype, -std, std)

        # Δ is computed in float32 (its bias sits near softplus^{-1}(1e-3) ≈ -6.9).
        self.dt_proj = nnx.Linear(
            dt_rank,
            d_inner,
            kernel_init=dt_kernel_init,
            bias_init=_dt_bias_init(dt_min, dt_max, dt_init_floor),
            dtype=jnp.float32,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        a = jnp.broadcast_to(
            jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_inner, d_state)
        )
        self.A_log = nnx.Param(jnp.log(a).astype(param_dtype))
        self.D = nnx.Param(jnp.ones((d_inner,), param_dtype))
        self.out_proj = nnx.Linear(d_inner, features, use_bias=use_bias, **linear)

    def _ssm_inputs(self, xc: jax.Array):
        """``(Δ, B, C)`` in float32 from the convolved inputs ``x̃``."""
        dbc = self.x_proj(xc)
        low, b, c = jnp.split(dbc, [self.dt_rank, self.dt_rank + self.d_state], axis=-1)
        dt = jax.nn.softplus(self.dt_proj(low.astype(jnp.float32)))
        return dt, b.astype(jnp.float32), c.astype(jnp.float32)

    def _A(self) -> jax.Array:
        return -jnp.exp(self.A_log[...].astype(jnp.float32))

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """The parallel (training) form.

        Args:
          x: ``[batch, time, features]`` inputs.
          segment_ids: optional ``[batch, time]`` integer document labels; the
            convolution window and the state restart where a document starts.

        Returns:
          ``[batch, time, features]`` outputs in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` has the wrong shape.
        """
        x = sequence_checks.sequence("Mamba", x, self.features)
        starts = sequence_checks.segment_starts("Mamba", segment_ids, x)
        xz = self.in_proj(x.astype(self.dtype))
        xi, z = jnp.split(xz, 2, axis=-1)
        xc = jax.nn.silu(self.conv(xi, segment_ids=segment_ids))
        dt, b, c = self._ssm_inputs(xc)
        y = selective_scan.selective_scan(
            xc.astype(jnp.float32),
            dt,
            self._A(),
            b,
            c,
            self.D[...].astype(jnp.float32),
            starts=starts,
            chunk_size=self.chunk_size,
            intra_chunk=self.intra_chunk,
        )
        return self.out_proj(y.astype(self.dtype) * jax.nn.silu(z))

    def init_state(self, batch_size: int) -> MambaState:
        """Zero convolution window and zero SSM state.

        Args:
          batch_size: number of sequences.

        Returns:
          A ``MambaState``.
        """
        return MambaState(
            conv=self.conv.init_state(batch_size),
            ssm=jnp.zeros((batch_size, self.d_inner, self.d_state), jnp.float32),
        )

    def step(self, state: MambaState, x_t: jax.Array) -> tuple[MambaState, jax.Array]:
        """One recurrent step.

        Args:
          state: a ``MambaState`` from ``init_state`` or a previous ``step``.
          x_t: ``[batch, features]`` input.

        Returns:
          ``(state, y_t)`` with ``y_t: [batch, features]`` in ``dtype``.

        Raises:
          ValueError: ``x_t`` has the wrong shape.
        """
        x_t = sequence_checks.step_input("Mamba", x_t, self.features)
        xz = self.in_proj(x_t.astype(self.dtype))
        xi, z = jnp.split(xz, 2, axis=-1)
        window, xc = self.conv.step(state.conv, xi)
        xc = jax.nn.silu(xc)
        dt, b, c = self._ssm_inputs(xc)
        u = xc.astype(jnp.float32)
        decay = jnp.exp(dt[..., None] * self._A())
        h = decay * state.ssm + (dt * u)[..., None] * b[:, None, :]
        y = jnp.einsum("bdn,bn->bd", h, c) + self.D[...].astype(jnp.float32) * u
        out = self.out_proj(y.astype(self.dtype) * jax.nn.silu(z))
        return MambaState(conv=window, ssm=h), out
