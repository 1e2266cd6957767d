"""Protocol checks shared by the linear-SSM mixer tests (LRU, S4D, S5, RG-LRU).

Each function takes a constructed layer and inputs, and asserts one promise of the
sequence-layer protocol (``seqjax/nn/__init__.py``). References written from the
papers' equations live in each mixer's own test file.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


def random_inputs(shape, seed=0, dtype=jnp.float32):
    """Standard normal inputs (drawn by NumPy: no per-shape JAX compile)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@nnx.jit
def apply(layer, x, segment_ids=None):
    """``layer(x, segment_ids=...)`` under ``nnx.jit`` (eager dispatch is slow)."""
    return layer(x, segment_ids=segment_ids)


def run_steps(layer, x):
    """Steps ``layer`` through ``x: [batch, time, features]`` from ``init_state``."""
    graphdef, state = nnx.split(layer)

    @jax.jit
    def go(state, x):
        layer = nnx.merge(graphdef, state)

        def body(carry, x_t):
            return layer.step(carry, x_t)

        _, ys = jax.lax.scan(body, layer.init_state(x.shape[0]), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(ys, 0, 1)

    return go(state, x)


def assert_step_matches_parallel(layer, x, *, rtol=1e-5, atol=1e-5):
    y_par = apply(layer, x)
    y_seq = run_steps(layer, x)
    assert y_seq.dtype == y_par.dtype
    np.testing.assert_allclose(
        np.asarray(y_seq, np.float32), np.asarray(y_par, np.float32), rtol, atol
    )
    return y_par


def assert_causal(layer, x, t):
    """Changing inputs after ``t`` leaves outputs up to ``t`` unchanged."""
    y = apply(layer, x)
    x2 = x.at[:, t + 1 :].set(random_inputs(x[:, t + 1 :].shape, seed=99))
    y2 = apply(layer, x2)
    np.testing.assert_allclose(y2[:, : t + 1], y[:, : t + 1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y2[:, t + 1 :], y[:, t + 1 :])  # the change is visible


def packed_segment_ids(lengths_per_row):
    """``[batch, time]`` ids from per-row segment lengths (rows of equal total)."""
    rows = [np.repeat(np.arange(len(ls)), ls) for ls in lengths_per_row]
    return jnp.asarray(np.stack(rows), jnp.int32)


def assert_resets_match_segments(layer, x, lengths_per_row, *, rtol=1e-5, atol=1e-5):
    """A packed row equals running each of its segments on its own."""
    ids = packed_segment_ids(lengths_per_row)
    y = apply(layer, x, ids)
    for row, lengths in enumerate(lengths_per_row):
        start = 0
        for length in lengths:
            piece = x[row : row + 1, start : start + length]
            np.testing.assert_allclose(
                y[row : row + 1, start : start + length],
                apply(layer, piece),
                rtol,
                atol,
            )
            start += length
    # Without segment_ids the state does carry across boundaries.
    assert not np.allclose(apply(layer, x), y, rtol, atol)


def param_grads(layer, loss):
    """``((loss, aux), grads)`` of ``loss(module) -> (scalar, aux)`` w.r.t. the
    ``nnx.Param``s of ``layer``."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def f(params):
        return loss(nnx.merge(graphdef, params, rest))

    return jax.jit(jax.value_and_grad(f, has_aux=True))(params)


def assert_grads_match_reference(layer, x, reference, *, rtol=2e-4, atol=2e-5, **kw):
    """Outputs and parameter gradients of ``layer(x)`` equal those of ``reference``.

    ``reference(module, x, **kw)`` evaluates the layer's equations with its own
    loop (explicit per-step matrices), reading the module's parameters. The loss is
    a fixed random projection of the outputs; gradients are compared leaf by leaf,
    relative to each reference gradient's largest entry.
    """
    weights = None

    def loss_of(fn):
        def loss(m):
            y = fn(m)
            return jnp.sum(weights * y.astype(jnp.float32)), y

        return loss

    weights = random_inputs(x.shape[:2] + (apply(layer, x).shape[-1],), seed=7)
    (_, y1), g1 = param_grads(layer, loss_of(lambda m: m(x, **kw)))
    (_, y2), g2 = param_grads(layer, loss_of(lambda m: reference(m, x, **kw)))
    np.testing.assert_allclose(np.asarray(y1), np.asarray(y2), rtol=rtol, atol=atol)
    flat1 = nnx.to_flat_state(g1)
    flat2 = dict(nnx.to_flat_state(g2))
    assert len(flat1) > 0
    for path, g in flat1:
        a, b = np.asarray(g[...]), np.asarray(flat2[path][...])
        assert np.all(np.isfinite(a)), path
        scale = np.max(np.abs(b)) + 1e-12
        np.testing.assert_allclose(
            a / scale, b / scale, rtol=rtol, atol=atol, err_msg=str(path)
        )
        assert np.any(a != 0), f"gradient of {path} is identically zero"


def assert_jit_and_vmap(layer, x):
    """``nnx.jit`` and ``jax.vmap`` (over an extra leading axis) agree with eager."""
    y = layer(x)  # eager
    y_jit = nnx.jit(lambda m, x: m(x))(layer, x)
    np.testing.assert_allclose(y_jit, y, rtol=1e-5, atol=1e-5)
    graphdef, state = nnx.split(layer)
    xs = jnp.stack([x, 2.0 * x, -x])
    ys = jax.jit(jax.vmap(lambda x: nnx.merge(graphdef, state)(x)))(xs)
    for i in range(3):
        np.testing.assert_allclose(ys[i], apply(layer, xs[i]), rtol=1e-5, atol=1e-5)


def assert_bad_shapes_raise(layer, features):
    with pytest.raises(ValueError, match="shape"):
        layer(jnp.zeros((4, features)))
    with pytest.raises(ValueError, match="shape"):
        layer(jnp.zeros((2, 4, features + 1)))
    with pytest.raises(ValueError, match="segment_ids"):
        layer(jnp.zeros((2, 4, features)), segment_ids=jnp.zeros((2, 5), jnp.int32))
    state = layer.init_state(2)
    with pytest.raises(ValueError, match="shape"):
        layer.step(state, jnp.zeros((2, features + 1)))
    with pytest.raises(ValueError, match="shape"):
        layer.step(state, jnp.zeros((2, 3, features)))


def assert_bfloat16_close(make_layer, x, *, rel=3e-2):
    """``dtype=bfloat16`` runs, returns bfloat16, and stays close to float32.

    ``make_layer(dtype)`` builds the layer with the same seed for both dtypes.
    """
    y32 = apply(make_layer(jnp.float32), x)
    layer16 = make_layer(jnp.bfloat16)
    y16 = apply(layer16, x)
    assert y16.dtype == jnp.bfloat16
    for leaf in jax.tree.leaves(nnx.state(layer16, nnx.Param)):
        assert leaf.dtype in (jnp.float32, jnp.complex64)
    err = np.max(np.abs(np.asarray(y16, np.float32) - np.asarray(y32)))
    assert err <= rel * np.max(np.abs(np.asarray(y32))), err
    # The recurrent form in bfloat16 matches the parallel form in bfloat16.
    y16_seq = run_steps(layer16, x)
    assert y16_seq.dtype == jnp.bfloat16
    err = np.max(np.abs(np.asarray(y16_seq, np.float32) - np.asarray(y16, np.float32)))
    assert err <= rel * np.max(np.abs(np.asarray(y32))), err


def assert_traceable_init(make_layer):
    """The constructor traces (``nnx.eval_shape``), as sharded initialisation needs."""
    abstract = nnx.state(nnx.eval_shape(make_layer), nnx.Param)
    concrete = nnx.state(make_layer(), nnx.Param)
    shapes = lambda s: [(x.shape, x.dtype) for x in jax.tree.leaves(s)]
    assert shapes(abstract) == shapes(concrete)
