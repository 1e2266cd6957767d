"""The algebra of linear transitions used by every scan back-end.

A linear recurrence step is the affine map ``h -> a ∘ h + b`` where ``a ∘ h`` is

* elementwise (``a * h``) when ``a`` has the rank of ``h`` (diagonal transition), or
* a matrix-vector product (``a @ h`` on the last axis) when ``a`` has one more trailing
  axis than ``h`` (block-diagonal or dense transition).

Affine maps compose associatively:

.. math:: (a_2, b_2) \\bullet (a_1, b_1) = (a_2 a_1,\\; a_2 b_1 + b_2),

the operator behind ``jax.lax.associative_scan``, the chunk summaries of the chunked
scan and, later, the cross-device combine of sequence-parallel scans. These helpers are
pure functions on arrays with any leading batch axes; ``matrix`` is a static flag.
"""

from __future__ import annotations

import jax.numpy as jnp


def apply(a: jnp.ndarray, h: jnp.ndarray, matrix: bool) -> jnp.ndarray:
    """Returns ``a ∘ h``: ``a * h`` (elementwise) or ``a @ h`` on the last axis.

    Args:
      a: transition, ``[..., d]`` (elementwise) or ``[..., d, d]`` (matrix).
      h: state, ``[..., d]``.
      matrix: whether ``a`` is a matrix acting on the last axis of ``h``.
    """
    if matrix:
        return jnp.einsum("...ij,...j->...i", a, h)
    return a * h


def compose(a2: jnp.ndarray, a1: jnp.ndarray, matrix: bool) -> jnp.ndarray:
    """Returns the transition ``a1`` then ``a2``: ``a2 * a1`` or ``a2 @ a1``."""
    if matrix:
        return jnp.einsum("...ij,...jk->...ik", a2, a1)
    return a2 * a1


def transpose(a: jnp.ndarray, matrix: bool) -> jnp.ndarray:
    """Returns ``aᵀ``, the transition of the adjoint recurrence (``a`` if elementwise).

    This is the plain transpose, not the conjugate transpose: JAX's cotangents pair
    with primals bilinearly, so the VJP of ``h -> a @ h`` is ``g -> aᵀ @ g`` for real
    and complex ``a`` alike.
    """
    return jnp.swapaxes(a, -1, -2) if matrix else a


def identity_like(a: jnp.ndarray, matrix: bool) -> jnp.ndarray:
    """Returns the identity transition with the shape and dtype of ``a``."""
    if matrix:
        eye = jnp.eye(a.shape[-1], dtype=a.dtype)
        return jnp.broadcast_to(eye, a.shape)
    return jnp.ones_like(a)


def combine(
    first: tuple[jnp.ndarray, jnp.ndarray],
    second: tuple[jnp.ndarray, jnp.ndarray],
    matrix: bool,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Composes two affine steps: ``second ∘ first``.

    .. math:: (a_2, b_2) \\bullet (a_1, b_1) = (a_2 a_1,\\; a_2 b_1 + b_2)

    Args:
      first: ``(a1, b1)``, the earlier step (in scan order).
      second: ``(a2, b2)``, the later step.
      matrix: whether transitions are matrices on the last state axis.

    Returns:
      ``(a, b)`` such that applying it equals applying ``first`` then ``second``.
    """
    a1, b1 = first
    a2, b2 = second
    return compose(a2, a1, matrix), apply(a2, b1, matrix) + b2
