"""Parameter groups and the grouped AdamW, against hand-written Adam/AdamW steps.

Expected labels come from explicit per-mixer name lists (not from the labelling
rule), and the update reference is a float64 NumPy loop of the Adam/AdamW equations
with global-norm clipping.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqjax.nn.models import LanguageModel
from seqjax.train import optimizers, schedules

MIXER_OPTIONS = {
    "lru": {"state_size": 4},
    "s4d": {"state_size": 4},
    "s5": {"state_size": 4, "blocks": 1},
    "rglru": {},
    "mamba": {"d_state": 4},
    "paragru": {},
}

# The recurrent/SSM parameters of each mixer, written out by hand.
SSM_NAMES = {
    "lru": {"nu_log", "theta_log", "gamma_log", "B_re", "B_im"},
    "s4d": {"log_dt", "log_a_real", "a_imag", "B_re", "B_im"},
    "s5": {"lambda_re", "lambda_im", "log_step", "B_re", "B_im"},
    "rglru": {"a_param"},
    "mamba": {"A_log"},
    "paragru": set(),
}
# Parameters that must never be decayed (biases, norm scales, skip D).
NO_DECAY_NAMES = {"bias", "scale", "D", "gate_a_b", "gate_x_b"}
# Matrices that must be decayed.
DECAY_NAMES = {
    "kernel",
    "embedding",
    "C_re",
    "C_im",
    "gate_a_w",
    "gate_x_w",
    "diagonal",
}


def tiny_lm(mixer, **kwargs):
    options = dict(MIXER_OPTIONS[mixer])
    return LanguageModel(
        11, 8, 1, mixer, mixer_options=options, rngs=nnx.Rngs(0), **kwargs
    )


@functools.cache
def tiny_params(mixer):
    """The ``nnx.Param`` state of ``tiny_lm(mixer)``, built once per mixer."""
    return nnx.state(tiny_lm(mixer), nnx.Param)


def flat(tree):
    """``{"a/b/c": leaf}`` with ``nnx.Variable`` objects kept whole."""
    leaves = jax.tree_util.tree_leaves_with_path(
        tree, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    out = {}
    for path, leaf in leaves:
        keys = [
            str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
            for k in path
        ]
        out["/".join(keys)] = leaf
    return out


def expected_label(mixer, name):
    if name in SSM_NAMES[mixer]:
        return "ssm"
    if name in NO_DECAY_NAMES:
        return "no_decay"
    if name in DECAY_NAMES:
        return "decay"
    raise AssertionError(f"test has no expectation for parameter {name!r}")


# --------------------------------------------------------------------------------
# labels


@pytest.mark.parametrize("mixer", list(MIXER_OPTIONS))
def test_labels_on_real_models(mixer):
    params = tiny_params(mixer)
    labels = flat(optimizers.param_labels(params))
    leaves = flat(params)
    assert labels.keys() == leaves.keys()
    names = {path.rsplit("/", 1)[-1] for path in labels}
    # Every SSM parameter the test expects exists (catches renames in seqjax.nn).
    assert SSM_NAMES[mixer] <= names, SSM_NAMES[mixer] - names
    for path, label in labels.items():
        name = path.rsplit("/", 1)[-1]
        assert label == expected_label(mixer, name), (path, label)
    assert set(labels.values()) >= {"decay", "no_decay"}


def test_labels_keep_the_tree_structure_and_accept_pure_and_abstract_trees():
    params = tiny_params("lru")
    from_variables = flat(optimizers.param_labels(params))
    from_arrays = flat(optimizers.param_labels(nnx.as_pure(params)))
    from_dict = flat(optimizers.param_labels(nnx.to_pure_dict(params)))
    from_shapes = flat(
        optimizers.param_labels(
            jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        )
    )
    assert from_variables == from_arrays == from_dict == from_shapes


def test_custom_patterns_by_name_and_path():
    params = tiny_params("lru")
    labels = flat(
        optimizers.param_labels(
            params,
            ssm_patterns=(".*/mixer/C_re", "nu_log"),
            no_decay_patterns=("embedding", "bias", "scale"),
        )
    )
    assert labels["backbone/blocks/0/mixer/C_re"] == "ssm"
    assert labels["backbone/blocks/0/mixer/nu_log"] == "ssm"
    # no longer in the SSM list: a vector, so no_decay; a matrix, so decay
    assert labels["backbone/blocks/0/mixer/theta_log"] == "no_decay"
    assert labels["backbone/blocks/0/mixer/B_re"] == "decay"
    assert labels["embed/embedding"] == "no_decay"


def test_group_sizes_cover_every_parameter():
    params = tiny_params("s5")
    sizes = optimizers.group_sizes(optimizers.param_labels(params), params)
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    assert sum(sizes.values()) == total
    assert all(n > 0 for n in sizes.values())


# --------------------------------------------------------------------------------
# updates against a hand-written reference


def reference_adam(params, grads_seq, labels, lr, ssm_lr, wd, b1, b2, eps, clip):
    """Float64 loop: clip by global norm, then Adam (+ decoupled decay × lr)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for step, grads in enumerate(grads_seq):
        g = {k: np.asarray(x, np.float64) for k, x in grads.items()}
        if clip is not None:
            norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
            if norm > clip:
                g = {k: x * clip / norm for k, x in g.items()}
        n = step + 1
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat = m[k] / (1 - b1**n)
            v_hat = v[k] / (1 - b2**n)
            update = m_hat / (np.sqrt(v_hat) + eps)
            if labels[k] == "decay":
                update = update + wd * p[k]
            rate = ssm_lr(step) if labels[k] == "ssm" else lr(step)
            p[k] = p[k] - rate * update
    return p


