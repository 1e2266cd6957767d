"""ParaGRU and ParaLSTM: Newton against sequential, stepping, resets, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import ParaGRU, ParaGRUCell, ParaLSTM, ParaLSTMCell

LAYERS = {"paragru": ParaGRU, "paralstm": ParaLSTM}


def _make(name, method="newton", **kwargs):
    return LAYERS[name](8, 12, heads=2, method=method, rngs=nnx.Rngs(0), **kwargs)


def _x(shape=(2, 40, 8), seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def gru_reference(cell: ParaGRUCell, x):
    """ParaGRU written from the paper's equations with explicit per-head matrices."""
    heads, d_in = cell.heads, cell.in_features // cell.heads
    kernel, bias, a = cell.kernel[...], cell.bias[...], cell.diagonal[...]
    d_h = cell.hidden_features // heads
    # Dense block-diagonal B_g [hidden, in] per gate g.
    dense = jnp.zeros((3, cell.hidden_features, cell.in_features))
    for h in range(heads):
        block = jnp.transpose(kernel[h], (1, 2, 0))  # [3, d_h, d_in]
        dense = dense.at[:, h * d_h : (h + 1) * d_h, h * d_in : (h + 1) * d_in].set(
            block
        )

    def step(h, x_t):
        pre = jnp.einsum("goi,bi->bgo", dense, x_t) + bias
        z = jax.nn.sigmoid(a[0] * h + pre[:, 0])
        r = jax.nn.sigmoid(a[1] * h + pre[:, 1])
        c = jnp.tanh(a[2] * (h * r) + pre[:, 2])
        h = (1 - z) * h + z * c
        return h, h

    h0 = jnp.zeros((x.shape[0], cell.hidden_features))
    return jnp.moveaxis(jax.lax.scan(step, h0, jnp.moveaxis(x, 1, 0))[1], 0, 1)


def lstm_reference(cell: ParaLSTMCell, x):
    """ParaLSTM (CIFG, peepholes; output peephole on the new cell) from the paper."""
    a, p = cell.diagonal[...], cell.peephole[...]

    def step(state, x_t):
        c, h = state
        u = cell.project(x_t)
        f = jax.nn.sigmoid(a[0] * h + u[:, 0] + p[0] * c)
        z = jnp.tanh(a[1] * h + u[:, 1])
        c = f * c + (1 - f) * z
        o = jax.nn.sigmoid(a[2] * h + u[:, 2] + p[1] * c)
        h = o * jnp.tanh(c)
        return (c, h), h

    zeros = jnp.zeros((x.shape[0], cell.hidden_features))
    return jnp.moveaxis(
        jax.lax.scan(step, (zeros, zeros), jnp.moveaxis(x, 1, 0))[1], 0, 1
    )


@pytest.mark.parametrize("init", ["paper", "code"])
def test_paragru_matches_equations(init):
    layer = _make("paragru", init=init)
    x = _x()
    np.testing.assert_allclose(layer(x), gru_reference(layer.cell, x), atol=1e-5)


def test_paralstm_matches_equations():
    layer = _make("paralstm")
    x = _x()
    np.testing.assert_allclose(layer(x), lstm_reference(layer.cell, x), atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"on_failure": "ignore"},
        {"damping": "levenberg-marquardt", "on_failure": "ignore"},
    ],
    ids=["plain", "levenberg-marquardt"],
)
@pytest.mark.parametrize("name", list(LAYERS))
def test_newton_equals_sequential_values_and_gradients(name, options):
    # on_failure="ignore": a solve that failed would show, not fall back.
    newton = _make(name, "newton", newton_options=options)
    sequential = _make(name, "sequential")
    x = _x((2, 64, 8))
    np.testing.assert_allclose(newton(x), sequential(x), atol=1e-5)

    def loss(model, x):
        return jnp.sum(jnp.sin(model(x)))

    gn_params, gn_x = nnx.grad(loss, argnums=(0, 1))(newton, x)
    gs_params, gs_x = nnx.grad(loss, argnums=(0, 1))(sequential, x)
    np.testing.assert_allclose(gn_x, gs_x, rtol=1e-3, atol=1e-5)
    for gn, gs in zip(
        jax.tree.leaves(nnx.state(gn_params)),
        jax.tree.leaves(nnx.state(gs_params)),
        strict=True,
    ):
        np.testing.assert_allclose(gn, gs, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_step_equals_parallel(name):
    layer = _make(name)
    x = _x((3, 25, 8))
    state = layer.init_state(3)
    ys = []
    for t in range(x.shape[1]):
        state, y = layer.step(state, x[:, t])
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys, axis=1), layer(x), atol=1e-5)
    # The final state returned by the parallel call is the stepped one.
    _, final = layer(x, return_state=True)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_causal(name):
    layer = _make(name)
    x = _x((1, 30, 8))
    y = layer(x)
    y2 = layer(x.at[:, 20:].set(5.0))
    np.testing.assert_allclose(y[:, :20], y2[:, :20], atol=1e-6)
    assert float(jnp.max(jnp.abs(y[:, 20:] - y2[:, 20:]))) > 1e-3


