"""``trust_region_step`` against the least-squares problem it solves, built densely."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.scan import linear_scan
from seqjax.scan.trust_region import trust_region_step


def as_matrices(jac, block):
    """Per-step Jacobians ``[T, n, n]`` over the flattened state."""
    jac = np.asarray(jac, np.float64)
    if block is None:  # elementwise: [T, n]
        return np.stack([np.diag(j) for j in jac])
    if block == "dense":  # [T, n, n]
        return jac
    # Blocks: [T, m, k, k] acting on a state [m, k] flattened row by row.
    steps, m, k, _ = jac.shape
    out = np.zeros((steps, m * k, m * k))
    for i in range(m):
        out[:, i * k : (i + 1) * k, i * k : (i + 1) * k] = jac[:, i]
    return out


def least_squares(jac, r, lam, block):
    """``argmin sum_t |d_t - J_t d_{t-1} - r_t|^2 + lam |d_t|^2`` by a dense solve."""
    mats = as_matrices(jac, block)
    steps, n = mats.shape[0], mats.shape[1]
    rv = np.asarray(r, np.float64).reshape(steps, n)
    big = np.eye(steps * n)
    for t in range(1, steps):
        big[t * n : (t + 1) * n, (t - 1) * n : t * n] = -mats[t]
    normal = big.T @ big + lam * np.eye(steps * n)
    return np.linalg.solve(normal, big.T @ rv.reshape(-1)).reshape(np.shape(r))


def problem(key, steps, block, scale=1.3):
    k1, k2 = jax.random.split(jax.random.key(key))
    if block is None:
        shape = (steps, 4)
        jac = scale * jax.random.normal(k1, shape)
    elif block == "dense":
        shape = (steps, 4)
        jac = scale * jax.random.normal(k1, shape + (4,)) / 2
    else:
        shape = (steps, 3, block)
        jac = scale * jax.random.normal(k1, shape + (block,)) / block
    return jac, jax.random.normal(k2, shape)


STRUCTURES = {"diagonal": None, "block2": 2, "block3": 3, "dense": "dense"}


@pytest.mark.parametrize("method", ["sequential", "associative", "chunked"])
@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("steps", [1, 9, 32])
@pytest.mark.parametrize("lam", [0.1, 30.0])
def test_matches_dense_least_squares(structure, method, steps, lam):
    block = STRUCTURES[structure]
    jac, r = problem(steps, steps, block)
    got = trust_region_step(jac, r, lam, method=method)
    want = least_squares(jac, r, lam, block)
    assert got.shape == r.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_zero_lambda_is_the_newton_step(structure):
    block = STRUCTURES[structure]
    jac, r = problem(7, 20, block, scale=0.8)
    with jax.enable_x64(True):
        jac, r = jnp.asarray(jac, jnp.float64), jnp.asarray(r, jnp.float64)
        for method in ("sequential", "associative"):
            got = trust_region_step(jac, r, 0.0, method=method)
            np.testing.assert_allclose(
                got, linear_scan(jac, r, method="sequential"), rtol=1e-9, atol=1e-10
            )


def test_large_lambda_gives_a_short_gradient_step():
    # delta_t ~ (r_t - J_{t+1} r_{t+1}) / lam: gradient descent on |r|^2 / 2.
    jac, r = problem(8, 30, None)
    lam = 1e5
    got = trust_region_step(jac, r, lam)
    gradient = r - jnp.concatenate([jac[1:] * r[1:], jnp.zeros_like(r[:1])])
    np.testing.assert_allclose(got * lam, gradient, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["sequential", "associative"])
def test_batch_axes_with_a_lambda_per_sequence(method):
    # r: [batch=3, T, 2, 4] with time on axis 1; one lambda per sequence.
    k1, k2 = jax.random.split(jax.random.key(9))
    jac = 1.2 * jax.random.normal(k1, (3, 11, 2, 4))
    r = jax.random.normal(k2, (3, 11, 2, 4))
    lam = jnp.array([0.1, 1.0, 10.0])
    got = trust_region_step(jac, r, lam, axis=1, method=method)
    for i in range(3):
        flat_j, flat_r = jac[i].reshape(11, 8), r[i].reshape(11, 8)
        want = least_squares(flat_j, flat_r, float(lam[i]), None)
        np.testing.assert_allclose(got[i].reshape(11, 8), want, rtol=2e-4, atol=2e-5)


def test_jit_and_vmap():
    jac, r = problem(10, 16, 2)
    lams = jnp.array([0.3, 3.0])
    batched = jax.jit(jax.vmap(lambda lam: trust_region_step(jac, r, lam)))(lams)
    for i, lam in enumerate(lams):
        np.testing.assert_allclose(
            batched[i], least_squares(jac, r, float(lam), 2), rtol=2e-4, atol=2e-5
        )


def test_float64():
    with jax.enable_x64(True):
        jac, r = problem(11, 12, "dense")
        jac, r = jnp.asarray(jac, jnp.float64), jnp.asarray(r, jnp.float64)
        got = trust_region_step(jac, r, 0.7, method="associative")
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(
            got, least_squares(jac, r, 0.7, "dense"), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize(
    "jac, r, kwargs, error, match",
    [
        (jnp.ones((4, 3), jnp.complex64), jnp.ones((4, 3)), {}, TypeError, "jac"),
        (jnp.ones((4, 3)), jnp.ones((4, 3), jnp.int32), {}, TypeError, "r must be"),
        (jnp.ones((4, 2)), jnp.ones((4, 3)), {}, ValueError, r"jac has shape \(4, 2\)"),
        (jnp.ones(()), jnp.ones(()), {}, ValueError, "time axis"),
        (jnp.ones((4, 3)), jnp.ones((4, 3)), dict(axis=2), ValueError, "out of range"),
        (
            jnp.ones((4, 3, 3)),
            jnp.ones((4, 3)),
            dict(axis=1),
            ValueError,
            "cannot be the state axis",
        ),
        (
            jnp.ones((4, 3)),
            jnp.ones((4, 3)),
            dict(lam=jnp.ones(4)),
            ValueError,
            "more axes than",
        ),
        (jnp.ones((4, 3)), jnp.ones((4, 3)), dict(method="fast"), ValueError, "fast"),
    ],
)
def test_bad_input(jac, r, kwargs, error, match):
    kwargs = {"lam": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        trust_region_step(jac, r, **kwargs)
