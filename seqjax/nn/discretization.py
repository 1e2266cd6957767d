"""Discretising a diagonal continuous-time SSM: zero-order hold and bilinear.

For ``dx/dt = Λ x + B u`` with diagonal ``Λ`` and step ``Δ``, the discrete recurrence
is ``x_k = Λ̄ x_{k-1} + B̄ u_k`` where ``B̄ = diag(s) B`` and

.. math::
   \\text{ZOH:}\\; \\bar\\Lambda = e^{\\Lambda\\Delta},\\;
   s = \\Lambda^{-1}(\\bar\\Lambda - 1); \\qquad
   \\text{bilinear:}\\; \\bar\\Lambda = \\frac{1 + \\Delta\\Lambda/2}
   {1 - \\Delta\\Lambda/2},\\; s = \\frac{\\Delta}{1 - \\Delta\\Lambda/2}.

Shared by ``S4D`` and ``S5``. The functions are elementwise, so ``Λ`` and ``Δ`` may
have any broadcastable shapes (per state, per channel, ...).

References:
  Gu, Gupta, Goel, Ré, "On the Parameterization and Initialization of Diagonal State
  Space Models" (2022); Smith, Warrington, Linderman, "Simplified State Space Layers
  for Sequence Modeling" (2023).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METHODS = ("zoh", "bilinear")


def zoh(lam: jax.Array, delta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Zero-order hold: ``(Λ̄, s)`` with ``Λ̄ = exp(ΛΔ)``, ``s = (Λ̄ - 1) / Λ``.

    Args:
      lam: complex (or real) diagonal ``Λ``, any shape; entries must be nonzero.
      delta: positive step sizes, broadcastable to ``lam``.

    Returns:
      ``(lam_bar, s)`` of the broadcast shape; ``B̄ = s[..., None] * B``.

    Example:
      >>> lam_bar, s = zoh(jnp.array([-1.0 + 0j]), jnp.array([0.1]))
      >>> bool(jnp.allclose(lam_bar, jnp.exp(-0.1)))
      True
    """
    dlam = lam * delta
    lam_bar = jnp.exp(dlam)
    # (exp(ΛΔ) - 1) / Λ written as Δ * expm1(ΛΔ) / (ΛΔ) would need complex expm1;
    # the direct form is accurate for the |ΛΔ| of SSM initialisations (>= 1e-4).
    return lam_bar, (lam_bar - 1.0) / lam


def bilinear(lam: jax.Array, delta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Bilinear (Tustin): ``Λ̄ = (1 + ΔΛ/2) / (1 - ΔΛ/2)``, ``s = Δ / (1 - ΔΛ/2)``.

    Args:
      lam: complex (or real) diagonal ``Λ``, any shape.
      delta: positive step sizes, broadcastable to ``lam``.

    Returns:
      ``(lam_bar, s)`` of the broadcast shape; ``B̄ = s[..., None] * B``.
    """
    half = 0.5 * delta * lam
    inv = 1.0 / (1.0 - half)
    return (1.0 + half) * inv, delta * inv


def discretize(
    method: str, lam: jax.Array, delta: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Dispatches to ``zoh`` or ``bilinear`` by name.

    Raises:
      ValueError: ``method`` is not ``"zoh"`` or ``"bilinear"``.
    """
    if method == "zoh":
        return zoh(lam, delta)
    if method == "bilinear":
        return bilinear(lam, delta)
    raise ValueError(f"discretization={method!r}; expected one of {METHODS}.")


def check_method(method: str, owner: str) -> str:
    """Validates a discretisation name at construction time.

    Raises:
      ValueError: ``method`` is not one of ``METHODS``.
    """
    if method not in METHODS:
        raise ValueError(
            f"{owner}: discretization={method!r}; expected one of {METHODS}."
        )
    return method
