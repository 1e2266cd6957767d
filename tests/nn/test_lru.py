"""LRU: protocol checks and a per-step reference written from the paper's equations."""

import math

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import lru
from seqjax.scan import linear_scan

H, N = 3, 4


def make(dtype=jnp.float32, **kw):
    return lru.LRU(H, state_size=N, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def reference(m, x, segment_ids=None):
    """``h_t = A h_{t-1} + B̄ x_t``, ``y_t = Re(C h_t) + D x_t`` with dense matrices.

    ``A = diag(exp(-exp(ν_log) + i exp(θ_log)))`` and ``B̄ = diag(γ) B`` are built as
    explicit ``N x N`` and ``N x H`` matrices and applied by ``jax.lax.scan``.
    """
    nu = jnp.exp(m.nu_log[...])
    theta = jnp.exp(m.theta_log[...])
    a_mat = jnp.diag(jnp.exp(-nu + 1j * theta))
    b_bar = jnp.diag(jnp.exp(m.gamma_log[...])) @ (m.B_re[...] + 1j * m.B_im[...])
    c = m.C_re[...] + 1j * m.C_im[...]
    d = m.D[...]
    if segment_ids is None:
        starts = jnp.zeros(x.shape[:2], bool)
    else:
        starts = jnp.concatenate(
            [
                jnp.ones_like(segment_ids[:, :1], bool),
                segment_ids[:, 1:] != segment_ids[:, :-1],
            ],
            1,
        )

    def step(h, inputs):
        x_t, start = inputs
        h = jnp.where(start[:, None], 0.0, h)
        h = h @ a_mat.T + x_t @ b_bar.T
        return h, jnp.real(h @ c.T) + d * x_t

    h0 = jnp.zeros((x.shape[0], N), jnp.complex64)
    _, ys = jax.lax.scan(step, h0, (jnp.swapaxes(x, 0, 1), starts.T))
    return jnp.swapaxes(ys, 0, 1)


@pytest.mark.parametrize("method", ["auto", "associative"])
def test_step_matches_parallel(method):
    checks.assert_step_matches_parallel(
        make(method=method), checks.random_inputs((2, 9, H))
    )


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, 8, H)), t=4)


def test_resets_match_segments():
    checks.assert_resets_match_segments(
        make(), checks.random_inputs((2, 9, H)), [[3, 3, 3], [6, 3]]
    )


def test_values_and_param_grads_match_reference():
    x = checks.random_inputs((2, 7, H))
    checks.assert_grads_match_reference(make(), x, reference)
    # Row 0 is packed (resets); row 1 is one plain sequence.
    ids = checks.packed_segment_ids([[2, 5], [7]])
    checks.assert_grads_match_reference(make(), x, reference, segment_ids=ids)


def test_jit_and_vmap():
    checks.assert_jit_and_vmap(make(), checks.random_inputs((2, 6, H)))
    checks.assert_traceable_init(make)


def test_bad_shapes_and_hyperparameters():
    checks.assert_bad_shapes_raise(make(), H)
    with pytest.raises(ValueError, match="method"):
        make(method="fast")
    with pytest.raises(ValueError, match="r_max"):
        make(r_min=0.5, r_max=1.0)
    with pytest.raises(ValueError, match="r_min"):
        make(r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="max_phase"):
        make(max_phase=0.0)
    with pytest.raises(ValueError, match="state_size"):
        lru.LRU(H, state_size=0, rngs=nnx.Rngs(0))


def test_bfloat16_close_to_float32():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, 16, H)))


def test_ring_initialisation():
    r_min, r_max, max_phase = 0.4, 0.95, math.pi / 10
    layer = lru.LRU(
        2,
        state_size=4000,
        r_min=r_min,
        r_max=r_max,
        max_phase=max_phase,
        rngs=nnx.Rngs(3),
    )
    lam = np.asarray(layer.eigenvalues())
    radius, phase = np.abs(lam), np.exp(np.asarray(layer.theta_log[...]))
    assert radius.min() >= r_min - 1e-6 and radius.max() <= r_max + 1e-6
    assert phase.min() > 0 and phase.max() <= max_phase * (1 + 1e-6)
    # Uniform by area on the ring: |λ|² ~ U(r_min², r_max²); phase ~ U(0, max_phase).
    r2 = np.sort(radius**2)
    cdf = (r2 - r_min**2) / (r_max**2 - r_min**2)
    assert np.max(np.abs(cdf - np.arange(1, r2.size + 1) / r2.size)) < 0.03
    ph = np.sort(phase) / max_phase
    assert np.max(np.abs(ph - np.arange(1, ph.size + 1) / ph.size)) < 0.03
    # γ normalisation starts at sqrt(1 - |λ|²).
    gamma = np.exp(np.asarray(layer.gamma_log[...]))
    np.testing.assert_allclose(gamma, np.sqrt(1 - radius**2), rtol=1e-4)
    # B, C, D scales from the paper's appendix code.
    np.testing.assert_allclose(np.std(np.asarray(layer.C_re[...])), 1 / 4000**0.5, 0.1)
    np.testing.assert_allclose(np.std(np.asarray(layer.B_im[...])), (1 / 4) ** 0.5, 0.1)


def test_gamma_normalisation_keeps_state_scale():
    """With γ, white-noise inputs give E|h_j|² ≈ E|(Bx)_j|² even for |λ| → 1."""
    layer = lru.LRU(4, state_size=16, r_min=0.95, r_max=0.99, rngs=nnx.Rngs(1))
    x = checks.random_inputs((16, 800, 4), seed=5)
    bx = x @ (layer.B_re[...] + 1j * layer.B_im[...]).T
    h = linear_scan(layer.eigenvalues()[None, None], layer._inputs(x), axis=1)
    ratio = np.mean(np.abs(h[:, -1]) ** 2, 0) / np.mean(np.abs(bx) ** 2, (0, 1))
    assert abs(np.mean(ratio) - 1.0) < 0.2, ratio
    # Without γ the state would be 1 / (1 - |λ|²) >= 10 times larger.
    assert np.all(1 / (1 - np.abs(layer.eigenvalues()) ** 2) > 10)
