"""The Levenberg–Marquardt (trust-region) step of ``newton_scan``, by Kalman smoothing.

Newton's step for :math:`h_t = f(h_{t-1}, x_t)` zeroes the linearised residual,
:math:`\\delta_t = J_t \\delta_{t-1} + r_t`. Far from the solution that step can be
huge (products of Jacobians with norm above 1 grow exponentially over time) and
overshoot. The Levenberg–Marquardt step instead minimises

.. math:: \\sum_t \\|\\delta_t - J_t \\delta_{t-1} - r_t\\|^2
   + \\lambda \\sum_t \\|\\delta_t\\|^2, \\qquad \\delta_{-1} = 0,

which is the Newton step when :math:`\\lambda = 0` and, when :math:`\\lambda` is
large, a short gradient-descent step on :math:`\\tfrac12 \\sum_t \\|r_t\\|^2`:
:math:`\\delta_t \\approx (r_t - J_{t+1}^\\top r_{t+1}) / \\lambda`. The objective
is the negative log-posterior of the linear-Gaussian state-space model

.. math:: \\delta_t = J_t \\delta_{t-1} + r_t + w_t,\\; w_t \\sim N(0, I); \\qquad
   0 = \\delta_t + v_t,\\; v_t \\sim N(0, \\lambda^{-1} I),

so the minimiser is the Kalman smoother's mean (ELK). The filter runs as one
associative scan over the elements :math:`(A, b, C, \\eta, Z)` of Särkkä and
García-Fernández (with :math:`c = 1/(1+\\lambda)`, :math:`\\kappa = \\lambda c`):

.. math:: A_t = c J_t,\\; b_t = c\\, r_t,\\; C_t = c I,\\;
   \\eta_t = -\\kappa J_t^\\top r_t,\\; Z_t = \\kappa J_t^\\top J_t \\quad (J_0 := 0),

whose prefix gives the filtered means :math:`m_t = b` and covariances
:math:`P_t = C`. The Rauch–Tung–Striebel smoother is then one reverse
``linear_scan``, :math:`s_t = E_t s_{t+1} + m_t - E_t (J_{t+1} m_t + r_{t+1})` with
:math:`E_t = P_t J_{t+1}^\\top (J_{t+1} P_t J_{t+1}^\\top + I)^{-1}`.
Transitions are elementwise (diagonal Jacobians) or matrices on the last axis (block
or dense), as in ``linear_scan``.

References:
  Gonzalez et al., "Towards Scalable and Stable Parallelization of Nonlinear RNNs"
  (ELK, NeurIPS 2024); Särkkä and García-Fernández, "Temporal Parallelization of
  Bayesian Smoothers" (IEEE TAC 2021); Marquardt, "An Algorithm for Least-Squares
  Estimation of Nonlinear Parameters" (1963).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.scan import linear, methods, transitions

apply = transitions.apply
compose = transitions.compose
transpose = transitions.transpose


def trust_region_step(
    jac: jax.typing.ArrayLike,
    r: jax.typing.ArrayLike,
    lam: jax.typing.ArrayLike,
    *,
    axis: int = 0,
    method: str | methods.ScanMethod = "auto",
) -> jax.Array:
    """The step :math:`\\delta` minimising the damped linearised residual.

    .. math:: \\min_\\delta \\sum_t \\|\\delta_t - J_t \\delta_{t-1} - r_t\\|^2
       + \\lambda \\|\\delta_t\\|^2 \\quad (\\delta_{-1} = 0)

    Args:
      jac: Jacobians :math:`J_t`, real, shaped like ``r`` (elementwise) or
        ``r.shape + (k,)`` with ``k = r.shape[-1]`` (matrices on the last axis).
      r: residuals :math:`r_t`, real, with time along ``axis``.
      lam: :math:`\\lambda \\ge 0`, a scalar or an array broadcastable to the axes
        of ``r`` before ``axis`` (one value per sequence). ``0`` gives the Newton
        step :math:`\\delta_t = J_t \\delta_{t-1} + r_t`.
      axis: the time axis of ``r`` and ``jac``.
      method: ``"sequential"`` runs the Kalman filter with ``jax.lax.scan``; every
        other method (``"auto"`` resolved as in ``linear_scan``) runs it as an
        associative scan. The smoother is a ``linear_scan`` with ``method``.

    Returns:
      :math:`\\delta`, shaped like ``r``.

    Raises:
      TypeError: complex or integer inputs.
      ValueError: shapes that do not fit, or ``axis`` out of range.
    """
    method = methods.parse(method)
    jac, r = jnp.asarray(jac), jnp.asarray(r)
    for name, x in (("jac", jac), ("r", r)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"trust_region_step: {name} must be a real floating array, got "
                f"{x.dtype}."
            )
    if r.ndim == 0:
        raise ValueError("trust_region_step: r needs a time axis; got a scalar.")
    matrix = jac.ndim == r.ndim + 1
    want = r.shape + (r.shape[-1],) if matrix else r.shape
    if jac.shape != want:
        raise ValueError(
            f"trust_region_step: jac has shape {jac.shape}; expected {r.shape} "
            f"(elementwise) or {r.shape + (r.shape[-1],)} (matrices) for r of shape "
            f"{r.shape}."
        )
    if not -r.ndim <= axis < r.ndim:
        raise ValueError(
            f"trust_region_step: axis={axis} is out of range for r of rank {r.ndim}."
        )
    axis = axis % r.ndim
    if matrix and axis == r.ndim - 1:
        raise ValueError(
            "trust_region_step: the time axis cannot be the state axis the matrices "
            "act on."
        )
    dtype = jnp.promote_types(jnp.result_type(jac, r), jnp.float32)
    lam = jnp.asarray(lam, dtype)
    if lam.ndim > axis:
        raise ValueError(
            f"trust_region_step: lam of shape {lam.shape} has more axes than the "
            f"{axis} batch axes of r before its time axis."
        )
    # Time first; lam as [1, *batch, 1, ...] against r.
    jac = jnp.moveaxis(jac, axis, 0).astype(dtype)
    r = jnp.moveaxis(r, axis, 0).astype(dtype)
    lam_v = jnp.reshape(
        jnp.broadcast_to(lam, r.shape[1 : axis + 1]),
        (1,) + r.shape[1 : axis + 1] + (1,) * (r.ndim - 1 - axis),
    )
    resolved = methods.resolve(
        method, length=r.shape[0], step_elements=jac[0].size, matrix=matrix
    )
    sequential = resolved is methods.ScanMethod.SEQUENTIAL
    means, covs = _filter(jac, r, lam_v, matrix, sequential)
    step = _smooth(jac, r, means, covs, matrix, method)
    return jnp.moveaxis(step, 0, axis)


def _inverse(a: jnp.ndarray, matrix: bool, spd: bool = False) -> jnp.ndarray:
    """``a^{-1}``: elementwise, or of the matrices on the last two axes.

    1x1 and 2x2 matrices (ParaLSTM's blocks) use the closed form, which fuses with
    the surrounding arithmetic where a LAPACK call would not. ``spd``: ``a`` is
    symmetric positive definite, so a Cholesky solve does (about 2x faster on CPU
    than a general inverse).
    """
    if not matrix or a.shape[-1] == 1:
        return 1.0 / a
    if a.shape[-1] == 2:
        p, q, s, t = a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1]
        adjugate = jnp.stack([jnp.stack([t, -q], -1), jnp.stack([-s, p], -1)], -2)
        return adjugate / (p * t - q * s)[..., None, None]
    if spd:
        factor = jnp.linalg.cholesky(a)
        eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
        return jax.scipy.linalg.cho_solve((factor, True), eye)
    return jnp.linalg.inv(a)


def _identity(like: jnp.ndarray, matrix: bool) -> jnp.ndarray:
    return transitions.identity_like(like, matrix)


def _elements(jac, r, lam_v, matrix):
    """The filter elements ``(A, b, C, eta, Z)`` of every step, time first."""
    c_v = 1.0 / (1.0 + lam_v)
    kappa_v = lam_v * c_v
    c_m, kappa_m = (c_v[..., None], kappa_v[..., None]) if matrix else (c_v, kappa_v)
    jac = jac.at[0].set(0.0)  # delta_{-1} = 0 is known exactly.
    jac_t = transpose(jac, matrix)
    a = c_m * jac
    b = c_v * r
    cov = c_m * _identity(jac, matrix)
    eta = -kappa_v * apply(jac_t, r, matrix)
    z = kappa_m * compose(jac_t, jac, matrix)
    return a, b, cov, eta, z


def _combine(first, second, matrix):
    """Särkkä and García-Fernández's filtering operator: ``first`` then ``second``."""
    a1, b1, c1, e1, z1 = first
    a2, b2, c2, e2, z2 = second
    gain = _inverse(_identity(c1, matrix) + compose(c1, z2, matrix), matrix)
    a2_gain = compose(a2, gain, matrix)
    a = compose(a2_gain, a1, matrix)
    b = apply(a2_gain, b1 + apply(c1, e2, matrix), matrix) + b2
    cov = compose(compose(a2_gain, c1, matrix), transpose(a2, matrix), matrix) + c2
    # (I + Z2 C1)^{-1} = gain^T, since C and Z are symmetric.
    a1t_gain = compose(transpose(a1, matrix), transpose(gain, matrix), matrix)
    eta = apply(a1t_gain, e2 - apply(z2, b1, matrix), matrix) + e1
    z = compose(compose(a1t_gain, z2, matrix), a1, matrix) + z1
    return a, b, cov, eta, z


def _filter(jac, r, lam_v, matrix, sequential):
    """Filtered means ``m_t`` and covariances ``P_t`` (time first)."""
    if sequential:
        return _filter_sequential(jac, r, lam_v, matrix)
    elements = _elements(jac, r, lam_v, matrix)
    prefix = jax.lax.associative_scan(lambda x, y: _combine(x, y, matrix), elements)
    return prefix[1], prefix[2]


def _filter_sequential(jac, r, lam_v, matrix):
    """The Kalman filter one step at a time (``jax.lax.scan``).

    .. math:: P^-_t = J_t P_{t-1} J_t^\\top + I, \\quad
       S_t = (I + \\lambda P^-_t)^{-1}, \\quad
       P_t = S_t P^-_t, \\quad m_t = S_t (J_t m_{t-1} + r_t)
    """
    lam = lam_v[0][..., None] if matrix else lam_v[0]
    eye = _identity(jac[0], matrix)

    def body(carry, inputs):
        mean, cov = carry
        j, r_t = inputs
        predicted = compose(compose(j, cov, matrix), transpose(j, matrix), matrix)
        predicted = predicted + eye
        shrink = _inverse(eye + lam * predicted, matrix, spd=True)
        mean = apply(shrink, apply(j, mean, matrix) + r_t, matrix)
        cov = compose(shrink, predicted, matrix)
        return (mean, cov), (mean, cov)

    start = (jnp.zeros_like(r[0]), jnp.zeros_like(eye))
    _, (means, covs) = jax.lax.scan(body, start, (jac, r))
    return means, covs


def _smooth(jac, r, means, covs, matrix, method):
    """The Rauch–Tung–Striebel means: ``s_t = E_t s_{t+1} + g_t``, ``s_{T-1} = m``."""
    nxt, nxt_t = jac[1:], transpose(jac[1:], matrix)
    predicted_cov = compose(compose(nxt, covs[:-1], matrix), nxt_t, matrix)
    predicted_cov = predicted_cov + _identity(predicted_cov, matrix)
    gain = compose(
        compose(covs[:-1], nxt_t, matrix),
        _inverse(predicted_cov, matrix, spd=True),
        matrix,
    )
    predicted = apply(nxt, means[:-1], matrix) + r[1:]
    offset = means[:-1] - apply(gain, predicted, matrix)
    gain = jnp.concatenate([gain, jnp.zeros_like(jac[:1])])
    offset = jnp.concatenate([offset, means[-1:]])
    return linear.linear_scan(gain, offset, reverse=True, method=method)