def random_grads(params, seed, scale):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), jnp.float32),
        params,
    )


def global_norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree))))


def test_three_steps_match_hand_computed_adamw_per_group():
    params = nnx.as_pure(tiny_params("lru"))
    lr = schedules.warmup_cosine(0.05, 0, 4, final_fraction=0.2)
    ssm_peak = 0.005  # float with a schedule: same shape, peak 0.005
    grads_seq = [random_grads(params, s, scale) for s, scale in enumerate([1, 9, 2])]
    norms = [global_norm(g) for g in grads_seq]
    clip = 0.5 * (norms[0] + norms[1])  # clips step 1 only
    assert norms[1] > clip > max(norms[0], norms[2])
    hyper = dict(weight_decay=0.3, b1=0.8, b2=0.95, eps=1e-6, grad_clip_norm=clip)
    tx = optimizers.make_optimizer(
        params, learning_rate=lr, ssm_learning_rate=ssm_peak, **hyper
    )
    state = tx.init(params)
    new = params
    update = jax.jit(tx.update)
    for grads in grads_seq:
        updates, state = update(grads, state, new)
        new = optax.apply_updates(new, updates)

    labels = {
        path: expected_label("lru", path.rsplit("/", 1)[-1]) for path in flat(params)
    }
    want = reference_adam(
        flat(params),
        [flat(g) for g in grads_seq],
        labels,
        lr=lambda k: float(lr(k)),
        ssm_lr=lambda k: float(lr(k)) * ssm_peak / 0.05,
        wd=0.3,
        b1=0.8,
        b2=0.95,
        eps=1e-6,
        clip=clip,
    )
    got = flat(new)
    for path, value in want.items():
        np.testing.assert_allclose(got[path], value, rtol=2e-5, atol=1e-7, err_msg=path)
    # The reference is sensitive to the grouping: moving the SSM parameters to
    # the main rate (or decaying them) changes the result.
    wrong = reference_adam(
        flat(params),
        [flat(g) for g in grads_seq],
        {k: "decay" for k in labels},
        lr=lambda k: float(lr(k)),
        ssm_lr=lambda k: float(lr(k)),
        wd=0.3,
        b1=0.8,
        b2=0.95,
        eps=1e-6,
        clip=clip,
    )
    path = "backbone/blocks/0/mixer/nu_log"
    assert not np.allclose(got[path], wrong[path], rtol=2e-5, atol=1e-7)


def test_weight_decay_only_on_decay_leaves():
    """With zero gradients Adam's step is 0, so only decoupled decay moves θ."""
    params = nnx.as_pure(tiny_params("s5"))
    tx = optimizers.make_optimizer(params, learning_rate=0.1, weight_decay=0.5)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    new = flat(optax.apply_updates(params, updates))
    for path, old in flat(params).items():
        label = expected_label("s5", path.rsplit("/", 1)[-1])
        factor = 1 - 0.1 * 0.5 if label == "decay" else 1.0
        np.testing.assert_allclose(new[path], factor * old, rtol=1e-6, err_msg=path)


