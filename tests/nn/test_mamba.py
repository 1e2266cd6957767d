"""Mamba (S6): protocol checks and a plain loop over time from the paper's equations."""

import math

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
import selective_mixer_checks as fast_checks
from flax import nnx

from seqjax.nn import mamba

F, N = 4, 3  # d_model, d_state; d_inner = 8, dt_rank = 1


def make(dtype=jnp.float32, **kw):
    kw.setdefault("chunk_size", 4)
    return mamba.Mamba(F, d_state=N, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def reference(m, x, segment_ids=None):
    """One step at a time, with an explicit convolution window and state:

    ``[x; z] = u W_in``, ``x̃ = SiLU(b_c + Σ_j w_j x_{t-k+1+j})``,
    ``[δ; B; C] = x̃ W_x``, ``Δ = softplus(δ W_Δ + b_Δ)``,
    ``h = exp(Δ A) h + (Δ x̃) Bᵀ``, ``y = h C + D x̃``, ``o = (y SiLU(z)) W_out``;
    the window and ``h`` are cleared where a document starts.
    """
    w_in = m.in_proj.kernel[...]
    w_conv, b_conv = m.conv.kernel[...], m.conv.bias[...]
    w_x = m.x_proj.kernel[...]
    w_dt, b_dt = m.dt_proj.kernel[...], m.dt_proj.bias[...]
    a = -jnp.exp(m.A_log[...])
    d_skip = m.D[...]
    w_out = m.out_proj.kernel[...]
    r, k, d_inner = m.dt_rank, w_conv.shape[0], w_conv.shape[1]
    batch, time, _ = x.shape
    if segment_ids is None:
        starts = jnp.zeros((batch, time), bool).at[:, 0].set(True)
    else:
        starts = jnp.concatenate(
            [
                jnp.ones((batch, 1), bool),
                segment_ids[:, 1:] != segment_ids[:, :-1],
            ],
            axis=1,
        )

    def step(carry, inputs):
        window, h = carry  # [batch, k-1, d_inner], [batch, d_inner, N]
        u_t, start = inputs
        window = jnp.where(start[:, None, None], 0.0, window)
        h = jnp.where(start[:, None, None], 0.0, h)
        xz = u_t @ w_in
        x_t, z_t = xz[:, :d_inner], xz[:, d_inner:]
        full = jnp.concatenate([window, x_t[:, None]], axis=1)
        conv = b_conv + sum(full[:, j] * w_conv[j] for j in range(k))
        xc = conv * jax.nn.sigmoid(conv)
        dbc = xc @ w_x
        delta = jax.nn.softplus(dbc[:, :r] @ w_dt + b_dt)
        b_t, c_t = dbc[:, r : r + N], dbc[:, r + N :]
        a_bar = jnp.exp(delta[:, :, None] * a)  # per-step diagonal transition
        h = a_bar * h + (delta * xc)[:, :, None] * b_t[:, None, :]
        y = jnp.sum(h * c_t[:, None, :], axis=-1) + d_skip * xc
        out = (y * z_t * jax.nn.sigmoid(z_t)) @ w_out
        return (full[:, 1:], h), out

    carry = (jnp.zeros((batch, k - 1, d_inner)), jnp.zeros((batch, d_inner, N)))
    _, ys = jax.lax.scan(step, carry, (jnp.swapaxes(x, 0, 1), starts.T))
    return jnp.swapaxes(ys, 0, 1)


T = 9  # one sequence length for most tests, so compiled functions are reused


def test_step_matches_parallel():
    checks.assert_step_matches_parallel(make(), checks.random_inputs((2, T, F)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, T, F)), t=5)


def test_resets_match_segments():
    x = checks.random_inputs((2, T, F))
    checks.assert_resets_match_segments(make(), x, [[4, 5], [5, 4]])


def test_values_and_grads_match_reference():
    """On a packed batch (the chunk forms themselves are compared, both intra-chunk
    methods, in ``test_selective_scan.py``)."""
    x = checks.random_inputs((2, T, F))
    ids = checks.packed_segment_ids([[3, 6], [7, 2]])
    fast_checks.assert_matches_reference(make(), x, reference, segment_ids=ids)


def test_jit_and_vmap():
    fast_checks.assert_jit_and_vmap(make(), checks.random_inputs((2, T, F)))


def test_bad_shapes_raise():
    checks.assert_bad_shapes_raise(make(), F)
    with pytest.raises(ValueError, match="d_state"):
        mamba.Mamba(F, d_state=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dt_init"):
        mamba.Mamba(F, dt_init="zeros", rngs=nnx.Rngs(0))


def test_initialisation_matches_paper():
    layer = nnx.jit(lambda: mamba.Mamba(48, rngs=nnx.Rngs(3)))()  # paper defaults
    d_inner, n = 96, 16
    assert layer.d_inner == d_inner and layer.d_state == n and layer.d_conv == 4
    assert layer.dt_rank == math.ceil(48 / 16)
    # S4D-Real: A = -(1, ..., N) for every channel.
    a = -np.exp(np.asarray(layer.A_log[...]))
    np.testing.assert_allclose(a, -np.tile(np.arange(1, n + 1), (d_inner, 1)), 1e-6)
    np.testing.assert_array_equal(layer.D[...], np.ones(d_inner))
    # softplus(dt bias) lies in [dt_min, dt_max] = [1e-3, 0.1], log-uniformly.
    dt = np.asarray(jax.nn.softplus(layer.dt_proj.bias[...]))
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert dt.min() < 3e-3 and dt.max() > 3e-2  # spread over the range
    bound = layer.dt_rank**-0.5
    w = np.asarray(layer.dt_proj.kernel[...])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.5 * bound
    floored = mamba._dt_bias_init(1e-6, 1e-5, dt_init_floor=1e-4)
    dt_floor = np.asarray(jax.nn.softplus(floored(jax.random.key(0), (8,))))
    np.testing.assert_allclose(dt_floor, 1e-4, rtol=1e-3)  # dt_init_floor
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(layer)))


def test_bfloat16():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, T, F)))
