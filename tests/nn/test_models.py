"""Tests for seqjax.nn.models: LanguageModel, SequenceClassifier, DualEncoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import models

V, F = 13, 8


def _tokens(shape, seed):
    """Random tokens from NumPy (no per-shape JAX compilation)."""
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, shape), jnp.int32)


def _floats(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _lm(mixer="lru", depth=1, **kw):
    options = {"lru": {"state_size": 4}, "s4d": {"state_size": 4}}.get(mixer, {})
    return models.LanguageModel(
        V, F, depth, mixer, mixer_options=options, rngs=nnx.Rngs(0), **kw
    )


@nnx.jit
def _forward(lm, tokens):
    return lm(tokens)


def _greedy_by_rerunning(lm, prompt, n):
    """Greedy decoding that reruns the full parallel forward at every step.

    The tokens live in a fixed buffer of ``prompt_len + n`` (so the forward compiles
    once); positions not yet generated hold zeros, which cannot affect the logits at
    earlier positions of a causal model (``test_block`` checks causality).
    """
    p = prompt.shape[1]
    tokens = jnp.concatenate([prompt, jnp.zeros((prompt.shape[0], n), prompt.dtype)], 1)
    for i in range(n):
        nxt = jnp.argmax(_forward(lm, tokens)[:, p + i - 1], axis=-1)
        tokens = tokens.at[:, p + i].set(nxt.astype(tokens.dtype))
    return tokens[:, p:]


@pytest.mark.parametrize(
    "mixer, kw",
    [
        ("lru", dict(conv_width=3, depth=2)),
        ("s4d", dict(tie_embeddings=False, mlp="swiglu", depth=2)),
    ],
    ids=["lru+conv,tied", "s4d,untied"],
)
def test_generate_equals_greedy_rerun_of_parallel_forward(mixer, kw):
    lm = _lm(mixer, **kw)
    prompt = _tokens((2, 4), 1)
    n = 6
    gen = nnx.jit(lambda m, p, r: m.generate(p, n, rng=r, temperature=0.0))
    got = gen(lm, prompt, jax.random.key(0))
    want = _greedy_by_rerunning(lm, prompt, n)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (2, n) and got.dtype == jnp.int32
    # The test discriminates: decoding is not stuck on one token.
    assert len(np.unique(np.asarray(got))) > 1


def test_step_logits_equal_parallel_logits():
    lm = _lm(conv_width=2)
    tokens = _tokens((2, 5), 2)

    @nnx.jit
    def stepped(m, tokens):
        def body(state, tok):
            return m.step(state, tok)

        _, logits = jax.lax.scan(body, m.init_state(tokens.shape[0]), tokens.T)
        return jnp.swapaxes(logits, 0, 1)

    want = _forward(lm, tokens)
    assert want.shape == (2, 5, V) and want.dtype == jnp.float32
    np.testing.assert_allclose(stepped(lm, tokens), want, rtol=1e-5, atol=1e-5)


def test_sampling_top_k_and_temperature():
    lm = _lm()
    prompt = _tokens((3, 2), 3)
    n = 5
    gen = nnx.jit(
        lambda m, p, r, k, t: m.generate(p, n, rng=r, top_k=k, temperature=t),
        static_argnums=(3, 4),
    )
    # top_k = 1 is greedy whatever the temperature and key.
    np.testing.assert_array_equal(
        gen(lm, prompt, jax.random.key(7), 1, 2.0), _greedy_by_rerunning(lm, prompt, n)
    )
    # Every token sampled with top_k = 3 is among the 3 most likely given its prefix.
    sampled = gen(lm, prompt, jax.random.key(5), 3, 1.5)
    tokens = jnp.concatenate([prompt, sampled], axis=1)
    logits = _forward(lm, tokens)[:, prompt.shape[1] - 1 : -1]
    top3 = np.asarray(jax.lax.top_k(logits, 3)[1])
    assert np.all(np.any(top3 == np.asarray(sampled)[..., None], axis=-1))
    # Same key, same sample; another key, (almost surely) another sample.
    np.testing.assert_array_equal(gen(lm, prompt, jax.random.key(5), 3, 1.5), sampled)
    assert not np.array_equal(gen(lm, prompt, jax.random.key(6), 3, 1.5), sampled)
    assert lm.generate(prompt, 0, rng=jax.random.key(0)).shape == (3, 0)


def test_lm_errors():
    lm = _lm()
    prompt = jnp.zeros((2, 3), jnp.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(prompt, 2, rng=key, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        lm.generate(prompt, 2, rng=key, top_k=V + 1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.generate(prompt, -1, rng=key)
    with pytest.raises(ValueError, match="at least one token"):
        lm.generate(jnp.zeros((2, 0), jnp.int32), 2, rng=key)
    with pytest.raises(TypeError, match="integers"):
        lm(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        lm(jnp.zeros((2, 3, 1), jnp.int32))
    with pytest.raises(ValueError, match="causal"):
        _lm(bidirectional="sum")


# --- classifier ---------------------------------------------------------------------


def _classifier(pooling, **kw):
    return models.SequenceClassifier(
        3,
        F,
        2,
        "lru",
        mixer_options={"state_size": 4},
        pooling=pooling,
        rngs=nnx.Rngs(0),
        **kw,
    )


_run = nnx.jit(lambda m, x, lengths: m(x, lengths=lengths))


@pytest.mark.parametrize(
    "pooling, kw",
    [
        ("mean", dict(vocab_size=V, norm="batchnorm", bidirectional="sum")),
        ("last", dict(input_features=2, conv_width=3)),
    ],
    ids=["mean,tokens,batchnorm,bidirectional", "last,features,conv"],
)
def test_pooling_ignores_padding_and_equals_unpadded(pooling, kw):
    clf = _classifier(pooling, **kw)
    clf.eval()
    lengths = jnp.array([7, 4])
    if "vocab_size" in kw:
        x = _tokens((2, 7), 1)
        junk = _tokens((2, 7), 2)
    else:
        x = _floats((2, 7, 2), 1)
        junk = _floats((2, 7, 2), 2) * 10
    pad = (jnp.arange(7)[None, :] >= lengths[:, None]).reshape(
        (2, 7) + (1,) * (x.ndim - 2)
    )
    logits = _run(clf, x, lengths)
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    np.testing.assert_allclose(
        _run(clf, jnp.where(pad, junk, x), lengths), logits, rtol=1e-5, atol=1e-6
    )
    alone = _run(clf, x[1:, :4], lengths[1:])  # the short row, unpadded
    np.testing.assert_allclose(logits[1:], alone, rtol=1e-5, atol=1e-5)
    # The padding mask matters: unmasked, the junk changes the result.
    full = jnp.array([7, 7])
    assert not np.allclose(_run(clf, jnp.where(pad, junk, x), full)[1], logits[1])


def test_batchnorm_classifier_train_statistics_ignore_padding():
    clf = _classifier("mean", vocab_size=V, norm="batchnorm")
    x = _tokens((2, 7), 1)
    junk = _tokens((2, 7), 2)
    lengths = jnp.array([7, 3])
    pad = jnp.arange(7)[None, :] >= lengths[:, None]
    twin = _classifier("mean", vocab_size=V, norm="batchnorm")
    y = _run(clf, x, lengths)  # train mode: batch statistics, masked
    np.testing.assert_allclose(
        _run(twin, jnp.where(pad, junk, x), lengths), y, rtol=1e-5, atol=1e-5
    )
    bn = clf.encoder.norm
    np.testing.assert_allclose(twin.encoder.norm.mean[...], bn.mean[...], rtol=1e-5)


def test_pool_reference():
    h = jnp.arange(24.0).reshape(2, 4, 3)
    mask = models.length_mask(jnp.array([4, 2]), 2, 4)
    np.testing.assert_allclose(
        models.pool(h, mask, "mean"), [h[0].mean(0), h[1, :2].mean(0)]
    )
    np.testing.assert_allclose(models.pool(h, mask, "last"), [h[0, 3], h[1, 1]])


def test_classifier_errors():
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        _classifier("mean")
    with pytest.raises(ValueError, match="pooling"):
        _classifier("max", vocab_size=V)
    clf = _classifier("mean", vocab_size=V)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        clf(jnp.zeros((2, 5), jnp.int32), lengths=jnp.array([6, 2]))
    with pytest.raises(ValueError, match=r"lengths must be \[batch\]"):
        clf(jnp.zeros((2, 5), jnp.int32), lengths=jnp.array([5]))
    feat = _classifier("mean", input_features=2)
    with pytest.raises(ValueError, match=r"\[batch, time, 2\]"):
        feat(jnp.zeros((2, 5, 3)))


# --- dual encoder -------------------------------------------------------------------


def test_dual_encoder_shared_tower_symmetry_and_shapes():
    model = models.DualEncoder(
        F,
        1,
        "lru",
        vocab_size=V,
        mlp_features=10,
        mixer_options={"state_size": 4},
        rngs=nnx.Rngs(0),
    )
    # LRA's head: [u, v, u*v, u-v] -> Dense(mlp) -> Dense(mlp/2) -> Dense(2).
    assert (model.mlp1.in_features, model.mlp1.out_features) == (4 * F, 10)
    assert (model.mlp2.out_features, model.logits.out_features) == (5, 2)
    x1 = _tokens((3, 6), 1)
    x2 = _tokens((3, 4), 2)
    l1, l2 = jnp.array([6, 5, 2]), jnp.array([4, 1, 3])
    encode = nnx.jit(lambda m, a, b, la, lb: m.encode(a, b, lengths1=la, lengths2=lb))
    u, v = encode(model, x1, x2, l1, l2)
    assert u.shape == v.shape == (3, F)
    # One shared tower: each side equals the tower run alone (padding masked).
    np.testing.assert_allclose(u, _run(model.encoder, x1, l1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, _run(model.encoder, x2, l2), rtol=1e-5, atol=1e-6)
    pair = models.DualEncoder.interaction(u, v)
    np.testing.assert_allclose(pair, jnp.concatenate([u, v, u * v, u - v], -1))
    logits = nnx.jit(lambda m, a, b, la, lb: m(a, b, lengths1=la, lengths2=lb))(
        model, x1, x2, l1, l2
    )
    h = jax.nn.relu(model.mlp1(pair))
    want = model.logits(jax.nn.relu(model.mlp2(h)))
    assert logits.shape == (3, 2) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="same size"):
        model(x1, x2[:2])
