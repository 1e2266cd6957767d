"""Tests for seqjax.nn.block: Block, Backbone, Bidirectional, on real seqjax mixers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import block, norms, registry

F = 6
TINY = {
    "lru": {"state_size": 4},
    "s4d": {"state_size": 4},
    "conv": {"kernel_size": 3},
}


def _x(shape, seed=0):
    """Test inputs as NumPy arrays: slicing them compiles nothing."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _numpy(fn):
    """``fn`` under ``nnx.jit``, returning NumPy (cheap slicing in assertions)."""
    jitted = nnx.jit(fn)
    return lambda *args, **kw: np.asarray(jitted(*args, **kw))


@_numpy
def _steps(layer, x):
    """Steps through ``x`` with ``layer.step`` (a ``lax.scan`` over time)."""

    def body(state, x_t):
        return layer.step(state, x_t)

    _, ys = jax.lax.scan(body, layer.init_state(x.shape[0]), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


@_numpy
def _call(layer, x, segment_ids=None, mask=None):
    """The parallel form under ``nnx.jit`` (compiles faster than eager op by op)."""
    if mask is None:
        return layer(x, segment_ids=segment_ids)
    return layer(x, segment_ids=segment_ids, mask=mask)


@_numpy
def _mix(mixer, x):
    return mixer(x)


def _backbone(mixer, depth=1, **kw):
    options = (
        [TINY[m] for m in mixer] if isinstance(mixer, list) else TINY.get(mixer, {})
    )
    return block.Backbone(
        F, depth, mixer, mixer_options=options, rngs=nnx.Rngs(0), **kw
    )


CONFIGS = [
    ("lru", dict(norm="rmsnorm", mlp="mlp")),
    ("s4d", dict(norm="layernorm", mlp="swiglu", conv_width=3)),
    (["lru", "s4d"], dict(norm="rmsnorm", mlp="mlp", conv_width=2)),
]
IDS = ["lru", "s4d+conv", "lru,s4d+conv"]


@pytest.mark.parametrize("mixer, kw", CONFIGS, ids=IDS)
def test_step_equals_parallel_and_causal(mixer, kw):
    depth = 2 if isinstance(mixer, list) else 1
    net = _backbone(mixer, depth, **kw)
    x = _x((2, 7, F))
    y = _call(net, x)
    np.testing.assert_allclose(_steps(net, x), y, rtol=2e-5, atol=2e-5)
    x2 = x.copy()
    x2[:, 4:] = _x((2, 3, F), seed=5)
    y2 = _call(net, x2)
    # Causal up to float rounding: S4D's FFT convolution mixes every position's
    # rounding (~1e-7 here), while a real dependence on the changed inputs is O(1).
    np.testing.assert_allclose(y[:, :4], y2[:, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y[:, 4:], y2[:, 4:])


def test_block_is_prenorm_residual_composition():
    blk = block.Block(
        F, "lru", mixer_options=TINY["lru"], conv_width=3, mlp="mlp", rngs=nnx.Rngs(1)
    )
    x = _x((2, 5, F))
    u = x + _mix(blk.mixer, blk.conv(blk.norm1(x)))
    want = u + blk.mlp(blk.norm2(u))
    np.testing.assert_allclose(_call(blk, x), want, rtol=1e-5, atol=1e-6)
    assert isinstance(blk.norm1, norms.RMSNorm)
    bare = block.Block(F, "s4d", mixer_options=TINY["s4d"], mlp=None, rngs=nnx.Rngs(1))
    assert bare.norm2 is None and bare.mlp is None
    np.testing.assert_allclose(
        _call(bare, x), x + _mix(bare.mixer, bare.norm1(x)), rtol=1e-5, atol=1e-6
    )


def test_packed_segments_equal_separate_runs():
    net = _backbone(["lru", "s4d"], 2, conv_width=3, mlp="mlp")
    a, b = _x((1, 4, F), 1), _x((1, 5, F), 2)
    packed = np.concatenate([a, b], axis=1)
    ids = np.array([[0] * 4 + [1] * 5])
    y = _call(net, packed, segment_ids=ids)
    # The segments run separately, as one batch (a right-padded: causal, so the
    # padding cannot reach a's outputs).
    alone = _call(net, np.concatenate([np.pad(a, ((0, 0), (0, 1), (0, 0))), b]))
    np.testing.assert_allclose(y[:, :4], alone[:1, :4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[:, 4:], alone[1:], rtol=1e-5, atol=1e-5)


def test_mask_makes_left_padding_invisible():
    net = _backbone("lru", 2, conv_width=3, norm="batchnorm")
    net.eval()
    x = _x((1, 5, F))
    junk = _x((1, 3, F), 9) * 10
    # Row 0: 3 pad tokens, then x. Row 1: x alone (right-padded; causal).
    rows = np.concatenate(
        [np.concatenate([junk, x], 1), np.concatenate([x, 0 * junk], 1)]
    )
    mask = np.array([[False] * 3 + [True] * 5, [True] * 5 + [False] * 3])
    y = _call(net, rows, mask=mask)
    np.testing.assert_allclose(y[0, 3:], y[1, :5], rtol=1e-5, atol=1e-6)
    # Without the mask the pad tokens leak into the real ones.
    y = _call(net, rows, mask=np.ones_like(mask))
    assert not np.allclose(y[0, 3:], y[1, :5], atol=1e-3)


def test_dropout_train_vs_eval():
    net = _backbone("lru", 1, dropout=0.5)
    x = _x((2, 5, F))
    net.train()
    y1, y2 = _call(net, x), _call(net, x)
    assert not np.allclose(y1, y2)  # fresh dropout masks
    net.eval()
    y = _call(net, x)
    np.testing.assert_array_equal(y, _call(net, x))
    np.testing.assert_allclose(_steps(net, x), y, rtol=1e-5, atol=1e-5)
    net.train()
    np.testing.assert_allclose(_steps(net, x), y, rtol=1e-5, atol=1e-5)  # no dropout


def test_jit_and_grads():
    net = _backbone("lru", 2, conv_width=2)
    x = _x((2, 5, F))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.mean(m(x) ** 2)))(net, x)
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert len(leaves) == len(jax.tree.leaves(nnx.state(net, nnx.Param)))
    assert all(np.all(np.isfinite(g)) and np.abs(g).max() > 0 for g in leaves)
    # vmap over an extra leading axis of the input.
    xs = np.stack([x, 2 * x])
    ys = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(net, xs)
    np.testing.assert_allclose(ys[1], _call(net, 2 * x), rtol=1e-5, atol=1e-5)


def test_block_bf16():
    net = _backbone("lru", 1, dtype=jnp.bfloat16)
    x = _x((2, 5, F))
    y = _call(net, x)
    assert y.dtype == jnp.float32  # the residual stream keeps the input dtype
    ref = _backbone("lru", 1)
    np.testing.assert_allclose(y, _call(ref, x), rtol=0.05, atol=0.05)


# --- segment reversal and Bidirectional ---------------------------------------------


def _reverse_reference(ids):
    ids = np.asarray(ids)
    out = np.zeros(ids.shape, np.int64)
    for b in range(ids.shape[0]):
        t = 0
        while t < ids.shape[1]:
            end = t
            while end + 1 < ids.shape[1] and ids[b, end + 1] == ids[b, t]:
                end += 1
            out[b, t : end + 1] = np.arange(end, t - 1, -1)
            t = end + 1
    return out


def test_segment_reverse_indices_matches_loop_and_is_involution():
    rng = np.random.default_rng(0)
    ids = np.cumsum(rng.random((4, 11)) < 0.3, axis=1)
    idx = block.segment_reverse_indices(jnp.asarray(ids))
    np.testing.assert_array_equal(idx, _reverse_reference(ids))
    np.testing.assert_array_equal(
        np.take_along_axis(np.asarray(idx), np.asarray(idx), axis=1),
        np.broadcast_to(np.arange(11), (4, 11)),
    )


def test_pad_segments():
    ids = np.array([[3, 3, 4, 4, 4]])
    mask = np.array([[True, True, True, False, False]])
    np.testing.assert_array_equal(block.pad_segments(ids, mask), [[3, 3, 4, 2, 2]])
    assert block.pad_segments(ids, None) is ids


def _bidir(combine="sum"):
    return block.Block(
        F,
        "lru",
        mixer_options=TINY["lru"],
        bidirectional=combine,
        mlp=None,
        rngs=nnx.Rngs(3),
    )


def test_bidirectional_equals_manual_reversal_per_segment():
    blk = _bidir()
    bi = blk.mixer
    assert isinstance(bi, block.Bidirectional)
    a, b = _x((1, 4, F), 1), _x((1, 3, F), 2)
    h = np.concatenate([a, b], axis=1)
    ids = np.array([[0] * 4 + [1] * 3])
    got = _call(bi, h, segment_ids=ids)
    for seg, sl in ((a, slice(0, 4)), (b, slice(4, 7))):
        want = _mix(bi.forward, seg) + np.flip(_mix(bi.backward, np.flip(seg, 1)), 1)
        np.testing.assert_allclose(got[:, sl], want, rtol=1e-5, atol=1e-5)
    # Without segments it is a plain flip of the whole sequence.
    want = _mix(bi.forward, h) + np.flip(_mix(bi.backward, np.flip(h, 1)), 1)
    np.testing.assert_allclose(_call(bi, h), want, rtol=1e-5, atol=1e-5)


def test_bidirectional_sees_the_future_but_not_other_segments_or_padding():
    blk = _bidir("concat")
    x = _x((2, 7, F))
    x2 = x.copy()
    x2[:, 5:] = 0.0
    one = np.zeros((2, 7), np.int32)  # one segment: a plain flip
    assert not np.allclose(  # non-causal
        _call(blk, x, segment_ids=one)[:, :5], _call(blk, x2, segment_ids=one)[:, :5]
    )
    ids = np.array([[0] * 5 + [1] * 2] * 2)
    np.testing.assert_allclose(
        _call(blk, x, segment_ids=ids)[:, :5],
        _call(blk, x2, segment_ids=ids)[:, :5],
        rtol=1e-6,
    )
    mask = np.array([[True] * 5 + [False] * 2] * 2)
    y_masked = _call(blk, x, mask=mask)[:, :5]
    np.testing.assert_allclose(y_masked, _call(blk, x2, mask=mask)[:, :5], rtol=1e-6)
    np.testing.assert_allclose(y_masked, _call(blk, x[:, :5]), rtol=1e-5, atol=1e-6)


def test_bidirectional_has_no_step():
    blk = _bidir()
    with pytest.raises(NotImplementedError, match="no recurrent step"):
        blk.init_state(2)
    with pytest.raises(NotImplementedError):
        blk.mixer.step(None, jnp.ones((2, F)))


# --- errors -----------------------------------------------------------------------


def test_block_errors():
    rngs = nnx.Rngs(0)
    blk = block.Block(F, "lru", mixer_options=TINY["lru"], rngs=rngs)
    with pytest.raises(ValueError, match=r"\[batch, time, 6\].*\(2, 5, 4\)"):
        blk(jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"\[batch, 6\]"):
        blk.step(blk.init_state(2), jnp.ones((2, 5, F)))
    with pytest.raises(ValueError, match="mask must be"):
        blk(jnp.ones((2, 5, F)), mask=jnp.ones((2, 4), bool))
    mixer = registry.make_mixer("lru", F, rngs=rngs, **TINY["lru"])
    with pytest.raises(ValueError, match="bidirectional needs a mixer name"):
        block.Block(F, mixer, bidirectional="sum", rngs=rngs)
    with pytest.raises(ValueError, match="mixer_options apply"):
        block.Block(F, mixer, mixer_options={"state_size": 2}, rngs=rngs)
    with pytest.raises(TypeError, match="unknown option"):
        block.Block(F, "lru", mixer_options={"size": 2}, rngs=rngs)
    with pytest.raises(ValueError, match="unknown mixer"):
        block.Block(F, "transformer", rngs=rngs)
    narrow = block.Block(F, "paragru", mixer_options={"hidden_features": 3}, rngs=rngs)
    with pytest.raises(ValueError, match="residual needs"):  # raised while tracing
        nnx.eval_shape(lambda m, x: m(x), narrow, jnp.ones((2, 5, F)))
    with pytest.raises(ValueError, match="one entry per block"):
        block.Backbone(F, 3, ["lru", "s4d"], rngs=rngs)
    with pytest.raises(ValueError, match="depth"):
        block.Backbone(F, 0, "lru", rngs=rngs)
    with pytest.raises(ValueError, match="bidirectional must be"):
        block.Block(F, "lru", bidirectional="both", rngs=rngs)
    with pytest.raises(ValueError, match="combine"):
        block.Bidirectional(F, mixer, mixer, combine="max", rngs=rngs)
