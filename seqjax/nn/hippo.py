"""HiPPO-LegS matrices and the diagonalisable "HiPPO-N" part used to initialise SSMs.

The HiPPO-LegS state matrix (continuous time, ``dx/dt = A x + B u``) is

.. math::
   A_{nk} = -\\begin{cases} \\sqrt{(2n+1)(2k+1)} & n > k \\\\ n + 1 & n = k \\\\
   0 & n < k \\end{cases}, \\qquad B_n = \\sqrt{2n+1}.

It is not diagonalisable in a numerically useful way, but adding a rank-one term
gives a *normal* matrix (HiPPO-N):

.. math:: S = A + p p^\\top, \\quad p_n = \\sqrt{n + 1/2}, \\qquad
   S = -\\tfrac12 I + K, \\quad K^\\top = -K,

so ``S = V Λ V^*`` with ``V`` unitary and every eigenvalue ``Re λ = -1/2``. S5
initialises its diagonal state matrix with ``Λ`` (and maps ``B``, ``C`` through ``V``).

Computed in NumPy float64 once at construction time (these are initialisations, not
traced functions).

References:
  Gu, Dao, Ermon, Rudra, Ré, "HiPPO: Recurrent Memory with Optimal Polynomial
  Projections" (2020); Gu, Goel, Ré, "Efficiently Modeling Long Sequences with
  Structured State Spaces" (2022); Smith, Warrington, Linderman, "Simplified State
  Space Layers for Sequence Modeling" (2023).
"""

from __future__ import annotations

import numpy as np


def _check_size(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"state size n must be a positive int, got {n!r}.")
    return int(n)


def legs_matrix(n: int) -> np.ndarray:
    """Returns the ``[n, n]`` HiPPO-LegS state matrix ``A`` (float64).

    .. math:: A_{nk} = -\\sqrt{(2n+1)(2k+1)}\\,[n>k] - (n+1)\\,[n=k]

    Args:
      n: state size.

    Returns:
      ``A`` as a float64 array of shape ``[n, n]`` (lower triangular, diagonal
      ``-(1, 2, ..., n)``).

    Raises:
      ValueError: ``n`` is not a positive int.

    Example:
      >>> legs_matrix(2).round(3).tolist()
      [[-1.0, 0.0], [-1.732, -2.0]]
    """
    n = _check_size(n)
    q = np.sqrt(2.0 * np.arange(n) + 1.0)
    return np.diag(np.arange(n, dtype=np.float64)) - np.tril(np.outer(q, q))


def legs_input(n: int) -> np.ndarray:
    """Returns the HiPPO-LegS input vector ``B_n = sqrt(2n + 1)`` (float64, ``[n]``).

    Raises:
      ValueError: ``n`` is not a positive int.
    """
    return np.sqrt(2.0 * np.arange(_check_size(n)) + 1.0)


def normal_legs_matrix(n: int) -> np.ndarray:
    """Returns HiPPO-N, the normal part ``S = A + p p^T`` of HiPPO-LegS (float64).

    .. math:: S = A + p p^\\top, \\quad p_n = \\sqrt{n + 1/2}

    ``S + I/2`` is skew-symmetric, so ``S`` is normal with ``Re λ = -1/2``.

    Raises:
      ValueError: ``n`` is not a positive int.
    """
    n = _check_size(n)
    p = np.sqrt(np.arange(n) + 0.5)
    return legs_matrix(n) + np.outer(p, p)


def diagonalize_normal_legs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition ``S = V diag(Λ) V^*`` of HiPPO-N.

    ``Λ = -1/2 + i ω`` where ``ω`` are the eigenvalues of the Hermitian matrix
    ``-i (S + I/2)``, in ascending order; so for even ``n`` the first ``n/2``
    eigenvalues have ``Im λ < 0`` and the last ``n/2`` are their conjugates.

    Args:
      n: state size.

    Returns:
      ``(lam, v)``: ``lam`` complex128 ``[n]``, ``v`` complex128 unitary ``[n, n]``
      with eigenvectors as columns.

    Raises:
      ValueError: ``n`` is not a positive int.

    Example:
      >>> lam, v = diagonalize_normal_legs(4)
      >>> bool(np.allclose(lam.real, -0.5))
      True
    """
    s = normal_legs_matrix(n)
    skew = s + 0.5 * np.eye(s.shape[0])
    omega, v = np.linalg.eigh(-1j * skew)
    return -0.5 + 1j * omega, v