@pytest.mark.parametrize("method", ["newton", "sequential"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_segment_resets_equal_separate_runs(name, method):
    layer = _make(name, method)
    x = _x((2, 30, 8))
    ids = jnp.array([[1] * 12 + [2] * 10 + [3] * 8, [5] * 30])
    y = layer(x, segment_ids=ids)
    for lo, hi in [(0, 12), (12, 22), (22, 30)]:
        np.testing.assert_allclose(y[0, lo:hi], layer(x[:1, lo:hi])[0], atol=1e-5)
    np.testing.assert_allclose(y[1], layer(x[1:])[0], atol=1e-5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_jit_and_vmap(name):
    layer = _make(name)
    x = _x((2, 20, 8))
    want = layer(x)
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(layer, x), want, atol=1e-6)
    graph, state = nnx.split(layer)
    apply = lambda s, x: nnx.merge(graph, s)(x[None])[0]
    got = jax.vmap(apply, in_axes=(None, 0))(state, x)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bfloat16_compute_stays_close():
    layer = ParaGRU(8, 12, method="newton", dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    ref = ParaGRU(8, 12, method="newton", rngs=nnx.Rngs(0))
    x = _x()
    y = layer(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), ref(x), atol=3e-2)


def test_initialisations():
    gru = ParaGRU(64, 256, heads=4, init="code", rngs=nnx.Rngs(0)).cell
    np.testing.assert_allclose(gru.bias[...][0], -jnp.linspace(0, 1, 256))
    np.testing.assert_array_equal(gru.bias[...][1:], 0)
    std = float(jnp.std(gru.diagonal[...]))
    assert abs(std - 2 / np.sqrt(5 * 256)) < 0.2 * 2 / np.sqrt(5 * 256)
    paper = ParaGRU(64, 256, heads=4, init="paper", rngs=nnx.Rngs(0)).cell
    assert float(jnp.max(jnp.abs(paper.diagonal[...]))) <= 0.9
    assert float(jnp.max(jnp.abs(paper.kernel[...]))) <= np.sqrt(3 / 16)
    np.testing.assert_array_equal(paper.bias[...], 0)
    assert paper.kernel[...].shape == (4, 16, 3, 64)  # block-diagonal over heads


def test_diag_clip_bounds_the_recurrence():
    layer = ParaGRU(4, 4, diag_clip=0.5, rngs=nnx.Rngs(0))
    layer.cell.diagonal[...] = jnp.full((3, 4), 3.0)
    x = _x((1, 10, 4))
    clipped = layer(x)
    layer.cell.diagonal[...] = jnp.full((3, 4), 0.5)
    layer.cell.diag_clip = None
    np.testing.assert_allclose(clipped, layer(x), atol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ParaGRU(8, 12, heads=5, rngs=nnx.Rngs(0)), "divisible by heads"),
        (
            lambda: ParaGRU(8, 12, init="xavier", rngs=nnx.Rngs(0)),
            "init must be one of",
        ),
        (lambda: ParaGRU(8, 12, method="fast", rngs=nnx.Rngs(0)), "method must be"),
        (lambda: ParaLSTM(0, 12, rngs=nnx.Rngs(0)), "in_features must be a positive"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_input_shapes():
    layer = _make("paragru")
    with pytest.raises(ValueError, match=r"\[batch, time, features\]"):
        layer(jnp.ones((4, 8)))
    with pytest.raises(ValueError, match="expected inputs with 8 features"):
        layer(jnp.ones((2, 5, 7)))
    with pytest.raises(ValueError, match="segment_ids must have shape"):
        layer(jnp.ones((2, 5, 8)), segment_ids=jnp.ones((2, 4), jnp.int32))
