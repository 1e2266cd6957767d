"""Chunked selective scan against a plain ``jax.lax.scan`` over time."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.nn import selective_scan as selective_scan_module
from seqjax.nn.selective_scan import selective_scan
from seqjax.scan import linear_scan

B, T, D, N = 2, 19, 3, 4


def reference(x, delta, A, Bm, Cm, D_skip, starts, h0):
    """``h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ`` (zeroed transition at starts),
    ``y_t = h_t C_t + D x_t``, one step at a time."""

    def step(h, inputs):
        x_t, dt_t, b_t, c_t, s_t = inputs
        a_bar = jnp.where(s_t[:, None, None], 0.0, jnp.exp(dt_t[:, :, None] * A))
        h = a_bar * h + (dt_t * x_t)[:, :, None] * b_t[:, None, :]
        y = jnp.sum(h * c_t[:, None, :], axis=-1) + D_skip * x_t
        return h, y

    time_major = [jnp.swapaxes(v, 0, 1) for v in (x, delta, Bm, Cm, starts)]
    h, ys = jax.lax.scan(step, h0, tuple(time_major))
    return jnp.swapaxes(ys, 0, 1), h


def problem(seed=0, time=T, resets=True):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    args = dict(
        x=normal(B, time, D),
        delta=jax.nn.softplus(normal(B, time, D)),
        A=-jnp.exp(normal(D, N)),
        Bm=normal(B, time, N),
        Cm=normal(B, time, N),
        D_skip=normal(D),
    )
    starts = rng.random((B, time)) < (0.15 if resets else 0.0)
    return args, jnp.asarray(starts), normal(B, D, N)


def run(args, starts, h0, **kw):
    return selective_scan(
        args["x"],
        args["delta"],
        args["A"],
        args["Bm"],
        args["Cm"],
        args["D_skip"],
        starts=starts,
        h0=h0,
        return_final_state=True,
        **kw,
    )


@pytest.mark.parametrize(
    "intra_chunk, chunk_size", [("scan", 4), ("quadratic", 5), ("sequential", 6)]
)
def test_values_and_grads_match_reference(intra_chunk, chunk_size):
    args, starts, h0 = problem()
    assert bool(starts[:, 1:].any())  # resets inside the sequence are exercised
    weights = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, D)))
    kw = dict(intra_chunk=intra_chunk, chunk_size=chunk_size)

    def loss(fn, args, h0):
        y, h = fn(args, h0)
        return jnp.sum(weights * y) + jnp.sum(h**2), (y, h)

    def chunked(args, h0):
        return run(args, starts, h0, **kw)

    def plain(args, h0):
        return reference(**args, starts=starts, h0=h0)

    def value_and_grad(fn):
        vg = jax.value_and_grad(functools.partial(loss, fn), (0, 1), has_aux=True)
        return jax.jit(vg)(args, h0)

    (_, (y, h)), grads = value_and_grad(chunked)
    (_, (y_ref, h_ref)), grads_ref = value_and_grad(plain)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-5)
    pairs = zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True)
    for g, g_ref in pairs:
        scale = np.max(np.abs(g_ref))
        assert np.all(np.isfinite(g)) and scale > 0
        np.testing.assert_allclose(g / scale, g_ref / scale, rtol=1e-5, atol=1e-5)


def test_result_does_not_depend_on_chunk_size():
    args, starts, h0 = problem(seed=2)
    fn = jax.jit(run, static_argnames=("chunk_size", "intra_chunk"))
    y0, h0_out = fn(args, starts, h0, chunk_size=1, intra_chunk="scan")
    for size, intra in [
        (3, "scan"), (64, "scan"), (8, "quadratic"), (5, "sequential"),
        (64, "sequential"),
    ]:  # fmt: skip
        y, h = fn(args, starts, h0, chunk_size=size, intra_chunk=intra)
        np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h, h0_out, rtol=1e-5, atol=1e-5)


def test_defaults_and_dtypes():
    args, _, _ = problem(seed=3, resets=False)
    fn = jax.jit(selective_scan)
    y = fn(args["x"], args["delta"], args["A"], args["Bm"], args["Cm"])
    zeros = jnp.zeros((B, D, N))
    y_ref, _ = jax.jit(reference)(
        **{**args, "D_skip": jnp.zeros(D)}, starts=jnp.zeros((B, T), bool), h0=zeros
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    bf = {k: v.astype(jnp.bfloat16) for k, v in args.items()}
    y16 = fn(bf["x"], bf["delta"], args["A"], bf["Bm"], bf["Cm"])
    assert y16.dtype == jnp.bfloat16
    assert np.max(np.abs(np.asarray(y16, np.float32) - y)) < 0.05 * np.max(np.abs(y))


def test_large_steps_underflow_instead_of_overflowing():
    """Δ·|A| in the thousands: transitions are exactly zero, nothing is inf/nan."""
    args, starts, h0 = problem(seed=4)
    args = {**args, "delta": args["delta"] * 1e3, "A": args["A"] - 10.0}

    def loss(args):
        y, h = run(args, starts, h0, chunk_size=8, intra_chunk="quadratic")
        return jnp.sum(y) + jnp.sum(h)

    y_ref, h_ref = jax.jit(reference)(**args, starts=starts, h0=h0)
    y, _ = jax.jit(run, static_argnames=("chunk_size", "intra_chunk"))(
        args, starts, h0, chunk_size=8, intra_chunk="scan"
    )  # the quadratic form's values are checked through its gradient below
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-3)
    value, grads = jax.jit(jax.value_and_grad(loss))(args)
    np.testing.assert_allclose(value, jnp.sum(y_ref) + jnp.sum(h_ref), rtol=1e-4)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_states_are_never_materialised():
    """Training memory (forward and backward) stays well below one ``[B, T, D, N]``
    float32 tensor.

    The forward pass alone of a scan that materialises every state (``linear_scan``
    on ``[B, T, D, N]``) needs several such tensors, so the bound is a real
    constraint.
    """
    b, t, d, n = 1, 2048, 64, 64
    full = b * t * d * n * 4
    spec = [
        jax.ShapeDtypeStruct(s, jnp.float32)
        for s in ((b, t, d), (b, t, d), (d, n), (b, t, n), (b, t, n))
    ]

    def chunked(x, dt, A, Bm, Cm):
        return jnp.sum(selective_scan(x, dt, A, Bm, Cm, chunk_size=16) ** 2)

    def materialised(x, dt, A, Bm, Cm):
        a = jnp.exp(dt[..., None] * A)
        h = linear_scan(a, (dt * x)[..., None] * Bm[:, :, None, :], axis=1)
        return jnp.sum(jnp.einsum("btdn,btn->btd", h, Cm) ** 2)

    def temp_bytes(f):
        compiled = jax.jit(f).lower(*spec).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(materialised) > 2 * full  # its forward pass alone
    assert temp_bytes(jax.grad(chunked, argnums=(0, 1, 2, 3, 4))) < 0.3 * full


def test_bad_arguments_raise():
    args, starts, h0 = problem()
    x, dt, A, Bm, Cm = (args[k] for k in ("x", "delta", "A", "Bm", "Cm"))
    with pytest.raises(ValueError, match="x must be"):
        selective_scan(x[0], dt, A, Bm, Cm)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(x, dt[:, :-1], A, Bm, Cm)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(x, dt, A.T, Bm, Cm)
    with pytest.raises(ValueError, match="C must be"):
        selective_scan(x, dt, A, Bm, Cm[..., :-1])
    with pytest.raises(ValueError, match="starts"):
        selective_scan(x, dt, A, Bm, Cm, starts=starts[:, :-1])
    with pytest.raises(ValueError, match="h0"):
        selective_scan(x, dt, A, Bm, Cm, h0=h0[0])
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(x, dt, A, Bm, Cm, chunk_size=0)
    with pytest.raises(ValueError, match="intra_chunk"):
        selective_scan(x, dt, A, Bm, Cm, intra_chunk="fast")


def test_auto_policy():
    assert selective_scan_module.resolve("auto", backend="cpu") == "sequential"
    assert selective_scan_module.resolve("auto", backend="gpu") == "scan"
    assert selective_scan_module.resolve("quadratic", backend="cpu") == "quadratic"
