"""GatedLinearAttention: protocol checks and a plain loop from the paper's equations."""

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
import selective_mixer_checks as fast_checks
from flax import nnx

from seqjax.nn import gla

F, HEADS, T = 8, 2, 9  # d_k = 2 and d_v = 4 per head


def make(dtype=jnp.float32, **kw):
    kw.setdefault("chunk_size", 4)
    kw.setdefault("gate_low_rank_dim", 3)
    return gla.GatedLinearAttention(
        F, num_heads=HEADS, dtype=dtype, rngs=nnx.Rngs(0), **kw
    )


def reference(m, x, segment_ids=None):
    """Per head: ``α_t = σ(x_t W_α1 W_α2 + b_α)^{1/τ}``,
    ``S_t = diag(α_t) S_{t-1} + k_tᵀ v_t``, ``o_t = q_t S_t`` (``q`` scaled by
    ``d_k^{-1/2}``); then a per-head norm, ``⊙ Swish(x W_r)`` and ``W_O``. ``S`` is
    cleared where a document starts.
    """
    batch, time, _ = x.shape
    h = m.num_heads

    def heads(a):
        return a.reshape(batch, time, h, -1)

    q = heads(x @ m.q_proj.kernel[...]) / np.sqrt(m.head_k)
    k = heads(x @ m.k_proj.kernel[...])
    v = heads(x @ m.v_proj.kernel[...])
    gate = x @ m.gk_down.kernel[...] @ m.gk_up.kernel[...] + m.gk_up.bias[...]
    alpha = heads(jax.nn.sigmoid(gate) ** (1.0 / m.gate_logit_normalizer))
    if segment_ids is None:
        starts = jnp.zeros((batch, time), bool)
    else:
        starts = jnp.concatenate(
            [jnp.ones((batch, 1), bool), segment_ids[:, 1:] != segment_ids[:, :-1]],
            axis=1,
        )

    def step(s, inputs):
        q_t, k_t, v_t, a_t, start = inputs
        s = jnp.where(start[:, None, None, None], 0.0, s)
        s = a_t[..., :, None] * s + k_t[..., :, None] * v_t[..., None, :]
        return s, jnp.einsum("bhi,bhij->bhj", q_t, s)

    s0 = jnp.zeros((batch, h, m.head_k, m.head_v))
    inputs = tuple(jnp.swapaxes(a, 0, 1) for a in (q, k, v, alpha, starts))
    _, o = jax.lax.scan(step, s0, inputs)
    o = jnp.swapaxes(o, 0, 1)  # [batch, time, heads, d_v]
    if m.norm == "layernorm":
        o = o - o.mean(-1, keepdims=True)
    o = o / jnp.sqrt(jnp.mean(o**2, -1, keepdims=True) + m.norm_eps)
    o = o * m.norm_scale[...]
    if m.norm_bias is not None:
        o = o + m.norm_bias[...]
    o = o.reshape(batch, time, -1)
    if m.g_proj is not None:
        r = x @ m.g_proj.kernel[...]
        o = o * r * jax.nn.sigmoid(r)
    return o @ m.o_proj.kernel[...]


def test_step_matches_parallel():
    checks.assert_step_matches_parallel(make(), checks.random_inputs((2, T, F)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, T, F)), t=4)


def test_resets_match_segments():
    x = checks.random_inputs((2, T, F))
    checks.assert_resets_match_segments(make(), x, [[4, 5], [5, 4]])


@pytest.mark.parametrize("norm, packed", [("rmsnorm", True), ("layernorm", False)])
def test_values_and_grads_match_reference(norm, packed):
    x = checks.random_inputs((2, T, F))
    kw = {}
    if packed:
        kw["segment_ids"] = checks.packed_segment_ids([[3, 6], [7, 2]])
    fast_checks.assert_matches_reference(make(norm=norm), x, reference, **kw)


def test_without_output_gate():
    layer = make(use_output_gate=False)
    x = checks.random_inputs((2, T, F))
    np.testing.assert_allclose(
        checks.apply(layer, x), reference(layer, x), rtol=1e-5, atol=1e-5
    )


def test_jit_and_vmap():
    fast_checks.assert_jit_and_vmap(make(), checks.random_inputs((2, T, F)))


def test_bad_shapes_raise():
    checks.assert_bad_shapes_raise(make(), F)
    with pytest.raises(ValueError, match="num_heads"):
        gla.GatedLinearAttention(F, num_heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="norm"):
        gla.GatedLinearAttention(F, norm="batchnorm", rngs=nnx.Rngs(0))


def test_paper_defaults():
    """d_k = d/2 and d_v = d over 4 heads, a rank-16 gate, τ = 16."""
    layer = nnx.eval_shape(lambda: gla.GatedLinearAttention(64, rngs=nnx.Rngs(0)))
    assert (layer.num_heads, layer.head_k, layer.head_v) == (4, 8, 16)
    assert layer.gk_down.kernel.shape == (64, 16)
    assert layer.gk_up.kernel.shape == (16, 32)
    assert layer.gate_logit_normalizer == 16.0
    assert layer.g_proj.kernel.shape == (64, 64)


def test_bfloat16():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, T, F)))
