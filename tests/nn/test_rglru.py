"""RG-LRU: protocol checks, a plain per-step reference, the bounded sqrt, inits."""

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import linear_ssm_checks as checks
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import rglru

H, HEADS = 4, 2


def make(dtype=jnp.float32, **kw):
    return rglru.RGLRU(H, num_heads=HEADS, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def reference(m, x, segment_ids=None):
    """The paper's equations step by step with ``lax.scan`` and dense gate matrices.

    ``a_t = σ(Λ)^(c r_t)`` is taken as a power (not through logs), and the reset
    convention is RecurrentGemma's: at a segment start ``h_{t-1}`` is dropped and,
    unless ``normalize_at_reset``, the input is not scaled by ``sqrt(1 - a_t²)``.
    """
    w_a = jax.scipy.linalg.block_diag(*m.gate_a_w[...])
    w_x = jax.scipy.linalg.block_diag(*m.gate_x_w[...])
    b_a, b_x = m.gate_a_b[...].reshape(-1), m.gate_x_b[...].reshape(-1)
    a = jax.nn.sigmoid(m.a_param[...])
    if segment_ids is None:
        starts = jnp.zeros(x.shape[:2], bool).at[:, 0].set(True)
    else:
        first = jnp.ones_like(segment_ids[:, :1], bool)
        starts = jnp.concatenate([first, segment_ids[:, 1:] != segment_ids[:, :-1]], 1)

    def step(h, inputs):
        x_t, start = inputs
        r = jax.nn.sigmoid(x_t @ w_a + b_a)
        i = jax.nn.sigmoid(x_t @ w_x + b_x)
        a_t = a ** (m.c * r)
        scale = jnp.sqrt(1 - a_t**2)
        if not m.normalize_at_reset:
            scale = jnp.where(start[:, None], 1.0, scale)
        h = jnp.where(start[:, None], 0.0, a_t * h) + scale * (i * x_t)
        return h, h

    h0 = jnp.zeros((x.shape[0], H))
    _, hs = jax.lax.scan(step, h0, (jnp.swapaxes(x, 0, 1), starts.T))
    return jnp.swapaxes(hs, 0, 1)


@pytest.mark.parametrize(
    "kw", [{}, dict(normalize_at_reset=True, method="associative")]
)
def test_step_matches_parallel(kw):
    checks.assert_step_matches_parallel(make(**kw), checks.random_inputs((2, 9, H)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, 8, H)), t=4)


@pytest.mark.parametrize("normalize_at_reset", [False, True])
def test_resets_match_segments(normalize_at_reset):
    checks.assert_resets_match_segments(
        make(normalize_at_reset=normalize_at_reset),
        checks.random_inputs((2, 9, H)),
        [[3, 3, 3], [6, 3]],
    )


