"""CausalConv1d: protocol checks against a direct loop over taps and positions."""

import math

import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import conv

C, K = 3, 4


def make(dtype=jnp.float32, **kw):
    kw.setdefault("kernel_size", K)
    return conv.CausalConv1d(C, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def reference(m, x, segment_ids=None):
    """``y_t = b + Σ_j w[j] x_{t-k+1+j}``, taps before the document start dropped.

    Written as a Python loop over positions and taps (time is short in tests).
    """
    w = m.kernel[...]
    k = w.shape[0]
    batch, time, _ = x.shape
    ids = (
        np.zeros((batch, time), np.int64)
        if segment_ids is None
        else np.asarray(segment_ids)
    )
    rows = []
    for b in range(batch):
        outs = []
        for t in range(time):
            start = t
            while start > 0 and ids[b, start - 1] == ids[b, t]:
                start -= 1
            acc = jnp.zeros((x.shape[-1],), jnp.float32)
            for j in range(k):
                src = t - k + 1 + j
                if src >= start:
                    acc = acc + w[j] * x[b, src]
            if m.bias is not None:
                acc = acc + m.bias[...]
            outs.append(acc)
        rows.append(jnp.stack(outs))
    return jnp.stack(rows)


def test_step_matches_parallel():
    checks.assert_step_matches_parallel(make(), checks.random_inputs((2, 7, C)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, 8, C)), t=4)


def test_segments_do_not_mix():
    x = checks.random_inputs((2, 9, C))
    checks.assert_resets_match_segments(make(), x, [[3, 6], [2, 2, 5]])


@pytest.mark.parametrize("packed", [False, True])
def test_values_and_grads_match_reference(packed):
    x = checks.random_inputs((2, 6, C))
    kw = {}
    if packed:
        kw["segment_ids"] = checks.packed_segment_ids([[2, 4], [5, 1]])
    checks.assert_grads_match_reference(make(), x, reference, **kw)


def test_short_sequences_and_kernel_one():
    x = checks.random_inputs((1, 2, C))  # time < kernel_size
    layer = make()
    np.testing.assert_allclose(layer(x), reference(layer, x), rtol=1e-6, atol=1e-6)
    one = make(kernel_size=1, use_bias=False)
    np.testing.assert_allclose(one(x), x * one.kernel[...][0], rtol=1e-6)
    assert one.init_state(2).shape == (2, 0, C)
    checks.assert_step_matches_parallel(one, x)


def test_jit_and_vmap():
    checks.assert_jit_and_vmap(make(), checks.random_inputs((2, 5, C)))


def test_bad_shapes_raise():
    checks.assert_bad_shapes_raise(make(), C)
    layer = make()
    with pytest.raises(ValueError, match="state"):
        layer.step(jnp.zeros((2, K, C)), jnp.zeros((2, C)))
    with pytest.raises(ValueError, match="kernel_size"):
        conv.CausalConv1d(C, kernel_size=0, rngs=nnx.Rngs(0))


def test_initialisation_bounds():
    """``U(±1/sqrt(k))`` for kernel and bias (depthwise fan-in ``k``)."""
    layer = conv.CausalConv1d(512, kernel_size=4, rngs=nnx.Rngs(1))
    bound = 1 / math.sqrt(4)
    for p in (layer.kernel[...], layer.bias[...]):
        assert np.max(np.abs(p)) <= bound
        assert np.max(np.abs(p)) > 0.9 * bound
    # Variance of U(-a, a) is a^2 / 3.
    assert abs(np.var(layer.kernel[...]) - bound**2 / 3) < 0.01


def test_bfloat16():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, 6, C)))


@pytest.mark.parametrize("time, length", [(1, 1), (7, 7), (9, 3), (64, 64), (33, 17)])
def test_fft_causal_conv_matches_direct_sum(time, length):
    x = checks.random_inputs((2, time, C))
    k = checks.random_inputs((1, length, C), seed=4)[0]
    want = np.zeros((2, time, C))
    xn, kn = np.asarray(x, np.float64), np.asarray(k, np.float64)
    for t in range(time):
        for j in range(min(t + 1, length)):
            want[:, t] += kn[j] * xn[:, t - j]
    got = conv.fft_causal_conv(x, k)
    assert got.shape == x.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fft_causal_conv_bad_shapes():
    with pytest.raises(ValueError, match="need x"):
        conv.fft_causal_conv(jnp.ones((2, 5)), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="kernel length 6"):
        conv.fft_causal_conv(jnp.ones((1, 5, 2)), jnp.ones((6, 2)))
