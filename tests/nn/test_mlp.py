"""Tests for seqjax.nn.mlp: MLP, GLU and SwiGLU against their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import mlp


def _x(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _dense(layer, x):
    return x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])


def test_mlp_matches_formula_and_grads():
    layer = mlp.MLP(4, hidden_features=6, out_features=3, rngs=nnx.Rngs(0))
    x = _x((2, 5, 4), 1)
    want = _dense(layer.down, jax.nn.gelu(_dense(layer.up, x), approximate=False))
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.step(x[:, 0]), want[:, 0], rtol=1e-5, atol=1e-6)
    assert layer.up.out_features == 6

    def ref(params, x):
        h = jax.nn.gelu(x @ params["up"]["kernel"] + params["up"]["bias"], False)
        return jnp.sum((h @ params["down"]["kernel"] + params["down"]["bias"]) ** 2)

    params = nnx.to_pure_dict(nnx.state(layer, nnx.Param))
    grads = nnx.to_pure_dict(nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer))
    want_grads = jax.grad(ref)(params, x)
    assert jax.tree.structure(grads) == jax.tree.structure(want_grads)
    for got, exp in zip(
        jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True
    ):
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "cls, act",
    [(mlp.GLU, jax.nn.sigmoid), (mlp.SwiGLU, jax.nn.silu)],
)
def test_glu_variants_match_formula(cls, act):
    layer = cls(4, hidden_features=5, rngs=nnx.Rngs(0))
    x = _x((3, 4), 2)
    h = act(_dense(layer.gate, x)) * _dense(layer.value, x)
    np.testing.assert_allclose(layer(x), _dense(layer.out, h), rtol=1e-5, atol=1e-6)


def test_glu_without_out_proj_and_defaults():
    layer = mlp.GLU(4, use_out_proj=False, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4))
    want = jax.nn.sigmoid(_dense(layer.gate, x)) * _dense(layer.value, x)
    np.testing.assert_allclose(layer(x), want, rtol=1e-6)
    swiglu = nnx.eval_shape(lambda: mlp.SwiGLU(12, rngs=nnx.Rngs(0)))
    assert swiglu.gate.out_features == 32  # 8/3·12 → ×8
    assert nnx.eval_shape(lambda: mlp.MLP(3, rngs=nnx.Rngs(0))).up.out_features == 12
    assert mlp.make_channel_mixer(None, 4, rngs=nnx.Rngs(0)) is None


def test_mlp_dtype():
    layer = mlp.SwiGLU(4, hidden_features=5, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert layer(jnp.ones((2, 4))).dtype == jnp.bfloat16
    assert layer.gate.kernel[...].dtype == jnp.float32


def test_mlp_errors():
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\].*\(2, 3\)"):
        mlp.MLP(4, rngs=nnx.Rngs(0))(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="use_out_proj=False"):
        mlp.GLU(4, hidden_features=6, use_out_proj=False, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="activation"):
        mlp.MLP(4, activation="nope", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mlp must be one of"):
        mlp.make_channel_mixer("ffn", 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="hidden_features"):
        mlp.MLP(4, hidden_features=0, rngs=nnx.Rngs(0))