def test_state_holds_only_the_learning_rate():
    """Hyperparameters other than the learning rate stay out of the state, and the
    rate is recomputed from the step: a restored state cannot override the
    configuration (here, a new weight decay takes effect)."""
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    old = optimizers.make_optimizer(params, learning_rate=0.1, weight_decay=0.5)
    new = optimizers.make_optimizer(params, learning_rate=0.2, weight_decay=0.0)
    state = old.init(params)
    hyper = [
        path
        for path, _ in jax.tree_util.tree_leaves_with_path(state)
        if ".hyperparams[" in jax.tree_util.keystr(path)
    ]
    assert len(hyper) == 3  # one learning rate per group
    assert all("learning_rate" in jax.tree_util.keystr(p) for p in hyper)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, state = new.update(zeros, state, params)
    np.testing.assert_array_equal(updates["w"], 0.0)  # no decay any more
    assert float(optimizers.learning_rates(state)["decay"]) == pytest.approx(0.2)


# --------------------------------------------------------------------------------
# learning rates


def run_updates(tx, params, n):
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    rates = [optimizers.learning_rates(state)]
    for _ in range(n):
        _, state = tx.update(grads, state, params)
        rates.append(optimizers.learning_rates(state))
    return rates


SMALL = {"w": jnp.ones((3, 2)), "b": jnp.ones(2), "nu_log": jnp.ones(2)}


@pytest.mark.parametrize(
    "ssm, expected",
    [
        (None, lambda lr, k: lr(k)),
        (0.004, lambda lr, k: 0.004 / 0.02 * lr(k)),
        (schedules.constant(0.003), lambda lr, k: 0.003),
    ],
    ids=["same", "scaled", "schedule"],
)
def test_learning_rates_follow_the_schedules(ssm, expected):
    lr = schedules.warmup_cosine(0.02, 2, 6)
    tx = optimizers.make_optimizer(SMALL, learning_rate=lr, ssm_learning_rate=ssm)
    rates = run_updates(tx, SMALL, 5)
    # before any update: schedule(0); after update k: the rate it used, schedule(k-1)
    for k, r in enumerate(rates):
        used = max(k - 1, 0)
        assert float(r["decay"]) == pytest.approx(float(lr(used)), abs=1e-9)
        assert float(r["no_decay"]) == pytest.approx(float(lr(used)), abs=1e-9)
        assert float(r["ssm"]) == pytest.approx(float(expected(lr, used)), abs=1e-9)


def test_float_learning_rates_are_constant():
    tx = optimizers.make_optimizer(SMALL, learning_rate=0.1, ssm_learning_rate=0.01)
    for r in run_updates(tx, SMALL, 2):
        assert float(r["decay"]) == pytest.approx(0.1)
        assert float(r["ssm"]) == pytest.approx(0.01)


def test_float_ssm_rate_needs_a_schedule_with_a_peak():
    with pytest.raises(TypeError, match="no `peak` attribute"):
        optimizers.make_optimizer(
            SMALL,
            learning_rate=optax.linear_schedule(0.1, 0.0, 10),
            ssm_learning_rate=0.01,
        )
    # a schedule for both is fine
    optimizers.make_optimizer(
        SMALL,
        learning_rate=optax.linear_schedule(0.1, 0.0, 10),
        ssm_learning_rate=optax.linear_schedule(0.01, 0.0, 10),
    )


# --------------------------------------------------------------------------------
# clipping


