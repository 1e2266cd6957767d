"""Chunked gated linear attention against the plain recurrence (``jax.lax.scan``)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.nn.chunked_gla import chunked_gla

B, T, H, K, V = 2, 13, 2, 3, 4


def reference(q, k, v, g, starts, h0):
    """``S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t`` (zero transition at starts),
    ``o_t = q_t S_t``, one step at a time."""

    def step(s, inputs):
        q_t, k_t, v_t, g_t, start = inputs
        alpha = jnp.where(start[:, None, None], 0.0, jnp.exp(g_t))
        s = alpha[..., None] * s + k_t[..., :, None] * v_t[..., None, :]
        return s, jnp.einsum("bhi,bhij->bhj", q_t, s)

    time_major = [jnp.swapaxes(a, 0, 1) for a in (q, k, v, g, starts)]
    s, o = jax.lax.scan(step, h0, tuple(time_major))
    return jnp.swapaxes(o, 0, 1), s


def problem(seed=0, decay_scale=1.0):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    args = dict(
        q=normal(B, T, H, K),
        k=normal(B, T, H, K),
        v=normal(B, T, H, V),
        g=decay_scale * jax.nn.log_sigmoid(2.0 * normal(B, T, H, K)),
    )
    starts = jnp.asarray(rng.random((B, T)) < 0.2)
    return args, starts, normal(B, H, K, V)


def run(args, starts, h0, chunk_size):
    return chunked_gla(
        args["q"],
        args["k"],
        args["v"],
        args["g"],
        starts=starts,
        h0=h0,
        chunk_size=chunk_size,
        return_final_state=True,
    )


def test_values_and_grads_match_reference():
    args, starts, h0 = problem()
    assert bool(starts[:, 1:].any())
    weights = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, H, V)))

    def loss(fn, args, h0):
        o, s = fn(args, h0)
        return jnp.sum(weights * o) + jnp.sum(s**2), (o, s)

    def value_and_grad(fn):
        f = jax.value_and_grad(functools.partial(loss, fn), (0, 1), has_aux=True)
        return jax.jit(f)(args, h0)

    (_, (o, s)), grads = value_and_grad(lambda a, h: run(a, starts, h, 4))
    (_, (o_ref, s_ref)), grads_ref = value_and_grad(
        lambda a, h: reference(**a, starts=starts, h0=h)
    )
    np.testing.assert_allclose(o, o_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-5)
    pairs = zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True)
    for g, g_ref in pairs:
        scale = np.max(np.abs(g_ref))
        assert np.all(np.isfinite(g)) and scale > 0
        np.testing.assert_allclose(g / scale, g_ref / scale, rtol=1e-5, atol=1e-5)


def test_result_does_not_depend_on_chunk_size():
    args, starts, h0 = problem(seed=2)
    fn = jax.jit(run, static_argnames="chunk_size")
    o1, s1 = fn(args, starts, h0, chunk_size=1)
    for size in (3, 32):
        o, s = fn(args, starts, h0, chunk_size=size)
        np.testing.assert_allclose(o, o1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s, s1, rtol=1e-5, atol=1e-5)


def test_strong_decays_stay_finite():
    """Log-decays of -60 per step (the chunk spans e^-480): no overflow anywhere."""
    args, starts, h0 = problem(seed=3, decay_scale=30.0)
    fn = jax.jit(run, static_argnames="chunk_size")
    o, s = fn(args, starts, h0, chunk_size=8)
    o_ref, s_ref = jax.jit(reference)(**args, starts=starts, h0=h0)
    assert np.all(np.isfinite(o)) and np.all(np.isfinite(s))
    np.testing.assert_allclose(o, o_ref, rtol=1e-4, atol=1e-4)
    grads = jax.jit(jax.grad(lambda a: jnp.sum(run(a, starts, h0, 8)[0])))(args)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_dtype_and_defaults():
    args, _, _ = problem(seed=4)
    bf = {n: a.astype(jnp.bfloat16) for n, a in args.items()}
    fn = jax.jit(chunked_gla)
    o = fn(args["q"], args["k"], args["v"], args["g"])
    o16 = fn(bf["q"], bf["k"], bf["v"], args["g"])
    assert o.dtype == jnp.float32 and o16.dtype == jnp.bfloat16
    o_ref, _ = jax.jit(reference)(
        **args, starts=jnp.zeros((B, T), bool), h0=jnp.zeros((B, H, K, V))
    )
    np.testing.assert_allclose(o, o_ref, rtol=1e-5, atol=1e-5)
    err = np.max(np.abs(np.asarray(o16, np.float32) - o))
    assert err < 0.05 * np.max(np.abs(o))


def test_bad_arguments_raise():
    args, starts, h0 = problem()
    q, k, v, g = (args[n] for n in ("q", "k", "v", "g"))
    with pytest.raises(ValueError, match="q must be"):
        chunked_gla(q[0], k, v, g)
    with pytest.raises(ValueError, match="k must have"):
        chunked_gla(q, k[..., :-1], v, g)
    with pytest.raises(ValueError, match="v must be"):
        chunked_gla(q, k, v[:, :-1], g)
    with pytest.raises(ValueError, match="starts"):
        chunked_gla(q, k, v, g, starts=starts[:, :-1])
    with pytest.raises(ValueError, match="h0"):
        chunked_gla(q, k, v, g, h0=h0[..., :-1])
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_gla(q, k, v, g, chunk_size=0)
