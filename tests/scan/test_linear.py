"""``linear_scan`` against a NumPy loop (values) and ``jax.lax.scan`` (gradients)."""

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax.test_util import check_grads
from reference_scans import STRUCTURES, lax_scan, numpy_scan, random_problem

from seqjax.scan import ScanMethod, linear_scan

METHODS = ["sequential", "associative", "chunked", "auto"]
DTYPES = {"float32": np.float32, "complex64": np.complex64}
TOL = dict(rtol=2e-5, atol=2e-5)


def _vjp(fn, a, b, h0, ct):
    """Cotangents of ``fn(a, b, h0)`` for the output cotangent ``ct``."""
    _, pullback = jax.vjp(fn, a, b, h0)
    return pullback(ct)


@pytest.mark.parametrize("with_h0", [False, True], ids=["zero_h0", "h0"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("method", METHODS)
def test_values_and_gradients(method, structure, dtype, reverse, with_h0):
    """Every method x structure x dtype x direction x h0, T=13 (odd, several chunks)."""
    matrix, _ = STRUCTURES[structure]
    a, b, h0 = random_problem(structure, DTYPES[dtype], length=13, seed=1)
    h0_arg = h0 if with_h0 else None
    got = linear_scan(a, b, h0_arg, reverse=reverse, method=method, chunk_size=4)
    want = numpy_scan(a, b, h0_arg, reverse=reverse, matrix=matrix)
    assert got.dtype == np.dtype(DTYPES[dtype])
    np.testing.assert_allclose(got, want, **TOL)

    ct = random_problem(structure, DTYPES[dtype], length=13, seed=2)[1]
    h0_used = h0 if with_h0 else np.zeros_like(h0)
    ours = functools.partial(linear_scan, reverse=reverse, method=method, chunk_size=4)
    ref = functools.partial(lax_scan, reverse=reverse, matrix=matrix)
    for g, r in zip(
        _vjp(ours, a, b, h0_used, ct), _vjp(ref, a, b, h0_used, ct), strict=True
    ):
        assert g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("method", ["sequential", "associative", "chunked"])
def test_check_grads_float64(method, structure, dtype, reverse):
    """Numerical gradient checks in double precision (x64 on)."""
    with jax.enable_x64(True):
        a, b, h0 = random_problem(
            structure, np.dtype(dtype), length=7, batch=(), seed=3
        )
        fn = functools.partial(
            linear_scan, reverse=reverse, method=method, chunk_size=3
        )
        check_grads(
            fn, (a, b, h0), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6
        )
        assert fn(a, b, h0).dtype == np.dtype(dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("length", [0, 1, 2, 7, 100])
def test_lengths(method, length):
    a, b, h0 = random_problem("elementwise", np.float32, length=max(length, 1), seed=4)
    a, b = a[:length], b[:length]
    for reverse in (False, True):
        got = linear_scan(a, b, h0, reverse=reverse, method=method)
        assert got.shape == b.shape
        np.testing.assert_allclose(got, numpy_scan(a, b, h0, reverse=reverse), **TOL)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 16, 64])
@pytest.mark.parametrize("structure", ["elementwise", "block2"])
def test_chunk_sizes(chunk_size, structure):
    """Chunks that do and do not divide T, and one chunk larger than T."""
    matrix, _ = STRUCTURES[structure]
    a, b, h0 = random_problem(structure, np.float32, length=37, seed=5)
    for reverse in (False, True):
        got = linear_scan(
            a, b, h0, reverse=reverse, method="chunked", chunk_size=chunk_size
        )
        want = numpy_scan(a, b, h0, reverse=reverse, matrix=matrix)
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("method", METHODS)
def test_broadcasting_a(method):
    """Time-invariant ``a`` (time length 1) and ``a`` shared over batch and features."""
    rng = np.random.default_rng(6)
    b = rng.standard_normal((11, 4, 3)).astype(np.float32)
    for a_shape in [(1, 4, 3), (11, 1, 3), (1, 1, 1), (11, 4, 1)]:
        a = rng.uniform(-1, 1, a_shape).astype(np.float32)
        got = linear_scan(a, b, method=method, chunk_size=4)
        np.testing.assert_allclose(got, numpy_scan(a, b), **TOL)
        # Gradients flow back to the broadcast shape.
        ga = jax.grad(lambda a: linear_scan(a, b, method=method, chunk_size=4).sum())(a)
        gr = jax.grad(lambda a: lax_scan(a, b, jnp.zeros((4, 3))).sum())(a)
        assert ga.shape == a_shape
        np.testing.assert_allclose(ga, gr, rtol=1e-4, atol=1e-4)
    # Matrix shared over the batch, and h0 broadcast over it.
    bm = rng.standard_normal((9, 4, 2)).astype(np.float32)
    am = (0.5 * rng.standard_normal((9, 1, 2, 2))).astype(np.float32)
    h0 = rng.standard_normal((2,)).astype(np.float32)
    got = linear_scan(am, bm, h0, method=method, chunk_size=4)
    want = numpy_scan(am, bm, np.broadcast_to(h0, (4, 2)), matrix=True)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", [1, -2, 2])
def test_time_axis_after_batch(method, axis):
    """Batch axes before and after time; results equal scanning a moved copy."""
    rng = np.random.default_rng(7)
    b = rng.standard_normal((2, 9, 3, 4)).astype(np.float32)
    a = rng.uniform(-1, 1, b.shape).astype(np.float32)
    got = linear_scan(a, b, axis=axis, method=method, chunk_size=4)
    ax = axis % b.ndim
    want = np.moveaxis(numpy_scan(np.moveaxis(a, ax, 0), np.moveaxis(b, ax, 0)), 0, ax)
    np.testing.assert_allclose(got, want, **TOL)
    # Matrix transition: time on axis 1 of b [batch, T, d] and a [batch, T, d, d].
    bm = rng.standard_normal((2, 9, 3)).astype(np.float32)
    am = (0.5 * rng.standard_normal((2, 9, 3, 3))).astype(np.float32)
    got = linear_scan(am, bm, axis=1, method=method, chunk_size=4)
    want = np.moveaxis(
        numpy_scan(np.moveaxis(am, 1, 0), np.moveaxis(bm, 1, 0), matrix=True), 0, 1
    )
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("method", METHODS)
def test_bfloat16_accumulates_in_float32(method):
    """bfloat16 in, bfloat16 out, with float32 carries: error is one rounding, not T."""
    rng = np.random.default_rng(8)
    a = rng.uniform(0.9, 1.0, (512, 8)).astype(jnp.bfloat16)
    b = rng.standard_normal((512, 8)).astype(jnp.bfloat16)
    got = linear_scan(a, b, method=method)
    assert got.dtype == jnp.bfloat16
    want = numpy_scan(np.asarray(a, np.float32), np.asarray(b, np.float32))
    # One final bfloat16 rounding (relative 2^-8) of values that grow to ~10.
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=8e-3, atol=2e-2)
    grads = jax.grad(
        lambda a, b: linear_scan(a, b, method=method).astype(jnp.float32).sum(), (0, 1)
    )(a, b)
    assert all(g.dtype == jnp.bfloat16 for g in grads)
    assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)


