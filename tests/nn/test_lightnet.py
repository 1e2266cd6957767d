"""LightNet: protocol checks and the paper's unnormalised sums in a plain loop."""

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
import selective_mixer_checks as fast_checks
from flax import nnx

from seqjax.nn import lightnet

F, HEADS, T = 8, 2, 9


def make(dtype=jnp.float32, **kw):
    kw.setdefault("chunk_size", 4)
    return lightnet.LightNet(
        F,
        num_heads=HEADS,
        head_k_dim=3,
        gate_low_rank_dim=2,
        dtype=dtype,
        rngs=nnx.Rngs(0),
        **kw,
    )


def reference(m, x, segment_ids=None):
    """Per head ``S_t = S_{t-1} + exp(k_t)ᵀ v_t``, ``Z_t = Z_{t-1} + exp(k_t)``,
    ``o_t = q_t (S_t / Z_t)`` with ``q = SiLU(x W_q) d_k^{-1/2}``; then RMSNorm,
    ``⊙ SiLU(x W_g1 W_g2)`` and ``W_o``. ``S`` and ``Z`` restart at a document start.
    """
    batch, time, _ = x.shape

    def heads(a):
        return a.reshape(batch, time, m.num_heads, -1)

    q = heads(jax.nn.silu(x @ m.q_proj.kernel[...])) / np.sqrt(m.head_k)
    k = heads(x @ m.k_proj.kernel[...])
    v = heads(x @ m.v_proj.kernel[...])
    if segment_ids is None:
        starts = jnp.zeros((batch, time), bool)
    else:
        starts = jnp.concatenate(
            [jnp.ones((batch, 1), bool), segment_ids[:, 1:] != segment_ids[:, :-1]],
            axis=1,
        )

    def step(carry, inputs):
        s, z = carry
        q_t, k_t, v_t, start = inputs
        s = jnp.where(start[:, None, None, None], 0.0, s)
        z = jnp.where(start[:, None, None], 0.0, z)
        s = s + jnp.exp(k_t)[..., :, None] * v_t[..., None, :]
        z = z + jnp.exp(k_t)
        return (s, z), jnp.einsum("bhi,bhij->bhj", q_t, s / z[..., None])

    carry = (
        jnp.zeros((batch, m.num_heads, m.head_k, m.head_v)),
        jnp.zeros((batch, m.num_heads, m.head_k)),
    )
    inputs = tuple(jnp.swapaxes(a, 0, 1) for a in (q, k, v, starts))
    _, o = jax.lax.scan(step, carry, inputs)
    o = jnp.swapaxes(o, 0, 1).reshape(batch, time, -1)
    o = o / jnp.sqrt(jnp.mean(o**2, -1, keepdims=True) + m.norm_eps)
    o = o * m.norm_scale[...]
    o = o * jax.nn.silu(x @ m.g_down.kernel[...] @ m.g_up.kernel[...])
    return o @ m.o_proj.kernel[...]


def test_step_matches_parallel():
    checks.assert_step_matches_parallel(make(), checks.random_inputs((2, T, F)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, T, F)), t=4)


def test_resets_match_segments():
    x = checks.random_inputs((2, T, F))
    checks.assert_resets_match_segments(make(), x, [[4, 5], [5, 4]])


def test_values_and_grads_match_reference():
    x = checks.random_inputs((2, T, F))
    ids = checks.packed_segment_ids([[3, 6], [7, 2]])
    fast_checks.assert_matches_reference(make(), x, reference, segment_ids=ids)


def test_large_keys_stay_finite():
    """Keys of size ~±100 overflow ``exp(k)`` in the naive sums, not here."""
    layer = make()
    layer.k_proj.kernel[...] = layer.k_proj.kernel[...] * 60.0
    x = checks.random_inputs((2, T, F))
    y = checks.apply(layer, x)
    assert np.all(np.isfinite(y))
    k = x @ layer.k_proj.kernel[...]
    assert np.max(np.abs(k)) > 89.0  # exp(k) would overflow float32
    checks.assert_step_matches_parallel(layer, x, rtol=1e-4, atol=1e-4)


def test_segment_logcumsumexp():
    rng = np.random.default_rng(0)
    k = rng.standard_normal((2, 7, 3)) * 5
    starts = np.zeros((2, 7), bool)
    starts[:, 0] = True
    starts[0, 3] = starts[1, 5] = True
    z = jax.jit(lightnet.segment_logcumsumexp)(jnp.asarray(k), jnp.asarray(starts))
    expected = np.zeros_like(k)
    for b in range(2):
        first = 0
        for t in range(7):
            first = t if starts[b, t] else first
            expected[b, t] = np.log(np.sum(np.exp(k[b, first : t + 1]), axis=0))
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)


def test_jit_and_vmap():
    fast_checks.assert_jit_and_vmap(make(), checks.random_inputs((2, T, F)))


def test_bad_shapes_raise():
    checks.assert_bad_shapes_raise(make(), F)
    with pytest.raises(ValueError, match="num_heads"):
        lightnet.LightNet(F, num_heads=3, rngs=nnx.Rngs(0))


def test_reference_defaults():
    layer = nnx.eval_shape(lambda: lightnet.LightNet(256, rngs=nnx.Rngs(0)))
    assert (layer.num_heads, layer.head_k, layer.head_v) == (2, 128, 128)
    assert layer.g_down.kernel.shape == (256, 128)
    state = layer.init_state(3)
    assert state.state.shape == (3, 2, 128, 128)
    assert state.log_normalizer.shape == (3, 2, 128)
    assert np.all(np.isneginf(state.log_normalizer))


def test_bfloat16():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, T, F)))
