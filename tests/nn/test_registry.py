"""Tests for seqjax.nn.registry: every registered mixer builds and runs; errors."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import conv, registry

BUILT_IN = (
    "conv",
    "gla",
    "lightnet",
    "lru",
    "mamba",
    "paragru",
    "paralstm",
    "rglru",
    "s4d",
    "s5",
)

# Small sizes where a mixer takes these options (others keep their defaults).
SMALL = {
    "state_size": 4,
    "d_state": 4,
    "blocks": 2,
    "heads": 2,
    "num_heads": 2,
    "kernel_size": 3,
}


def _tiny_options(name):
    valid = registry.mixer_options(name)
    if valid is None:
        return {}
    return {k: v for k, v in SMALL.items() if k in valid}


def test_all_built_in_names_are_registered():
    assert set(BUILT_IN) <= set(registry.mixer_names())


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_registered_mixer_builds_and_runs(name):
    module = registry.mixer_module(name)
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet (mixer {name!r} not written)")
    layer = registry.make_mixer(name, 8, rngs=nnx.Rngs(0), **_tiny_options(name))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 8)), jnp.float32)
    y = nnx.jit(lambda m, x: m(x))(layer, x)
    assert y.shape == (2, 5, 8)
    assert bool(jnp.all(jnp.isfinite(y)))
    # The recurrent interface is there (its equality with the parallel form is
    # tested per mixer in tests/nn/test_<mixer>.py).
    state = nnx.eval_shape(lambda m: m.step(m.init_state(2), x[:, 0]), layer)
    assert state[1].shape == (2, 8)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown mixer 'transformer'") as err:
        registry.make_mixer("transformer", 8, rngs=nnx.Rngs(0))
    for name in BUILT_IN:
        assert name in str(err.value)


def test_unknown_option_is_named_and_valid_ones_listed():
    with pytest.raises(TypeError) as err:
        registry.make_mixer("conv", 8, rngs=nnx.Rngs(0), kernel=3, width=2)
    message = str(err.value)
    assert "'kernel'" in message and "'width'" in message
    assert "kernel_size" in message and "valid options" in message
    with pytest.raises(TypeError, match="hidden_features"):
        registry.make_mixer("paragru", 8, rngs=nnx.Rngs(0), hidden=4)


def test_names_are_normalised():
    layer = nnx.eval_shape(lambda: registry.make_mixer("Conv", 4, rngs=nnx.Rngs(0)))
    assert isinstance(layer, conv.CausalConv1d)
    assert registry.get_mixer("CON-V") is conv.CausalConv1d
    with pytest.raises(TypeError, match="must be a str"):
        registry.make_mixer(3, 4, rngs=nnx.Rngs(0))


def test_paragru_hidden_defaults_to_features():
    if importlib.util.find_spec("seqjax.nn.pararnn") is None:
        pytest.skip("seqjax.nn.pararnn does not exist yet")
    assert "hidden_features" in registry.mixer_options("paragru")
    x = jax.ShapeDtypeStruct((1, 3, 6), jnp.float32)

    def out_shape(**options):
        layer = nnx.eval_shape(
            lambda: registry.make_mixer("paragru", 6, rngs=nnx.Rngs(0), **options)
        )
        return nnx.eval_shape(lambda m, x: m(x), layer, x).shape

    assert out_shape() == (1, 3, 6)
    assert out_shape(hidden_features=2) == (1, 3, 2)


def test_register_user_mixers():
    calls = []

    def factory(features, *, rngs, scale=1.0):
        calls.append(scale)
        return conv.CausalConv1d(features, kernel_size=2, rngs=rngs)

    try:
        registry.register_mixer("my_mixer", factory)
        layer = nnx.eval_shape(
            lambda: registry.make_mixer("my-mixer", 4, rngs=nnx.Rngs(0), scale=2.0)
        )
        assert isinstance(layer, conv.CausalConv1d) and calls == [2.0]
        assert registry.mixer_options("mymixer") == ("scale",)
        with pytest.raises(TypeError, match="'shift'.*valid options: scale"):
            registry.make_mixer("my_mixer", 4, rngs=nnx.Rngs(0), shift=1)
        with pytest.raises(ValueError, match="already registered"):
            registry.register_mixer("my_mixer", factory)
        registry.register_mixer(
            "my_mixer", "seqjax.nn.conv:CausalConv1d", overwrite=True
        )
        assert registry.get_mixer("my_mixer") is conv.CausalConv1d
        assert registry.mixer_module("my_mixer") == "seqjax.nn.conv"
    finally:
        registry.unregister_mixer("my_mixer")
    assert "mymixer" not in registry.mixer_names()
    with pytest.raises(ValueError, match="module:attribute"):
        registry.register_mixer("bad", "seqjax.nn.conv")
    with pytest.raises(TypeError, match="callable"):
        registry.register_mixer("bad", 3)


def test_missing_module_fails_alone_and_clearly():
    registry.register_mixer("ghost", "seqjax.nn.no_such_module:Ghost")
    try:
        with pytest.raises(ImportError, match="ghost.*no_such_module"):
            registry.make_mixer("ghost", 4, rngs=nnx.Rngs(0))
        assert registry.get_mixer("conv") is conv.CausalConv1d
        registry.register_mixer("ghost", "seqjax.nn.conv:Nope", overwrite=True)
        with pytest.raises(ImportError, match="no attribute 'Nope'"):
            registry.get_mixer("ghost")
    finally:
        registry.unregister_mixer("ghost")