def test_mixed_real_transition_complex_input():
    """Real ``a`` with complex ``b``: complex result, real gradient for ``a``."""
    rng = np.random.default_rng(9)
    a = rng.uniform(-1, 1, (10, 3)).astype(np.float32)
    b = (rng.standard_normal((10, 3)) + 1j * rng.standard_normal((10, 3))).astype(
        np.complex64
    )
    for method in METHODS:
        got = linear_scan(a, b, method=method, chunk_size=4)
        assert got.dtype == np.complex64
        np.testing.assert_allclose(got, numpy_scan(a, b), **TOL)
        loss = lambda a, fn: jnp.abs(fn(a)).sum()
        ga = jax.grad(loss)(
            a, lambda a, m=method: linear_scan(a, b, method=m, chunk_size=4)
        )
        gr = jax.grad(loss)(
            a, lambda a: lax_scan(a.astype(b.dtype), b, jnp.zeros(3, b.dtype))
        )
        assert ga.dtype == np.float32
        np.testing.assert_allclose(ga, gr, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_jit_and_vmap(method):
    a, b, h0 = random_problem("block2", np.float32, length=10, batch=(3,), seed=10)
    fn = functools.partial(linear_scan, method=method, chunk_size=4)
    want = numpy_scan(a, b, h0, matrix=True)
    np.testing.assert_allclose(jax.jit(fn)(a, b, h0), want, **TOL)
    # vmap over the batch axis (axis 1 of a and b, axis 0 of h0).
    got = jax.vmap(fn, in_axes=(1, 1, 0), out_axes=1)(a, b, h0)
    np.testing.assert_allclose(got, want, **TOL)
    grad = jax.jit(jax.grad(lambda b: jax.vmap(fn, (1, 1, 0), 1)(a, b, h0).sum()))(b)
    ref = jax.grad(lambda b: lax_scan(a, b, h0, matrix=True).sum())(b)
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-4)


