"""S4D: protocol checks, a per-step reference with explicit ZOH matrices, inits."""

import math

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from seqjax.nn import s4d

H, N = 3, 6


def make(dtype=jnp.float32, **kw):
    return s4d.S4D(H, state_size=N, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def reference(m, x, segment_ids=None):
    """Channel-by-channel SSM with explicit discretised matrices, by ``lax.scan``.

    For channel ``c``: ``Ā_c = diag(exp(Δ_c A_c))`` (``N/2 x N/2``),
    ``B̄_c = A_c^{-1}(Ā_c - I) B_c`` (``N/2 x 1``), ``h ← Ā_c h + B̄_c x``,
    ``y = 2 Re(C_c h) + D_c x``.
    """
    dt = jnp.exp(m.log_dt[...])
    a = -jnp.exp(m.log_a_real[...]) + 1j * m.a_imag[...]
    b = m.B_re[...] + 1j * m.B_im[...]
    c = m.C_re[...] + 1j * m.C_im[...]
    eye = jnp.eye(N // 2)
    a_mats, b_mats = [], []
    for ch in range(H):
        a_mat = jnp.diag(a[ch])
        if m.discretization == "zoh":
            a_bar = jnp.diag(jnp.exp(dt[ch] * a[ch]))
            b_bar = jnp.linalg.solve(a_mat, a_bar - eye) @ b[ch][:, None]
        else:
            inv = jnp.linalg.inv(eye - dt[ch] / 2 * a_mat)
            a_bar = inv @ (eye + dt[ch] / 2 * a_mat)
            b_bar = dt[ch] * inv @ b[ch][:, None]
        a_mats.append(a_bar)
        b_mats.append(b_bar)
    a_bar, b_bar = jnp.stack(a_mats), jnp.stack(b_mats)  # [H, n, n], [H, n, 1]
    starts = _starts(segment_ids, x)

    def step(h, inputs):  # h: [batch, H, n]
        x_t, start = inputs
        h = jnp.where(start[:, None, None], 0.0, h)
        h = jnp.einsum("cij,bcj->bci", a_bar, h) + jnp.einsum(
            "cij,bcj->bci", b_bar, x_t[..., None]
        )
        y = 2 * jnp.real(jnp.einsum("cn,bcn->bc", c, h)) + m.D[...] * x_t
        return h, y

    h0 = jnp.zeros((x.shape[0], H, N // 2), jnp.complex64)
    _, ys = jax.lax.scan(step, h0, (jnp.swapaxes(x, 0, 1), starts.T))
    return jnp.swapaxes(ys, 0, 1)


def _starts(segment_ids, x):
    if segment_ids is None:
        return jnp.zeros(x.shape[:2], bool)
    first = jnp.ones_like(segment_ids[:, :1], bool)
    return jnp.concatenate([first, segment_ids[:, 1:] != segment_ids[:, :-1]], 1)


@pytest.mark.parametrize(
    "init, method", [("lin", "auto"), ("inv", "associative"), ("real", "chunked")]
)
def test_step_matches_parallel(init, method):
    layer = make(init=init, method=method, dt_min=0.05, dt_max=0.5)
    checks.assert_step_matches_parallel(layer, checks.random_inputs((2, 9, H)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, 8, H)), t=3)


def test_resets_match_segments():
    checks.assert_resets_match_segments(
        make(dt_min=0.05, dt_max=0.5),
        checks.random_inputs((2, 9, H)),
        [[3, 3, 3], [6, 3]],
    )


@pytest.mark.parametrize("mode", ["convolution", "recurrence"])
@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_values_and_param_grads_match_reference(discretization, mode):
    layer = make(
        init="inv", discretization=discretization, mode=mode, dt_min=0.05, dt_max=0.5
    )
    x = checks.random_inputs((2, 7, H))
    checks.assert_grads_match_reference(layer, x, reference)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_resets_match_reference(discretization):
    """Row 0 is packed (resets, so the recurrence); row 1 is one plain sequence."""
    layer = make(init="inv", discretization=discretization, dt_min=0.05, dt_max=0.5)
    x = checks.random_inputs((2, 7, H))
    ids = checks.packed_segment_ids([[2, 5], [7]])
    checks.assert_grads_match_reference(layer, x, reference, segment_ids=ids)


@pytest.mark.parametrize("length", [1, 2, 37, 300])
@pytest.mark.parametrize(
    "init, discretization", [("lin", "zoh"), ("inv", "bilinear"), ("real", "zoh")]
)
def test_convolution_equals_recurrence(init, discretization, length):
    """The FFT kernel form and the linear_scan form: same outputs and input grads."""
    layers = {
        mode: s4d.S4D(
            8,
            state_size=16,
            init=init,
            discretization=discretization,
            mode=mode,
            rngs=nnx.Rngs(3),
        )  # fmt: skip
        for mode in ("convolution", "recurrence")
    }
    x = checks.random_inputs((2, length, 8))
    out = {m: layer(x) for m, layer in layers.items()}
    scale = float(jnp.max(jnp.abs(out["recurrence"])))
    np.testing.assert_allclose(
        out["convolution"], out["recurrence"], atol=2e-6 * scale * math.sqrt(length)
    )
    grads = {
        m: jax.grad(lambda x, layer=layer: jnp.sum(jnp.sin(layer(x))))(x)
        for m, layer in layers.items()
    }
    np.testing.assert_allclose(
        grads["convolution"], grads["recurrence"], rtol=1e-4, atol=1e-4
    )


def test_kernel_is_the_impulse_response():
    """``K_l`` is the output at step l of the recurrence fed a unit impulse."""
    layer = make(init="lin", mode="recurrence", dt_min=0.05, dt_max=0.5)
    impulse = jnp.zeros((1, 12, H)).at[0, 0].set(1.0)
    response = layer(impulse)[0] - layer.D[...] * impulse[0]
    np.testing.assert_allclose(layer.kernel(12), response, rtol=1e-5, atol=1e-6)


def test_zoh_matches_matrix_exponential():
    """ZOH of the block ``[[A, B], [0, 0]]``: ``expm`` gives ``(Ā, B̄)`` exactly."""
    layer = make(init="lin")
    a_bar, b_bar = layer.discretized()
    a = np.asarray(layer.continuous(), np.complex128)
    b = np.asarray(layer.B_re[...] + 1j * layer.B_im[...], np.complex128)
    dt = np.exp(np.asarray(layer.log_dt[...], np.float64))
    for ch in range(H):
        block = np.zeros((N // 2 + 1, N // 2 + 1), np.complex128)
        block[: N // 2, : N // 2] = np.diag(a[ch])
        block[: N // 2, -1] = b[ch]
        e = scipy.linalg.expm(dt[ch] * block)
        np.testing.assert_allclose(a_bar[ch], np.diag(e)[: N // 2], rtol=1e-5)
        np.testing.assert_allclose(b_bar[ch], e[: N // 2, -1], rtol=1e-4, atol=1e-7)


def test_jit_and_vmap():
    checks.assert_jit_and_vmap(make(), checks.random_inputs((2, 6, H)))
    checks.assert_traceable_init(make)


def test_bad_shapes_and_hyperparameters():
    checks.assert_bad_shapes_raise(make(), H)
    with pytest.raises(ValueError, match="method"):
        make(method="fast")
    with pytest.raises(ValueError, match="even"):
        s4d.S4D(H, state_size=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="init"):
        make(init="legs")
    with pytest.raises(ValueError, match="discretization"):
        make(discretization="euler")
    with pytest.raises(ValueError, match="dt_min"):
        make(dt_min=0.2, dt_max=0.1)
    with pytest.raises(ValueError, match="mode='fft'"):
        make(mode="fft")
    x = checks.random_inputs((2, 6, H))
    with pytest.raises(ValueError, match="cannot restart the state at segment_ids"):
        make(mode="convolution")(x, segment_ids=jnp.zeros((2, 6), jnp.int32))


def test_bfloat16_close_to_float32():
    make_fast = lambda dtype: make(dtype, dt_min=0.05, dt_max=0.5)
    checks.assert_bfloat16_close(make_fast, checks.random_inputs((2, 16, H)))


@pytest.mark.parametrize("init", ["lin", "inv", "real"])
def test_initialisations(init):
    n_state, h = 16, 5
    layer = s4d.S4D(h, state_size=n_state, init=init, rngs=nnx.Rngs(2))
    a = np.asarray(layer.continuous())
    n = np.arange(n_state // 2)
    if init == "lin":
        expected = -0.5 + 1j * math.pi * n
    elif init == "inv":
        expected = -0.5 + 1j * (n_state / math.pi) * (n_state / (2 * n + 1) - 1)
    else:
        expected = -(n + 1.0) + 0j
    np.testing.assert_allclose(a, np.broadcast_to(expected, (h, n_state // 2)), 1e-6)
    dt = np.exp(np.asarray(layer.log_dt[...]))
    assert dt.shape == (h,) and np.all((dt >= 1e-3) & (dt <= 1e-1))
    np.testing.assert_array_equal(layer.B_re[...], 1.0)
    np.testing.assert_array_equal(layer.B_im[...], 0.0)