def test_clipping_rescales_only_large_gradients():
    params = {"w": jnp.ones((3, 2)), "nu_log": jnp.ones(2)}
    big = {"w": jnp.full((3, 2), 4.0), "nu_log": jnp.full(2, -3.0)}
    norm = global_norm(big)
    # eps large: Adam is then not scale invariant, so clipping changes the step
    kw = dict(learning_rate=0.1, eps=10.0, weight_decay=0.1)
    clipped = optimizers.make_optimizer(params, grad_clip_norm=1.0, **kw)
    plain = optimizers.make_optimizer(params, **kw)

    def step(tx, grads):
        updates, _ = tx.update(grads, tx.init(params), params)
        return updates

    scaled = jax.tree.map(lambda g: g / norm, big)
    for a, b in zip(
        jax.tree.leaves(step(clipped, big)),
        jax.tree.leaves(step(plain, scaled)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(step(clipped, big)["w"], step(plain, big)["w"])
    # below the threshold nothing changes
    small = jax.tree.map(lambda g: 0.5 * g / norm, big)
    for a, b in zip(
        jax.tree.leaves(step(clipped, small)),
        jax.tree.leaves(step(plain, small)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# --------------------------------------------------------------------------------
# nnx.Optimizer


def test_nnx_optimizer_matches_the_functional_optimizer():
    model = tiny_lm("lru")
    start = nnx.as_pure(nnx.state(model, nnx.Param))
    lr = schedules.warmup_cosine(0.01, 1, 5)
    make = dict(
        learning_rate=lr, ssm_learning_rate=0.002, weight_decay=0.1, grad_clip_norm=1.0
    )
    tx = optimizers.make_optimizer(nnx.state(model, nnx.Param), **make)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 6)))

    def loss(m):
        logits = m(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(
            logits, tokens[:, 1:]
        ).mean()

    @nnx.jit
    def train_step(m, opt):
        value, grads = nnx.value_and_grad(loss)(m)
        opt.update(m, grads)
        return grads, optimizers.learning_rates(opt.opt_state)

    functional_tx = optimizers.make_optimizer(start, **make)
    state = functional_tx.init(start)
    params = start
    update = jax.jit(functional_tx.update)
    for k in range(3):
        grads, rates = train_step(model, optimizer)
        updates, state = update(nnx.as_pure(grads), state, params)
        params = optax.apply_updates(params, updates)
        assert float(rates["ssm"]) == pytest.approx(0.2 * float(lr(k)), abs=1e-9)
    got = flat(nnx.as_pure(nnx.state(model, nnx.Param)))
    for path, value in flat(params).items():
        np.testing.assert_allclose(got[path], value, rtol=1e-5, atol=1e-7)
    assert not np.allclose(got["embed/embedding"], flat(start)["embed/embedding"])


def test_builds_inside_eval_shape():
    """The trainer builds model and optimizer abstractly under ``nnx.eval_shape``."""

    def create():
        model = tiny_lm("paragru")
        tx = optimizers.make_optimizer(
            nnx.state(model, nnx.Param), learning_rate=1e-3, weight_decay=0.1
        )
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    _, abstract_opt = nnx.eval_shape(create)
    rates = optimizers.learning_rates(abstract_opt.opt_state)
    assert set(rates) == {"decay", "no_decay", "ssm"}


# --------------------------------------------------------------------------------
# errors


def test_rejects_non_parameter_variables():
    model = tiny_lm("lru", norm="batchnorm")
    with pytest.raises(TypeError, match="BatchStat, not an nnx.Param"):
        optimizers.param_labels(nnx.state(model))
    with pytest.raises(TypeError, match="BatchStat"):
        optimizers.make_optimizer(nnx.state(model), learning_rate=0.1)


def test_rejects_bad_leaves_and_patterns():
    with pytest.raises(TypeError, match="dtype int32"):
        optimizers.param_labels({"count": jnp.zeros(3, jnp.int32)})
    with pytest.raises(TypeError, match="without shape and dtype"):
        optimizers.param_labels({"x": 1.0})
    with pytest.raises(TypeError, match="sequence of regular expressions"):
        optimizers.param_labels(SMALL, ssm_patterns="nu_log")
    with pytest.raises(ValueError, match="bad regular expression"):
        optimizers.param_labels(SMALL, no_decay_patterns=("bias(",))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(learning_rate=0.0), ValueError, "learning_rate must be finite and > 0"),
        (dict(learning_rate="1e-3"), TypeError, "learning_rate must be a float"),
        (
            dict(learning_rate=0.1, ssm_learning_rate=-1.0),
            ValueError,
            "ssm_learning_rate",
        ),
        (dict(learning_rate=0.1, b1=1.0), ValueError, r"b1 must be in \[0, 1\)"),
        (dict(learning_rate=0.1, b2=-0.1), ValueError, "b2"),
        (dict(learning_rate=0.1, eps=0.0), ValueError, "eps must be finite and > 0"),
        (dict(learning_rate=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
        (dict(learning_rate=0.1, grad_clip_norm=0.0), ValueError, "grad_clip_norm"),
        (dict(learning_rate=0.1, grad_clip_norm="1"), TypeError, "grad_clip_norm"),
    ],
)
def test_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        optimizers.make_optimizer(SMALL, **kwargs)


def test_unknown_parameter_path_at_update():
    tx = optimizers.make_optimizer(SMALL, learning_rate=0.1)
    other = dict(SMALL, extra=jnp.ones(2))
    with pytest.raises(ValueError, match="'extra' that was not in the params"):
        tx.init(other)


def test_learning_rates_needs_a_grouped_state():
    with pytest.raises(ValueError, match="no learning rates"):
        optimizers.learning_rates(optax.adam(0.1).init(SMALL))
