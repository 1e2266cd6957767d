"""S5: one multi-input, multi-output diagonal SSM per layer, HiPPO-N initialised.

.. math::
   x_k = \\bar\\Lambda \\odot x_{k-1} + \\bar B u_k, \\qquad
   y_k = 2\\,\\mathrm{Re}(\\tilde C x_k) + D \\odot u_k, \\qquad
   \\bar\\Lambda = e^{\\Lambda\\Delta},\\;
   \\bar B = \\Lambda^{-1}(\\bar\\Lambda - I)\\tilde B

Reference: Smith, Warrington, Linderman, "Simplified State Space Layers for Sequence
Modeling" (ICLR 2023).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.nn import discretization as ssm_discretization
from seqjax.nn import hippo, segments
from seqjax.nn import sequence_checks as checks
from seqjax.scan import linear_scan, methods

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


class S5(nnx.Module):
    """The S5 layer of Smith et al. (2023) as a sequence mixer.

    .. math::
       x_k = \\bar\\Lambda \\odot x_{k-1} + \\bar B u_k, \\quad
       y_k = 2\\,\\mathrm{Re}(\\tilde C x_k) + D \\odot u_k

    with ``Λ = Λ_re + i Λ_im`` (``P`` complex states) and a learnable step per state
    ``Δ = exp(log_step)``, discretised by ZOH (``Λ̄ = exp(ΛΔ)``,
    ``B̄ = Λ⁻¹(Λ̄ - 1) B̃``) or bilinear (``Λ̄ = (1 + ΔΛ/2)/(1 - ΔΛ/2)``,
    ``B̄ = Δ/(1 - ΔΛ/2) B̃``).

    Initialisation (paper §4 and its reference code):

    * **HiPPO-N with J blocks.** ``state_size`` ``P`` (counted *before* conjugate
      symmetry halves it) is split into ``blocks`` blocks of ``P/J``; each block gets
      the eigenvalues ``Λ = -1/2 + iω`` of the normal part of HiPPO-LegS of size
      ``P/J`` (``seqjax.nn.hippo``), so ``V`` is block-diagonal.
    * **Conjugate symmetry** (``conj_sym=True``): only the ``P/(2J)`` eigenvalues with
      ``Im λ < 0`` of each block are kept, and the output is ``2 Re(C̃ x)``; otherwise
      all ``P`` are kept and the output is ``Re(C̃ x)``.
    * ``B̃ = V⁻¹ B`` with ``B`` ``[P, H]`` truncated normal of variance ``1/P`` (JAX's
      LeCun normal applied to a ``(P, H)`` array, as in the reference code).
    * ``C̃ = C V`` with complex ``C`` ``[H, P]`` whose real and imaginary parts are
      truncated normal of variance ``1/P`` per row (``"trunc_standard_normal"``, the
      default), or of variance ``1/(HP)`` (``"lecun_normal"``); or ``C̃`` drawn
      directly as ``CN(0, 1)`` (``"complex_normal"``, no ``V``).
    * ``D ~ N(0, 1)``; ``log Δ ~ U(log dt_min, log dt_max)`` per state.
    * ``clip_eigs=True`` uses ``min(Re Λ, -1e-4)`` so the system stays stable.

    **Bidirectional** (``bidirectional=True``): a second scan runs backwards in time
    with the same ``Λ̄``, ``B̄`` and its own ``C̃₂``:
    ``y_k = 2 Re(C̃ x_k + C̃₂ x'_k) + D u_k`` with ``x'_k = Λ̄ x'_{k+1} + B̄ u_k``.
    Such a layer is not causal and has no ``step``.

    The parallel form is ``seqjax.scan.linear_scan`` with a complex, time-invariant
    elementwise transition; states are complex64 whatever ``dtype`` is.

    Args:
      features: input and output width ``H``.
      state_size: ``P`` before conjugate-symmetry halving (reference default 256).
      blocks: ``J``, the number of HiPPO-N blocks (reference default 8).
      conj_sym: keep half of each conjugate pair and output ``2 Re``.
      discretization: ``"zoh"`` (default) or ``"bilinear"``.
      dt_min: smallest initial step.
      dt_max: largest initial step.
      c_init: ``"trunc_standard_normal"``, ``"lecun_normal"`` or
        ``"complex_normal"``.
      clip_eigs: clamp ``Re Λ <= -1e-4``.
      bidirectional: add the reversed scan (non-causal).
      method: ``linear_scan`` method.
      dtype: compute dtype of the projections and of the output.
      param_dtype: parameter dtype (float32).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Raises:
      ValueError: a hyperparameter outside its range (e.g. ``state_size`` not a
        multiple of ``blocks``, or an odd block size with ``conj_sym``).

    Example:
      >>> from flax import nnx
      >>> layer = S5(8, state_size=16, blocks=2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)
    """

    def __init__(
        self,
        features: int,
        *,
        state_size: int = 256,
        blocks: int = 8,
        conj_sym: bool = True,
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        c_init: str = "trunc_standard_normal",
        clip_eigs: bool = False,
        bidirectional: bool = False,
        method: str = "auto",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        checks.positive_int("S5", "features", features)
        checks.positive_int("S5", "state_size", state_size)
        checks.positive_int("S5", "blocks", blocks)
        if state_size % blocks:
            raise ValueError(
                f"S5: state_size={state_size} must be a multiple of blocks={blocks}."
            )
        if conj_sym and (state_size // blocks) % 2:
            raise ValueError(
                f"S5: with conj_sym the block size state_size/blocks must be even, "
                f"got {state_size}/{blocks} = {state_size // blocks}."
            )
        if c_init not in C_INITS:
            raise ValueError(f"S5: c_init={c_init!r}; expected one of {C_INITS}.")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(
                f"S5: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}."
            )
        self.features = features
        self.state_size = state_size
        self.blocks = blocks
        self.conj_sym = conj_sym
        self.discretization = ssm_discretization.check_method(discretization, "S5")
        self.clip_eigs = clip_eigs
        self.bidirectional = bidirectional
        self.method = methods.parse(method).value
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.n_states = state_size // 2 if conj_sym else state_size

        lam, v = _hippo_n_blocks(state_size // blocks, blocks, conj_sym)
        draws = _draws(rngs.params(), features, state_size, dt_min, dt_max)
        n = self.n_states
        b_tilde = _init_b(draws["B"], v, blocks)
        c_tilde = _init_c(draws["C"], draws["C_complex"][..., :n], v, blocks, c_init)
        param = lambda value: nnx.Param(jnp.asarray(value).astype(param_dtype))
        self.lambda_re = param(lam.real)
        self.lambda_im = param(lam.imag)
        self.B_re, self.B_im = param(b_tilde.real), param(b_tilde.imag)
        self.C_re, self.C_im = param(c_tilde.real), param(c_tilde.imag)
        if bidirectional:
            c2 = _init_c(draws["C2"], draws["C2_complex"][..., :n], v, blocks, c_init)
            self.C2_re, self.C2_im = param(c2.real), param(c2.imag)
        self.D = param(draws["D"])
        self.log_step = param(draws["log_step"][:n])

    # --- pieces ---------------------------------------------------------------------

    def continuous(self) -> jax.Array:
        """``Λ`` (complex64, ``[n_states]``), with ``clip_eigs`` applied."""
        re = self.lambda_re[...].astype(jnp.float32)
        if self.clip_eigs:
            re = jnp.minimum(re, -1e-4)
        return jax.lax.complex(re, self.lambda_im[...].astype(jnp.float32))

    def discretized(self) -> tuple[jax.Array, jax.Array]:
        """``(Λ̄ [n_states], B̄ [n_states, features])``, complex64."""
        step = jnp.exp(self.log_step[...].astype(jnp.float32))
        lam_bar, scale = ssm_discretization.discretize(
            self.discretization, self.continuous(), step
        )
        b = jax.lax.complex(
            self.B_re[...].astype(jnp.float32), self.B_im[...].astype(jnp.float32)
        )
        return lam_bar, scale[:, None] * b

    def _inputs(self, u: jax.Array, b_bar: jax.Array) -> jax.Array:
        """``B̄ u`` (complex64), the products in ``dtype``."""
        b_re = b_bar.real.astype(self.dtype)
        b_im = b_bar.imag.astype(self.dtype)
        return jax.lax.complex(
            (u @ b_re.T).astype(jnp.float32), (u @ b_im.T).astype(jnp.float32)
        )

    def _readout(self, x: jax.Array, c_re: nnx.Param, c_im: nnx.Param) -> jax.Array:
        """``Re(C̃ x)`` in ``dtype``."""
        c_re = c_re[...].astype(self.dtype)
        c_im = c_im[...].astype(self.dtype)
        return x.real.astype(self.dtype) @ c_re.T - x.imag.astype(self.dtype) @ c_im.T

    # --- protocol -------------------------------------------------------------------

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """Parallel form (both directions when ``bidirectional``).

        Args:
          x: ``[batch, time, features]``.
          segment_ids: optional ``[batch, time]`` ints; the state restarts from zero
            where a segment starts (and, for the backward scan, where one ends).

        Returns:
          ``[batch, time, features]`` in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` of the wrong shape.
        """
        u = checks.sequence("S5", x, self.features).astype(self.dtype)
        starts = checks.segment_starts("S5", segment_ids, u)
        lam_bar, b_bar = self.discretized()
        bu = self._inputs(u, b_bar)
        a = jnp.broadcast_to(lam_bar, (1, 1, self.n_states))
        if starts is not None:
            a = segments.reset_transitions(jnp.broadcast_to(a, bu.shape), starts)
        y = self._readout(
            linear_scan(a, bu, axis=1, method=self.method), self.C_re, self.C_im
        )
        if self.bidirectional:
            a2 = jnp.broadcast_to(lam_bar, (1, 1, self.n_states))
            if starts is not None:
                # Backwards, the state restarts after a segment's last position.
                ends = jnp.concatenate(
                    [starts[:, 1:], jnp.ones_like(starts[:, :1])], axis=1
                )
                a2 = segments.reset_transitions(jnp.broadcast_to(a2, bu.shape), ends)
            x2 = linear_scan(a2, bu, axis=1, reverse=True, method=self.method)
            y = y + self._readout(x2, self.C2_re, self.C2_im)
        if self.conj_sym:
            y = 2 * y
        return y + self.D[...].astype(self.dtype) * u

    def init_state(self, batch_size: int) -> jax.Array:
        """Zero state, complex64 ``[batch_size, n_states]``.

        Raises:
          ValueError: the layer is bidirectional (it has no recurrent form).
        """
        self._check_causal()
        checks.positive_int("S5", "batch_size", batch_size)
        return jnp.zeros((batch_size, self.n_states), jnp.complex64)

    def step(self, state: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: ``x ← Λ̄ x + B̄ u_t``, ``y = 2 Re(C̃ x) + D u_t``.

        Args:
          state: ``[batch, n_states]`` complex64.
          x_t: ``[batch, features]``.

        Returns:
          ``(state, y_t)`` with ``y_t: [batch, features]`` in ``dtype``.

        Raises:
          ValueError: wrong shapes, or the layer is bidirectional.
        """
        self._check_causal()
        u = checks.step_input("S5", x_t, self.features).astype(self.dtype)
        checks.state_shape("S5", "state", state, (u.shape[0], self.n_states))
        lam_bar, b_bar = self.discretized()
        h = lam_bar * state + self._inputs(u, b_bar)
        y = self._readout(h, self.C_re, self.C_im)
        if self.conj_sym:
            y = 2 * y
        return h, y + self.D[...].astype(self.dtype) * u

    def _check_causal(self) -> None:
        if self.bidirectional:
            raise ValueError(
                "S5(bidirectional=True) reads the future and has no step-by-step "
                "form; build it with bidirectional=False for recurrent inference."
            )


# --- initialisation (NumPy, once at construction) ------------------------------------


@functools.lru_cache(maxsize=32)
def _hippo_n_blocks(
    block: int, blocks: int, conj_sym: bool
) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-N eigenvalues for ``blocks`` blocks, and one block's eigenvectors.

    Returns ``(lam [blocks * m], v [block, m])`` with ``m = block/2`` (the
    ``Im λ < 0`` half) under conjugate symmetry, else ``m = block``.
    """
    lam, v = hippo.diagonalize_normal_legs(block)
    if conj_sym:
        lam, v = lam[: block // 2], v[:, : block // 2]
    lam = np.tile(lam, blocks)
    lam.setflags(write=False)  # shared by the cache
    v.setflags(write=False)
    return lam, v


_TRUNCATED_STD = 0.87962566103423978  # σ of N(0, 1) truncated to ±2


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draws(
    key: jax.Array, h: int, p: int, dt_min: float, dt_max: float
) -> dict[str, jax.Array]:
    """Every random draw of the initialisation, in one compiled call.

    ``B`` ``[p, h]``, ``C``, ``C2`` ``[2, h, p]``: standard normals truncated to ±2
    (unit variance after dividing by ``_TRUNCATED_STD``); ``C_complex``,
    ``C2_complex`` ``[2, h, p]``: standard normal real and imaginary parts; ``D``;
    ``log_step`` ``[p]`` log-uniform in [dt_min, dt_max]. (One draw of each kind,
    split afterwards: compiling the samplers dominates construction time.)
    """
    k_trunc, k_normal, k_step = jax.random.split(key, 3)
    trunc = jax.random.truncated_normal(k_trunc, -2.0, 2.0, (5, h, p))
    trunc = trunc / _TRUNCATED_STD
    normal = jax.random.normal(k_normal, (4 * h * p + h,))
    normal, d = normal[:-h].reshape(2, 2, h, p), normal[-h:]
    log_step = jax.random.uniform(
        k_step, (p,), minval=jnp.log(dt_min), maxval=jnp.log(dt_max)
    )
    return {
        "B": trunc[0].T,
        "C": trunc[1:3],
        "C2": trunc[3:5],
        "C_complex": normal[0],
        "C2_complex": normal[1],
        "D": d,
        "log_step": log_step,
    }


def _init_b(unit: jax.Array, v: np.ndarray, blocks: int) -> jax.Array:
    """``B̃ = V⁻¹ B`` with block-diagonal ``V⁻¹`` (``V^*`` per block).

    ``B = unit / sqrt(P)`` is ``[P, features]``: JAX's LeCun normal on a ``(P, H)``
    array, truncated normal of variance ``1/P``. Returns complex
    ``[blocks * m, features]``.
    """
    block, m = v.shape
    p, features = unit.shape
    b = unit.reshape(blocks, block, features) / math.sqrt(p)
    v_inv = jnp.asarray(v.conj(), jnp.complex64)
    return jnp.einsum("km,jkh->jmh", v_inv, b).reshape(blocks * m, features)


def _init_c(
    unit: jax.Array, normal: jax.Array, v: np.ndarray, blocks: int, c_init: str
) -> jax.Array:
    """``C̃ = C V`` with block-diagonal ``V`` (or ``CN(0, 1)`` for ``complex_normal``).

    ``unit``: ``[2, H, P]`` unit-variance truncated normals (real, imaginary parts of
    ``C``); ``normal``: ``[2, H, n_states]`` standard normals. Returns complex
    ``[features, blocks * m]``.
    """
    block, m = v.shape
    _, features, p = unit.shape
    if c_init == "complex_normal":
        return jax.lax.complex(normal[0], normal[1]) * math.sqrt(0.5)
    if c_init == "trunc_standard_normal":  # LeCun normal row by row: fan_in = P
        scale = 1 / math.sqrt(p)
    else:  # "lecun_normal" on an (H, P, 2) array: fan_in = P * H
        scale = 1 / math.sqrt(p * features)
    c = jax.lax.complex(unit[0], unit[1]).reshape(features, blocks, block) * scale
    v = jnp.asarray(v, jnp.complex64)
    return jnp.einsum("hjk,km->hjm", c, v).reshape(features, blocks * m)
