"""HiPPO-LegS and HiPPO-N against a direct NumPy construction from the definition."""

import numpy as np
import pytest

from seqjax.nn import hippo


def legs_by_definition(n):
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            if i > k:
                a[i, k] = -np.sqrt(2 * i + 1) * np.sqrt(2 * k + 1)
            elif i == k:
                a[i, k] = -(i + 1)
    return a


@pytest.mark.parametrize("n", [1, 2, 5, 8, 16])
def test_legs_matrix_and_input(n):
    np.testing.assert_allclose(hippo.legs_matrix(n), legs_by_definition(n), 1e-12)
    np.testing.assert_allclose(hippo.legs_input(n), np.sqrt(2 * np.arange(n) + 1))


@pytest.mark.parametrize("n", [2, 7, 8, 32])
def test_normal_part_and_spectrum(n):
    s = hippo.normal_legs_matrix(n)
    p = np.sqrt(np.arange(n) + 0.5)
    np.testing.assert_allclose(s, legs_by_definition(n) + np.outer(p, p), 1e-12)
    # S + I/2 is skew-symmetric, so S is normal.
    np.testing.assert_allclose(s + s.T, -np.eye(n), atol=1e-12)
    np.testing.assert_allclose(s @ s.T, s.T @ s, atol=1e-9)

    lam, v = hippo.diagonalize_normal_legs(n)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-12)
    np.testing.assert_allclose(v.conj().T @ v, np.eye(n), atol=1e-10)
    np.testing.assert_allclose(v @ np.diag(lam) @ v.conj().T, s, atol=1e-9)
    # Same spectrum as a general eigen-solver on S itself.
    direct = np.linalg.eigvals(s)
    np.testing.assert_allclose(direct.real, -0.5, atol=1e-8)
    np.testing.assert_allclose(np.sort(direct.imag), lam.imag, atol=1e-8)
    # Ascending imaginary parts; conjugate pairs mirror each other.
    assert np.all(np.diff(lam.imag) >= 0)
    np.testing.assert_allclose(lam, np.conj(lam[::-1]), atol=1e-9)
    if n % 2 == 0:
        assert np.all(lam.imag[: n // 2] < 0)


def test_legs_is_not_normal():
    """The rank-one correction is what makes the matrix diagonalisable stably."""
    a = hippo.legs_matrix(8)
    assert not np.allclose(a @ a.T, a.T @ a)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_size(bad):
    with pytest.raises(ValueError, match="state size"):
        hippo.legs_matrix(bad)