@pytest.mark.parametrize("normalize_at_reset", [False, True])
def test_values_and_param_grads_match_reference(normalize_at_reset):
    layer = make(normalize_at_reset=normalize_at_reset)
    # Non-zero biases so that their gradients are tested away from the init.
    layer.gate_a_b[...] = checks.random_inputs((HEADS, H // HEADS), seed=3)
    layer.gate_x_b[...] = checks.random_inputs((HEADS, H // HEADS), seed=4)
    x = checks.random_inputs((2, 7, H))
    if normalize_at_reset:
        checks.assert_grads_match_reference(layer, x, reference)
    else:  # Row 0 is packed (resets); row 1 is one plain sequence.
        ids = checks.packed_segment_ids([[2, 5], [7]])
        checks.assert_grads_match_reference(layer, x, reference, segment_ids=ids)


def test_reset_input_is_not_normalised_by_default():
    """RecurrentGemma's convention: at a reset ``h_t = i_t x_t`` (no sqrt(1-a²))."""
    x = checks.random_inputs((1, 3, H))
    plain, normed = make(), make(normalize_at_reset=True)
    i = plain._gate(x[:, 0], plain.gate_x_w, plain.gate_x_b)
    np.testing.assert_allclose(plain(x)[:, 0], i * x[:, 0], rtol=1e-6)
    r = plain._gate(x[:, 0], plain.gate_a_w, plain.gate_a_b)
    a_t = np.exp(np.asarray(plain.log_a(r)))
    np.testing.assert_allclose(
        normed(x)[:, 0], np.sqrt(1 - a_t**2) * i * x[:, 0], rtol=1e-5
    )


def test_jit_and_vmap():
    checks.assert_jit_and_vmap(make(), checks.random_inputs((2, 6, H)))
    checks.assert_traceable_init(make)


def test_bad_shapes_and_hyperparameters():
    checks.assert_bad_shapes_raise(make(), H)
    with pytest.raises(ValueError, match="method"):
        make(method="fast")
    with pytest.raises(ValueError, match="divide"):
        rglru.RGLRU(6, num_heads=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="a_max"):
        make(a_min=0.9, a_max=1.0)
    with pytest.raises(ValueError, match="a_init"):
        make(a_init="ring")
    with pytest.raises(ValueError, match="c must"):
        make(c=0.0)
    state = make().init_state(2)
    with pytest.raises(ValueError, match="state.h"):
        make().step(state._replace(h=jnp.zeros((2, H + 1))), jnp.zeros((2, H)))


def test_bfloat16_close_to_float32():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, 16, H)))


@pytest.mark.parametrize("a_init", ["griffin", "recurrentgemma"])
def test_initialisation(a_init):
    layer = rglru.RGLRU(2000, a_init=a_init, rngs=nnx.Rngs(5))
    a = np.asarray(jax.nn.sigmoid(layer.a_param[...]), np.float64)
    # Griffin: a^c ~ U(0.9, 0.999); RecurrentGemma: a in [0.9, 0.999], a² uniform.
    v, lo, hi = (a**8, 0.9, 0.999) if a_init == "griffin" else (a**2, 0.81, 0.998001)
    assert v.min() >= lo - 1e-5 and v.max() <= hi + 1e-5
    cdf = (np.sort(v) - lo) / (hi - lo)
    assert np.max(np.abs(cdf - np.arange(1, v.size + 1) / v.size)) < 0.04
    # log a_t = c r log σ(Λ), against float64 (float32 σ(Λ) near 1 would lose it).
    r = np.linspace(0.0, 1.0, 2000, dtype=np.float32)
    log_sigmoid = -np.log1p(np.exp(-np.asarray(layer.a_param[...], np.float64)))
    np.testing.assert_allclose(
        layer.log_a(jnp.asarray(r)), 8 * r * log_sigmoid, rtol=1e-5, atol=1e-9
    )
    np.testing.assert_array_equal(layer.gate_x_b[...], 0.0)


def test_sqrt_bounded_derivative():
    f = rglru.sqrt_bounded_derivative
    x = jnp.array([0.0, 1e-9, 2.5e-7, 0.01, 0.25, 1.0])
    np.testing.assert_array_equal(f(x, 1000.0), jnp.sqrt(x))
    grad = jax.vmap(jax.grad(f), in_axes=(0, None))(x, 1000.0)
    expected = np.where(x < 2.5e-7, 1000.0, 0.5 / np.sqrt(np.maximum(x, 2.5e-7)))
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    # Forward mode sees the same capped derivative.
    _, tangent = jax.jvp(lambda x: f(x, 1000.0), (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(tangent, expected, rtol=1e-5)


def test_gradients_finite_as_a_tends_to_one():
    """With ``a → 1`` the plain sqrt derivative blows up; the capped one does not."""
    x = checks.random_inputs((1, 6, H))

    def grad_a(max_sqrt_gradient):
        layer = make(normalize_at_reset=True, max_sqrt_gradient=max_sqrt_gradient)
        layer.a_param[...] = jnp.full((H,), 200.0)  # σ(Λ) = 1 in float32
        _, grads = checks.param_grads(layer, lambda m: (jnp.sum(m(x)), None))
        return np.asarray(grads["a_param"][...])

    assert np.all(np.isfinite(grad_a(1000.0)))
    assert not np.all(np.isfinite(grad_a(1e30)))  # effectively uncapped
