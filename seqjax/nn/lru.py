"""LRU: the Linear Recurrent Unit (a complex diagonal linear RNN with stable init).

.. math::
   h_t = \\Lambda h_{t-1} + \\gamma \\odot (B x_t), \\qquad
   y_t = \\mathrm{Re}(C h_t) + D \\odot x_t, \\qquad
   \\Lambda = \\mathrm{diag}\\big(e^{-e^{\\nu^{\\log}} + i e^{\\theta^{\\log}}}\\big),
   \\quad \\gamma = e^{\\gamma^{\\log}}

Reference: Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu, De, "Resurrecting
Recurrent Neural Networks for Long Sequences" (ICML 2023).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import segments
from seqjax.nn import sequence_checks as checks
from seqjax.scan import linear_scan, methods


class LRU(nnx.Module):
    """The Linear Recurrent Unit of Orvieto et al. (2023) as a sequence mixer.

    .. math::
       h_t = \\lambda \\odot h_{t-1} + \\gamma \\odot (B x_t), \\quad
       y_t = \\mathrm{Re}(C h_t) + D \\odot x_t, \\quad
       \\lambda_j = \\exp(-\\exp(\\nu^{\\log}_j) + i\\exp(\\theta^{\\log}_j))

    * Exponential parameterisation (paper §3.3): ``|λ| = exp(-exp(ν_log)) < 1`` for
      every real ``ν_log``, and the phase is ``θ = exp(θ_log)``.
    * Ring initialisation (Lemma 2): ``|λ|`` is uniform by area on the ring
      ``r_min ≤ |λ| ≤ r_max``, i.e. ``ν = -½ log(u₁ (r_max² - r_min²) + r_min²)``,
      and the phase ``θ = max_phase · u₂`` with ``u₁, u₂ ~ U(0, 1]``.
    * γ normalisation (§3.4): a learnable ``γ_log`` initialised to
      ``log sqrt(1 - |λ|²)``, so ``E|h|²`` stays close to ``E|Bx|²`` when
      ``|λ| → 1``.
    * ``B`` (``[state_size, features]``) and ``C`` (``[features, state_size]``) are
      complex, stored as real and imaginary parts, with ``B_re, B_im ~ N(0, 1/(2H))``,
      ``C_re, C_im ~ N(0, 1/N)`` and ``D ~ N(0, 1)`` as in the paper's appendix code.

    Defaults follow the paper: ``state_size=256`` (its ListOps/Retrieval/Pathfinder/
    PathX setting) and the ring ``[0.9, 0.999]`` with ``max_phase = 2π`` (its sCIFAR
    and Pathfinder setting; PathX uses ``[0.999, 0.9999]`` and ``π/10``).

    The parallel form is ``seqjax.scan.linear_scan`` with a complex, time-invariant
    elementwise transition; the recurrence runs in complex64 whatever ``dtype`` is,
    while the projections ``B x``, ``C h`` and ``D x`` run in ``dtype``.

    Args:
      features: input and output width ``H``.
      state_size: number of complex states ``N``.
      r_min: smallest initial ``|λ|``, in ``[0, r_max]``.
      r_max: largest initial ``|λ|``, in ``[r_min, 1)``.
      max_phase: initial phases are drawn from ``(0, max_phase]``; positive.
      method: ``linear_scan`` method (``"auto"``, ``"sequential"``,
        ``"associative"``, ``"chunked"``).
      dtype: compute dtype of the projections and of the output.
      param_dtype: parameter dtype (float32).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Raises:
      ValueError: a hyperparameter outside its range.

    Example:
      >>> from flax import nnx
      >>> layer = LRU(8, state_size=16, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)
    """

    def __init__(
        self,
        features: int,
        *,
        state_size: int = 256,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        method: str = "auto",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        checks.positive_int("LRU", "features", features)
        checks.positive_int("LRU", "state_size", state_size)
        if not 0.0 <= r_min <= r_max < 1.0:
            raise ValueError(
                f"LRU: need 0 <= r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}."
            )
        if not max_phase > 0.0:
            raise ValueError(f"LRU: max_phase must be positive, got {max_phase}.")
        self.features = features
        self.state_size = state_size
        self.method = methods.parse(method).value
        self.dtype = dtype
        self.param_dtype = param_dtype

        init = _initial_params(
            rngs.params(), state_size, features, r_min, r_max, max_phase
        )
        param = lambda name: nnx.Param(init[name].astype(param_dtype))
        self.nu_log = param("nu_log")
        self.theta_log = param("theta_log")
        self.gamma_log = param("gamma_log")
        self.B_re, self.B_im = param("B_re"), param("B_im")
        self.C_re, self.C_im = param("C_re"), param("C_im")
        self.D = param("D")

    # --- pieces ---------------------------------------------------------------------

    def eigenvalues(self) -> jax.Array:
        """The diagonal ``λ`` (complex64, ``[state_size]``)."""
        modulus = jnp.exp(-jnp.exp(self.nu_log[...].astype(jnp.float32)))
        phase = jnp.exp(self.theta_log[...].astype(jnp.float32))
        return jax.lax.complex(modulus * jnp.cos(phase), modulus * jnp.sin(phase))

    def _inputs(self, x: jax.Array) -> jax.Array:
        """``γ ⊙ (B x)`` as complex64 (projections in ``dtype``)."""
        b_re = x @ self.B_re[...].astype(self.dtype).T
        b_im = x @ self.B_im[...].astype(self.dtype).T
        gamma = jnp.exp(self.gamma_log[...].astype(jnp.float32))
        return jax.lax.complex(
            b_re.astype(jnp.float32) * gamma, b_im.astype(jnp.float32) * gamma
        )

    def _outputs(self, h: jax.Array, x: jax.Array) -> jax.Array:
        """``Re(C h) + D ⊙ x`` in ``dtype``."""
        c_re = self.C_re[...].astype(self.dtype)
        c_im = self.C_im[...].astype(self.dtype)
        y = h.real.astype(self.dtype) @ c_re.T - h.imag.astype(self.dtype) @ c_im.T
        return y + self.D[...].astype(self.dtype) * x

    # --- protocol -------------------------------------------------------------------

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """Parallel form over a whole sequence.

        Args:
          x: ``[batch, time, features]``.
          segment_ids: optional ``[batch, time]`` ints; the state restarts from zero
            where a new segment starts.

        Returns:
          ``[batch, time, features]`` in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` of the wrong shape.
        """
        x = checks.sequence("LRU", x, self.features).astype(self.dtype)
        starts = checks.segment_starts("LRU", segment_ids, x)
        b = self._inputs(x)
        a = self.eigenvalues()[None, None, :]
        if starts is not None:
            a = segments.reset_transitions(jnp.broadcast_to(a, b.shape), starts)
        h = linear_scan(a, b, axis=1, method=self.method)
        return self._outputs(h, x)

    def init_state(self, batch_size: int) -> jax.Array:
        """Zero state, complex64 ``[batch_size, state_size]``."""
        checks.positive_int("LRU", "batch_size", batch_size)
        return jnp.zeros((batch_size, self.state_size), jnp.complex64)

    def step(self, state: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One recurrent step: ``h ← λ h + γ (B x_t)``, ``y = Re(C h) + D x_t``.

        Args:
          state: ``[batch, state_size]`` complex64 from ``init_state`` or ``step``.
          x_t: ``[batch, features]``.

        Returns:
          ``(state, y_t)`` with ``y_t: [batch, features]`` in ``dtype``.

        Raises:
          ValueError: ``x_t`` or ``state`` of the wrong shape.
        """
        x_t = checks.step_input("LRU", x_t, self.features).astype(self.dtype)
        checks.state_shape("LRU", "state", state, (x_t.shape[0], self.state_size))
        h = self.eigenvalues() * state + self._inputs(x_t)
        return h, self._outputs(h, x_t)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _initial_params(
    key: jax.Array, n: int, h: int, r_min: float, r_max: float, max_phase: float
) -> dict[str, jax.Array]:
    """Ring initialisation of λ, γ_log from |λ|, and Gaussian B, C, D (float32)."""
    k_nu, k_theta, kb1, kb2, kc1, kc2, k_d = jax.random.split(key, 7)
    # u in (0, 1] so that log(ν) and log(θ) are finite.
    u1 = 1.0 - jax.random.uniform(k_nu, (n,))
    u2 = 1.0 - jax.random.uniform(k_theta, (n,))
    nu = -0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2)
    theta = max_phase * u2
    return {
        "nu_log": jnp.log(nu),
        "theta_log": jnp.log(theta),
        "gamma_log": 0.5 * jnp.log(-jnp.expm1(-2.0 * nu)),  # log sqrt(1 - |λ|²)
        "B_re": jax.random.normal(kb1, (n, h)) * math.sqrt(1.0 / (2 * h)),
        "B_im": jax.random.normal(kb2, (n, h)) * math.sqrt(1.0 / (2 * h)),
        "C_re": jax.random.normal(kc1, (h, n)) * math.sqrt(1.0 / n),
        "C_im": jax.random.normal(kc2, (h, n)) * math.sqrt(1.0 / n),
        "D": jax.random.normal(k_d, (h,)),
    }
