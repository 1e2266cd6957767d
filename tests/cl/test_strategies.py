"""Continual-learning strategies against their formulas on a tiny linear model.

The model is ``nnx.Linear`` over the time-mean of ``inputs``, so per-example
gradients of ``-log p(y|x)`` have a closed form (``x̄ (p - e_y)ᵀ`` for the kernel,
``p - e_y`` for the bias) that the tests compute with numpy, independently of JAX's
autodiff.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import config as config_lib
from seqjax.cl import strategies
from seqjax.cl import strategy as strategy_lib
from seqjax.cl.strategies import ewc, replay
from seqjax.train import extension as extension_lib

T, F, C = 3, 4, 6
TASK_CLASSES = ((0, 1), (2, 3), (4, 5))
B = 8


def _spec(setting="class", train_sizes=(400, 400, 400), example_shape=(T, F)):
    sds = jax.ShapeDtypeStruct
    return strategy_lib.StreamSpec(
        num_tasks=3,
        task_classes=TASK_CLASSES,
        num_classes=C,
        setting=setting,
        example={
            "inputs": sds(example_shape, jnp.float32),
            "lengths": sds((), jnp.int32),
            "targets": sds((), jnp.int32),
            "weights": sds((), jnp.float32),
            "task": sds((), jnp.int32),
        },
        batch_size=B,
        train_sizes=train_sizes,
    )


SPEC = _spec()


def _model(setting="class", seed=0):
    """``(params, ctx)``: a linear model over the time-mean, as pure functions."""
    graphdef, params = nnx.split(nnx.Linear(F, C, rngs=nnx.Rngs(seed)), nnx.Param)
    task_mask = np.zeros((len(TASK_CLASSES), C), bool)
    for t, classes in enumerate(TASK_CLASSES):
        task_mask[t, list(classes)] = True
    task_mask = jnp.asarray(task_mask)

    def outputs(p, batch):
        return nnx.merge(graphdef, p)(batch["inputs"].mean(axis=1))

    def task_loss(p, batch):
        logits = outputs(p, batch)
        if setting == "task":
            logits = jnp.where(task_mask[batch["task"]], logits, -1e9)
        nll = -jnp.take_along_axis(
            jax.nn.log_softmax(logits), batch["targets"][:, None], axis=1
        )[:, 0]
        w = batch["weights"]
        return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1.0)

    return params, extension_lib.StepContext(outputs, task_loss)


def _pure(tree):
    return {k: np.asarray(v, np.float64) for k, v in nnx.to_pure_dict(tree).items()}


def _perturb(params, seed, scale=0.3):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [
        x + scale * jax.random.normal(k, x.shape)
        for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, new)


def _batches(task, n, seed=0, pad_rows=()):
    """Batches of ``B`` rows of task ``task``: ``n`` real rows, padding to whole
    batches, and extra padding rows at the global row positions ``pad_rows``."""
    rng = np.random.default_rng(100 * seed + task)
    out, real = [], 0
    position = 0
    while real < n:
        inputs = rng.normal(size=(B, T, F)).astype(np.float32)
        targets = rng.choice(TASK_CLASSES[task], B).astype(np.int32)
        weights = np.zeros(B, np.float32)
        for r in range(B):
            if position + r not in pad_rows and real < n:
                weights[r] = 1.0
                real += 1
        position += B
        out.append(
            {
                "inputs": inputs,
                "lengths": np.full(B, T, np.int32),
                "targets": np.where(weights > 0, targets, 0).astype(np.int32),
                "weights": weights,
                "task": np.full(B, task, np.int32),
            }
        )
    return out


def _task_end(index, state, params, ctx, batches):
    return strategy_lib.TaskEnd(index, state, params, ctx, lambda: iter(batches))


def _hand_grads(params, rows, setting):
    """Per-example gradients of ``-log p(y|x)`` in closed form (numpy)."""
    p = _pure(params)
    grads = []
    for n in range(len(rows["weights"])):
        x = rows["inputs"][n].astype(np.float64).mean(axis=0)
        logits = x @ p["kernel"] + p["bias"]
        allowed = np.ones(C, bool)
        if setting == "task":
            allowed[:] = False
            allowed[list(TASK_CLASSES[rows["task"][n]])] = True
        logits = np.where(allowed, logits, -np.inf)
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        delta = prob - np.eye(C)[rows["targets"][n]]
        grads.append({"kernel": np.outer(x, delta), "bias": delta})
    return grads


def _real_rows(batches, limit):
    rows = {k: [] for k in batches[0]}
    for batch in batches:
        for r in np.flatnonzero(batch["weights"] > 0):
            for k in rows:
                rows[k].append(batch[k][r])
    return {k: np.stack(v)[:limit] for k, v in rows.items()}


def _hand_fisher(params, batches, limit, setting):
    grads = _hand_grads(params, _real_rows(batches, limit), setting)
    return {k: np.mean([g[k] ** 2 for g in grads], axis=0) for k in ("kernel", "bias")}


def _quad(fisher, theta, anchor):
    return sum(np.sum(fisher[k] * (theta[k] - anchor[k]) ** 2) for k in fisher)


# --- the registry and its errors ----------------------------------------------------


def test_registry_builds_every_strategy_with_defaults():
    assert strategies.strategy_names() == tuple(strategies.STRATEGIES)
    data = {"joint": "joint", "cumulative": "cumulative"}
    for name in strategies.strategy_names():
        strategy = strategies.make_strategy(name, {}, SPEC)
        assert strategy.name == name
        assert strategy.data == data.get(name, "current")
        has_extension = name not in ("naive", "joint", "cumulative")
        assert (strategy.extension is not None) == has_extension


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("nope", {}, "cl.strategy must"),
        ("ewc", {"lam": -1.0}, "cl.strategy_options['lam']"),
        ("ewc", {"lamda": 1.0}, "cl.strategy_options['lamda']"),
        ("ewc", {"mode": "both"}, "cl.strategy_options['mode']"),
        ("ewc", {"gamma": 1.5}, "cl.strategy_options['gamma']"),
        ("ewc", {"mode": "separate", "gamma": 0.5}, "cl.strategy_options['gamma']"),
        ("ewc", {"fisher_samples": 0}, "cl.strategy_options['fisher_samples']"),
        ("ewc", {"lam": "big"}, "cl.strategy_options['lam']"),
        ("replay", {"buffer_size": 1201}, "cl.strategy_options['buffer_size']"),
        ("replay", {"buffer_size": 10.0}, "cl.strategy_options['buffer_size']"),
        ("replay", {"batch_share": 1.0}, "cl.strategy_options['batch_share']"),
        ("replay", {"batch_share": 0}, "cl.strategy_options['batch_share']"),
        ("si", {"c": -0.1}, "cl.strategy_options['c']"),
        ("si", {"xi": 0.0}, "cl.strategy_options['xi']"),
        ("lwf", {"temperature": 0.0}, "cl.strategy_options['temperature']"),
        ("lwf", {"alpha": -1}, "cl.strategy_options['alpha']"),
        ("agem", {"buffer_size": 5000}, "cl.strategy_options['buffer_size']"),
        ("agem", {"memory_batch": 0}, "cl.strategy_options['memory_batch']"),
        ("naive", {"lam": 1.0}, "cl.strategy_options['lam']"),
    ],
)
def test_config_errors_name_the_key(name, options, key):
    with pytest.raises(config_lib.ConfigError) as info:
        strategies.make_strategy(name, options, SPEC)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(key), message
    value = options[key.split("'")[1]] if "[" in key else name
    assert repr(value) in message


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(config_lib.ConfigError, match="'naive'.*'agem'"):
        strategies.make_strategy("ewcc", {}, SPEC)
    with pytest.raises(config_lib.ConfigError, match="fisher_samples"):
        strategies.make_strategy("ewc", {"samples": 3}, SPEC)


def test_ints_are_accepted_as_floats():
    strategy = strategies.make_strategy("ewc", {"lam": 5, "gamma": 1}, SPEC)
    assert strategy.name == "ewc"


# --- every strategy under jit, state shapes stable across task ends ------------------


@pytest.mark.parametrize(
    "name, options",
    [
        ("replay", {"buffer_size": 16}),
        ("ewc", {"mode": "online", "fisher_samples": 10}),
        ("ewc", {"mode": "separate", "fisher_samples": 10}),
        ("si", {}),
        ("lwf", {}),
        ("agem", {"buffer_size": 16}),
    ],
)
def test_functions_run_under_jit(name, options):
    params, ctx = _model()
    strategy = strategies.make_strategy(name, options, SPEC)
    ext = strategy.extension
    batch = {k: jnp.asarray(v) for k, v in _batches(0, B)[0].items()}

    @jax.jit
    def step(state, params, batch):
        original = batch
        if ext.batch is not None:
            batch, state = ext.batch(state, batch)

        def total(p):
            extra = ext.loss(state, p, batch, ctx) if ext.loss else 0.0
            return ctx.task_loss(p, batch) + extra

        loss, grads = jax.value_and_grad(total)(params)
        if ext.grads is not None:
            grads = ext.grads(state, grads, params, batch, ctx)
        new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        if ext.update is not None:
            state = ext.update(state, params, new, grads, original)
        return state, new, loss, batch

    state = jax.jit(ext.init)(params)
    layout = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    for task in range(2):
        for _ in range(2):
            state, params, loss, seen = step(state, params, batch)
            assert np.isfinite(float(loss))
            assert jax.tree.map(lambda x: (x.shape, x.dtype), seen) == jax.tree.map(
                lambda x: (x.shape, x.dtype), batch
            )
        if strategy.end_task is not None:
            end = _task_end(task, state, params, ctx, _batches(task, 20))
            state = strategy.end_task(end)
        # Same structure, shapes and dtypes: the jitted step never retraces.
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == layout
    assert step._cache_size() == 1


# --- EWC ----------------------------------------------------------------------------


def test_ewc_fisher_is_per_example_empirical_fisher_of_the_masked_objective():
    params, ctx = _model(setting="task")
    params = _perturb(params, 1)
    batches = _batches(1, 40, pad_rows=(1, 2, 9))
    fisher = ewc.empirical_fisher(ctx, params, iter(batches), 21, chunk=8)
    hand = _hand_fisher(params, batches, 21, "task")
    got = _pure(fisher)
    for k in hand:
        np.testing.assert_allclose(got[k], hand[k], rtol=1e-4, atol=1e-7)
    # The squared gradient of the batch mean is a different (smaller) quantity.
    mean_grad = {
        k: np.mean(
            [g[k] for g in _hand_grads(params, _real_rows(batches, 21), "task")], 0
        )
        for k in hand
    }
    assert not np.allclose(got["kernel"], mean_grad["kernel"] ** 2)


def test_online_ewc_penalty_and_gamma_decay():
    lam, gamma = 7.0, 0.5
    params0, ctx = _model()
    strategy = strategies.make_strategy(
        "ewc", {"lam": lam, "gamma": gamma, "fisher_samples": 12}, SPEC
    )
    ext = strategy.extension
    state = ext.init(params0)
    theta = _perturb(params0, 5)
    assert float(ext.loss(state, theta, None, ctx)) == 0.0

    p1, b1 = _perturb(params0, 1), _batches(0, 30)
    state = strategy.end_task(_task_end(0, state, p1, ctx, b1))
    f1 = _hand_fisher(p1, b1, 12, "class")
    expected = 0.5 * lam * _quad(f1, _pure(theta), _pure(p1))
    np.testing.assert_allclose(float(ext.loss(state, theta, None, ctx)), expected, 1e-5)

    p2, b2 = _perturb(params0, 2), _batches(1, 30)
    state = strategy.end_task(_task_end(1, state, p2, ctx, b2))
    f2 = _hand_fisher(p2, b2, 12, "class")
    decayed = {k: gamma * f1[k] + f2[k] for k in f1}
    expected = 0.5 * lam * _quad(decayed, _pure(theta), _pure(p2))
    np.testing.assert_allclose(float(ext.loss(state, theta, None, ctx)), expected, 1e-5)
    np.testing.assert_allclose(_pure(state.anchor)["kernel"], _pure(p2)["kernel"])


def test_separate_ewc_sums_one_penalty_per_task():
    lam = 3.0
    params0, ctx = _model()
    strategy = strategies.make_strategy(
        "ewc", {"lam": lam, "mode": "separate", "fisher_samples": 16}, SPEC
    )
    ext = strategy.extension
    state = ext.init(params0)
    theta = _perturb(params0, 9)
    assert float(jax.jit(ext.loss, static_argnums=3)(state, theta, None, ctx)) == 0.0
    ends = [
        (_perturb(params0, 1), _batches(0, 24)),
        (_perturb(params0, 2), _batches(1, 24)),
    ]
    expected = 0.0
    for k, (p, b) in enumerate(ends):
        state = strategy.end_task(_task_end(k, state, p, ctx, b))
        expected += _quad(_hand_fisher(p, b, 16, "class"), _pure(theta), _pure(p))
        np.testing.assert_allclose(
            float(ext.loss(state, theta, None, ctx)), 0.5 * lam * expected, 1e-5
        )
    np.testing.assert_array_equal(np.asarray(state.filled), [True, True, False])


# --- SI -----------------------------------------------------------------------------


def test_si_path_integral_and_consolidation():
    c, xi, lr = 0.3, 1e-2, 0.05
    params0, ctx = _model()
    strategy = strategies.make_strategy("si", {"c": c, "xi": xi}, SPEC)
    ext = strategy.extension
    state = ext.init(params0)
    batch = {k: jnp.asarray(v) for k, v in _batches(0, B)[0].items()}

    def total(p):
        return ctx.task_loss(p, batch) + ext.loss(state, p, batch, ctx)

    grads = jax.grad(total)(params0)
    params1 = jax.tree.map(lambda p, g: p - lr * g, params0, grads)
    state = jax.jit(ext.update)(state, params0, params1, grads, batch)
    g = _pure(grads)
    d = {k: _pure(params1)[k] - _pure(params0)[k] for k in g}
    omega = _pure(state.omega)
    for k in g:
        np.testing.assert_allclose(omega[k], -g[k] * d[k], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(omega[k], lr * g[k] ** 2, rtol=1e-4, atol=1e-9)

    state = strategy.end_task(_task_end(0, state, params1, ctx, []))
    big = _pure(state.importance)
    for k in g:
        np.testing.assert_allclose(big[k], omega[k] / (d[k] ** 2 + xi), rtol=1e-5)
        assert not np.any(_pure(state.omega)[k])
        np.testing.assert_allclose(_pure(state.anchor)[k], _pure(params1)[k])
    theta = _perturb(params0, 3)
    expected = c * _quad(big, _pure(theta), _pure(params1))
    np.testing.assert_allclose(
        float(ext.loss(state, theta, batch, ctx)), expected, 1e-5
    )


# --- LwF ----------------------------------------------------------------------------


def test_lwf_is_zero_before_a_task_ends_and_a_masked_kl_after():
    alpha, temp = 0.7, 2.5
    params0, ctx = _model()
    strategy = strategies.make_strategy(
        "lwf", {"alpha": alpha, "temperature": temp}, SPEC
    )
    ext = strategy.extension
    state = ext.init(params0)
    batch = {k: jnp.asarray(v) for k, v in _batches(1, 5)[0].items()}  # 3 pad rows
    theta = _perturb(params0, 4)
    loss = jax.jit(ext.loss, static_argnums=3)
    assert float(loss(state, theta, batch, ctx)) == 0.0

    snapshot = _perturb(params0, 6)
    state = strategy.end_task(_task_end(0, state, snapshot, ctx, []))
    np.testing.assert_array_equal(np.asarray(state.old_classes), [1, 1, 0, 0, 0, 0])

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    old = [0, 1]
    z = np.asarray(ctx.outputs(theta, batch), np.float64)[:, old] / temp
    z_old = np.asarray(ctx.outputs(snapshot, batch), np.float64)[:, old] / temp
    p, q = softmax(z), softmax(z_old)
    kl = np.sum(q * (np.log(q) - np.log(p)), axis=1)
    w = np.asarray(batch["weights"])
    expected = alpha * temp**2 * np.sum(w * kl) / np.sum(w)
    np.testing.assert_allclose(float(loss(state, theta, batch, ctx)), expected, 1e-5)
    # No pull at the snapshot itself; the gradient flows through z only.
    assert abs(float(loss(state, snapshot, batch, ctx))) < 1e-6
    grad = jax.grad(lambda p: ext.loss(state, p, batch, ctx))(snapshot)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(grad)) < 1e-6

    state = strategy.end_task(_task_end(1, state, snapshot, ctx, []))
    assert int(state.finished) == 2
    np.testing.assert_array_equal(np.asarray(state.old_classes), [1, 1, 1, 1, 0, 0])


# --- A-GEM --------------------------------------------------------------------------


def _tree_dot(a, b):
    return sum(
        float(jnp.vdot(x, y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_agem_projects_only_conflicting_gradients():
    params, ctx = _model()
    params = _perturb(params, 2)
    strategy = strategies.make_strategy(
        "agem", {"buffer_size": 1, "memory_batch": 4}, SPEC
    )
    ext = strategy.extension
    project = jax.jit(ext.grads, static_argnums=4)
    state = ext.init(params)
    g = _perturb(jax.tree.map(jnp.zeros_like, params), 8, scale=1.0)
    unchanged = project(state, g, params, None, ctx)  # empty memory
    for x, y in zip(jax.tree.leaves(unchanged), jax.tree.leaves(g), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    state = strategy.end_task(_task_end(0, state, params, ctx, _batches(0, 16)))
    assert np.asarray(state.counts).tolist() == [1, 0, 0]
    row = {k: v[:1] for k, v in state.buffer.items()}  # the one stored example
    g_ref = jax.grad(ctx.task_loss)(params, row)
    noise = _perturb(jax.tree.map(jnp.zeros_like, params), 3, scale=0.01)

    conflicting = jax.tree.map(lambda r, n: -r + n, g_ref, noise)
    assert _tree_dot(conflicting, g_ref) < 0
    projected = project(state, conflicting, params, None, ctx)
    scale = _tree_dot(conflicting, g_ref) / _tree_dot(g_ref, g_ref)
    assert abs(_tree_dot(projected, g_ref)) < 1e-6 * _tree_dot(g_ref, g_ref)
    for x, y, r in zip(
        *map(jax.tree.leaves, (projected, conflicting, g_ref)), strict=True
    ):
        np.testing.assert_allclose(x, y - scale * r, rtol=1e-5, atol=1e-7)

    agreeing = jax.tree.map(lambda r, n: r + n, g_ref, noise)
    assert _tree_dot(agreeing, g_ref) > 0
    kept = project(state, agreeing, params, None, ctx)
    for x, y in zip(jax.tree.leaves(kept), jax.tree.leaves(agreeing), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_agem_memory_splits_equally_among_finished_tasks():
    params, ctx = _model()
    strategy = strategies.make_strategy("agem", {"buffer_size": 10}, SPEC)
    state = strategy.extension.init(params)
    data = [_batches(t, 30, seed=t, pad_rows=(0, 5, 11)) for t in range(3)]
    expected_counts = [[10, 0, 0], [5, 5, 0], [4, 3, 3]]
    for t in range(3):
        state = strategy.end_task(_task_end(t, state, params, ctx, data[t]))
        counts = np.asarray(state.counts).tolist()
        assert counts == expected_counts[t]
        buffer = {k: np.asarray(v) for k, v in state.buffer.items()}
        start = 0
        for owner, count in enumerate(counts):
            segment = slice(start, start + count)
            assert np.all(buffer["task"][segment] == owner)
            assert np.all(buffer["weights"][segment] > 0)
            real = _real_rows(data[owner], 10**6)["inputs"]
            stored = buffer["inputs"][segment]
            # Each stored row is a distinct real row of its task.
            matches = [np.flatnonzero((real == x).all(axis=(1, 2))) for x in stored]
            assert all(len(m) == 1 for m in matches)
            assert len({int(m[0]) for m in matches}) == count
            start += count


# --- replay -------------------------------------------------------------------------

TINY = _spec(example_shape=(1, 1), train_sizes=(10_000,))


def _items(ids, weights=None):
    ids = jnp.asarray(ids, jnp.int32)
    n = ids.shape[0]
    return {
        "inputs": jnp.zeros((n, 1, 1), jnp.float32),
        "lengths": jnp.ones((n,), jnp.int32),
        "targets": ids,
        "weights": jnp.ones((n,), jnp.float32) if weights is None else weights,
        "task": jnp.zeros((n,), jnp.int32),
    }


def _inclusion_counts(seeds, batch):
    """Inserts items 0..9999 into a 100-slot reservoir, ``batch`` at a time, once
    per seed; returns how many seeds kept each item, and the buffers."""
    n, size = 10_000, 100

    def run(key):
        state = replay.init_state(TINY.example, size, key)
        ids = jnp.arange(n, dtype=jnp.int32).reshape(n // batch, batch)

        def body(state, chunk):
            return replay.reservoir_insert(state, _items(chunk)), None

        state, _ = jax.lax.scan(body, state, ids)
        return state.buffer["targets"], state.seen

    keys = jax.random.split(jax.random.key(1234), seeds)
    kept, seen = jax.jit(jax.vmap(run))(keys)
    kept = np.asarray(kept)
    assert np.all(np.asarray(seen) == n)
    # Every buffer holds 100 distinct items.
    assert all(len(np.unique(row)) == size for row in kept)
    return np.bincount(kept.ravel(), minlength=n)


@pytest.mark.parametrize("batch", [1, 100, 10_000])
def test_reservoir_sampling_is_uniform(batch):
    seeds = 1000
    counts = _inclusion_counts(seeds, batch)
    expected = seeds * 100 / 10_000  # each item kept with probability size / n
    # Per item: chi-square with 9999 dof (mean ~9900 under the multinomial-like
    # constraint, sd ~141); a biased reservoir lands far above.
    chi_items = np.sum((counts - expected) ** 2 / expected)
    assert chi_items < 9999 + 6 * 141, chi_items
    # Per bin of 100 consecutive items (early vs late arrivals): 99 dof, sd ~14.
    bins = counts.reshape(100, 100).sum(axis=1)
    chi_bins = np.sum((bins - seeds) ** 2 / seeds)
    assert chi_bins < 99 + 6 * 14, chi_bins
    assert abs(bins[:10].mean() - bins[-10:].mean()) < 0.1 * seeds


def test_reservoir_stores_only_real_rows_in_arrival_order():
    state = replay.init_state(TINY.example, 10, jax.random.key(0))
    weights = jnp.asarray([1, 0, 1, 1, 0, 0, 1, 1], jnp.float32)
    ids = jnp.asarray([0, 900, 1, 2, 901, 902, 3, 4])
    state = jax.jit(replay.reservoir_insert)(state, _items(ids, weights))
    assert int(state.seen) == 5
    np.testing.assert_array_equal(
        np.asarray(state.buffer["targets"][:5]), [0, 1, 2, 3, 4]
    )
    assert np.all(np.asarray(state.buffer["weights"][:5]) == 1)
    for step in range(20):  # overflow: still no padding row enters
        ids = jnp.arange(8) + 10 * (step + 1)
        state = replay.reservoir_insert(state, _items(ids, weights))
    targets = np.asarray(state.buffer["targets"])
    assert int(state.seen) == 105
    assert not np.any(targets >= 900)
    assert np.all(np.isin(targets % 10, [0, 2, 3, 6, 7])[targets >= 10])
    assert np.all(np.asarray(state.buffer["weights"]) == 1)


@pytest.mark.parametrize("share, rows", [(0.5, 4), (0.3, 2), (0.2, 2), (0.9, 7)])
def test_replay_batch_replaces_exactly_the_share(share, rows):
    assert replay.replay_rows(share, B) == rows
    strategy = strategies.make_strategy(
        "replay", {"buffer_size": 6, "batch_share": share}, TINY
    )
    ext = strategy.extension
    state = ext.init(None)
    batch = _items(jnp.arange(B) + 500)
    mixed, state2 = jax.jit(ext.batch)(state, batch)  # empty buffer: unchanged
    for k in batch:
        np.testing.assert_array_equal(np.asarray(mixed[k]), np.asarray(batch[k]))
    assert not np.array_equal(
        jax.random.key_data(state2.key), jax.random.key_data(state.key)
    )

    state = ext.update(state, None, None, None, _items(jnp.arange(4) + 100))
    for _ in range(5):
        mixed, state = jax.jit(ext.batch)(state, batch)
        for k in batch:
            assert mixed[k].shape == batch[k].shape and mixed[k].dtype == batch[k].dtype
        targets = np.asarray(mixed["targets"])
        assert np.all(np.isin(targets[:rows], [100, 101, 102, 103]))
        np.testing.assert_array_equal(targets[rows:], np.arange(rows, B) + 500)
