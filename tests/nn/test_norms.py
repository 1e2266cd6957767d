"""Tests for seqjax.nn.norms: formulas, masking, train/eval modes, step, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import block, norms


def _x(shape, seed=0):
    x = np.random.default_rng(seed).normal(size=shape) * 2.0 + 0.5
    return jnp.asarray(x, jnp.float32)


def test_rmsnorm_matches_formula_and_step():
    norm = norms.RMSNorm(6, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.arange(1.0, 7.0)
    x = _x((2, 3, 6))
    xn = np.asarray(x, np.float64)
    want = xn / np.sqrt((xn**2).mean(-1, keepdims=True) + 1e-6) * np.arange(1.0, 7.0)
    np.testing.assert_allclose(norm(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.step(x[:, 1]), want[:, 1], rtol=1e-5, atol=1e-6)


def test_layernorm_matches_formula():
    norm = norms.LayerNorm(6, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.linspace(0.5, 2.0, 6)
    norm.bias[...] = jnp.linspace(-1.0, 1.0, 6)
    x = _x((2, 3, 6))
    xn = np.asarray(x, np.float64)
    mu, var = xn.mean(-1, keepdims=True), xn.var(-1, keepdims=True)
    want = (xn - mu) / np.sqrt(var + 1e-6) * np.linspace(0.5, 2.0, 6) + np.linspace(
        -1.0, 1.0, 6
    )
    np.testing.assert_allclose(norm(x), want, rtol=1e-5, atol=1e-5)


def test_norm_dtype_follows_dtype():
    for kind in ("rmsnorm", "layernorm", "batchnorm"):
        norm = norms.make_norm(kind, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert norm(jnp.ones((2, 3, 4))).dtype == jnp.bfloat16
        assert all(
            v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(norm, nnx.Param))
        )


def test_batchnorm_train_uses_masked_batch_stats_and_updates_running():
    bn = norms.BatchNorm(3, momentum=0.8, rngs=nnx.Rngs(0))
    x = _x((2, 5, 3))
    mask = jnp.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool)
    y = bn(x, mask=mask)
    real = np.asarray(x)[np.asarray(mask)]  # [7, 3]: only real positions count
    mu, var = real.mean(0), real.var(0)
    want = (np.asarray(x) - mu) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.mean[...], 0.2 * mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], 0.8 + 0.2 * var, rtol=1e-5)
    # Padded values do not change the statistics nor the real outputs.
    x2 = jnp.where(mask[..., None], x, 100.0)
    bn2 = norms.BatchNorm(3, momentum=0.8, rngs=nnx.Rngs(0))
    y2 = bn2(x2, mask=mask)
    np.testing.assert_allclose(
        np.asarray(y2)[np.asarray(mask)], np.asarray(y)[np.asarray(mask)], rtol=1e-5
    )
    np.testing.assert_allclose(bn2.mean[...], bn.mean[...], rtol=1e-6)


def test_batchnorm_eval_uses_running_stats_and_does_not_update():
    bn = norms.BatchNorm(3, rngs=nnx.Rngs(0))
    bn(_x((4, 6, 3), seed=1))  # one training update
    mean, var = np.asarray(bn.mean[...]), np.asarray(bn.var[...])
    assert not np.allclose(mean, 0.0)
    bn.eval()
    x = _x((2, 5, 3), seed=2)
    y = bn(x)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5)
    np.testing.assert_array_equal(bn.mean[...], mean)  # no update in eval mode
    np.testing.assert_array_equal(bn.var[...], var)
    bn.train()
    y_train = bn(x)
    assert not np.allclose(y_train, y)  # back to batch statistics
    assert not np.allclose(bn.mean[...], mean)


def test_batchnorm_step_uses_running_stats_in_any_mode():
    bn = norms.BatchNorm(3, rngs=nnx.Rngs(0))
    bn(_x((4, 6, 3), seed=1))
    mean, var = np.asarray(bn.mean[...]), np.asarray(bn.var[...])
    x_t = _x((2, 3), seed=3)
    want = (x_t - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(bn.step(x_t), want, rtol=1e-5)  # train mode
    np.testing.assert_array_equal(bn.mean[...], mean)
    bn.eval()
    np.testing.assert_allclose(bn.step(x_t), want, rtol=1e-5)


def test_block_with_batchnorm_steps_like_eval_parallel():
    net = block.Backbone(4, 2, "conv", norm="batchnorm", mlp="glu", rngs=nnx.Rngs(0))
    x = _x((3, 6, 4))
    net(x)  # train mode: updates the running statistics
    net.eval()
    y = net(x)
    state, outs = net.init_state(3), []
    for t in range(6):
        state, y_t = net.step(state, x[:, t])
        outs.append(y_t)
    np.testing.assert_allclose(jnp.stack(outs, 1), y, rtol=1e-5, atol=1e-5)


def test_norm_errors():
    with pytest.raises(ValueError, match="norm must be one of"):
        norms.make_norm("groupnorm", 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"4 features.*\(2, 3\)"):
        norms.RMSNorm(4, rngs=nnx.Rngs(0))(jnp.ones((2, 3)))
    bn = norms.BatchNorm(4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mask must have shape"):
        bn(jnp.ones((2, 3, 4)), mask=jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match="momentum"):
        norms.BatchNorm(4, momentum=1.5, rngs=nnx.Rngs(0))
    assert isinstance(norms.make_norm(None, 4, rngs=nnx.Rngs(0)), norms.Identity)
