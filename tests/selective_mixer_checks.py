"""Cheaper protocol checks for the Mamba / GLA / LightNet tests (fewer compilations).

The shared ``linear_ssm_checks`` compile each model five times for the reference
comparison and run it eagerly for the jit/vmap check; the chunked mixers here are
slow to compile, so these versions compile the layer and the reference once each.
"""

import functools

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
from flax import nnx


def assert_matches_reference(layer, x, reference, *, rtol=2e-4, atol=2e-5, **kw):
    """Outputs and parameter gradients of ``layer(x, **kw)`` equal ``reference``'s.

    ``reference(module, x, **kw)`` evaluates the layer's equations with its own
    loop over time, reading the module's parameters. The loss is a random weighting
    of every output, so each output's gradient is checked.
    """
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    y_shape = jax.eval_shape(lambda p: nnx.merge(graphdef, p, rest)(x), params).shape
    weights = checks.random_inputs(y_shape, seed=7)

    def loss(fn, params):
        y = fn(nnx.merge(graphdef, params, rest))
        return jnp.sum(weights * y.astype(jnp.float32)), y

    def value_and_grad(fn):
        f = jax.value_and_grad(functools.partial(loss, fn), has_aux=True)
        (_, y), grads = jax.jit(f)(params)
        return y, nnx.to_flat_state(grads)

    y, grads = value_and_grad(lambda m: m(x, **kw))
    y_ref, grads_ref = value_and_grad(lambda m: reference(m, x, **kw))
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=atol)
    grads_ref = dict(grads_ref)
    assert len(grads) > 0
    for path, g in grads:
        a, b = np.asarray(g[...]), np.asarray(grads_ref[path][...])
        assert np.all(np.isfinite(a)), path
        scale = np.max(np.abs(b)) + 1e-12
        np.testing.assert_allclose(a / scale, b / scale, rtol=rtol, atol=atol)
        assert np.any(a != 0), f"gradient of {path} is identically zero"


def assert_jit_and_vmap(layer, x):
    """``nnx.jit`` and ``jax.jit(jax.vmap(...))`` over an extra axis agree."""
    y = checks.apply(layer, x)
    graphdef, state = nnx.split(layer)
    xs = jnp.stack([x, -2.0 * x])
    ys = jax.jit(jax.vmap(lambda x: nnx.merge(graphdef, state)(x)))(xs)
    np.testing.assert_allclose(ys[0], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ys[1], checks.apply(layer, xs[1]), rtol=1e-5, atol=1e-5)