def test_method_enum_and_auto_equal():
    a, b, h0 = random_problem("elementwise", np.float32, length=20, seed=11)
    ref = linear_scan(a, b, h0, method="sequential")
    for m in ScanMethod:
        np.testing.assert_allclose(linear_scan(a, b, h0, method=m), ref, **TOL)


@given(
    length=st.integers(1, 70),
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    structure=st.sampled_from(list(STRUCTURES)),
    method=st.sampled_from(METHODS),
    chunk=st.integers(1, 20),
    reverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes(length, batch, structure, method, chunk, reverse, seed):
    matrix, _ = STRUCTURES[structure]
    a, b, h0 = random_problem(
        structure, np.float32, length, batch=tuple(batch), seed=seed
    )
    got = linear_scan(a, b, h0, reverse=reverse, method=method, chunk_size=chunk)
    want = numpy_scan(a, b, h0, reverse=reverse, matrix=matrix)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# --- bad input -------------------------------------------------------------------

_ONE = np.ones((5, 3), np.float32)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(a=np.ones((5, 3), np.int32), b=_ONE),
            TypeError,
            r"a must have a floating.*int32",
        ),
        (
            dict(a=_ONE, b=np.ones((5, 3), bool)),
            TypeError,
            r"b must have a floating.*bool",
        ),
        (
            dict(a=_ONE, b=_ONE, h0=np.ones(3, np.int32)),
            TypeError,
            r"h0 must have a floating",
        ),
        (
            dict(a=np.ones((4, 3), np.float32), b=_ONE),
            ValueError,
            r"time lengths differ.*a has 4 steps.*b has 5",
        ),
        (
            dict(a=np.ones((5, 3, 3, 3), np.float32), b=_ONE),
            ValueError,
            r"rank 4.*expected a of rank 2.*or 3",
        ),
        (
            dict(a=np.ones((5,), np.float32), b=_ONE),
            ValueError,
            r"rank 1.*expected a of rank 2",
        ),
        (
            dict(a=np.ones((5, 3, 2), np.float32), b=_ONE),
            ValueError,
            r"must end in \(3, 3\)",
        ),
        (
            dict(a=np.ones((5, 2), np.float32), b=_ONE),
            ValueError,
            r"does not broadcast to \(5, 3\)",
        ),
        (
            dict(a=_ONE, b=_ONE, method="parallel"),
            ValueError,
            r"unknown method='parallel'.*'sequential'",
        ),
        (
            dict(a=_ONE, b=_ONE, axis=2),
            ValueError,
            r"axis=2 is out of range.*-2 <= axis < 2",
        ),
        (dict(a=_ONE, b=_ONE, axis=-3), ValueError, r"axis=-3 is out of range"),
        (dict(a=_ONE, b=_ONE, axis=1.0), TypeError, r"axis must be an int"),
        (
            dict(a=np.ones((5, 3, 3), np.float32), b=_ONE, axis=1),
            ValueError,
            r"cannot be the time axis",
        ),
        (
            dict(a=_ONE, b=_ONE, h0=np.ones(4, np.float32)),
            ValueError,
            r"h0 of shape \(4,\) does not broadcast to \(3,\)",
        ),
        (dict(a=np.ones(()), b=np.ones(())), ValueError, r"b must have a time axis"),
        (
            dict(a=_ONE, b=_ONE, chunk_size=0),
            ValueError,
            r"chunk_size must be a positive int",
        ),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        linear_scan(**kwargs)
