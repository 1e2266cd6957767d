"""The synthetic memory tasks through the trainer: losses against hand-computed
references, the in-model curriculum (rule, epochs, exact resume), option errors, every
config end to end, and the tiny MQAR and N-parity presets learning."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import config as config_lib
from seqjax.data import mqar, parity
from seqjax.tasks import registry, synthetic
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = {
    name: ROOT / "configs" / f"{name}.py"
    for name in (
        "mqar",
        "parity",
        "dms",
        "selective_copying",
        "induction_heads",
        "set_disjointness",
    )
}


def load(name, variant="tiny", tmp_path=None, **overrides):
    """A config with one device and its cache in ``tmp_path``."""
    config = config_lib.load_config(CONFIGS[name], variant)
    options = dict(config.data.options)
    if tmp_path is not None:
        options["cache_dir"] = str(tmp_path / "cache")
    base = {"mesh.data": 1, "train.progress": False, "data.options": options}
    return config_lib.apply_overrides(config, {**base, **overrides})


def metrics(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


# --- token-level tasks -------------------------------------------------------------


def test_labelled_positions_and_stacked_sets_keep_every_label():
    targets = np.array([[-100, 5, -100, 7], [3, -100, -100, -100]])
    positions, labels = synthetic.labelled_positions(targets)
    assert positions.tolist() == [[1, 3], [0, 0]]
    assert labels.tolist() == [[5, 7], [3, -100]]
    a = mqar.mqar(3, seed=0, seq_len=16, num_kv_pairs=2, vocab_size=12)
    b = mqar.mqar(2, seed=1, seq_len=24, num_kv_pairs=5, vocab_size=12)
    out = synthetic.stack_sets([a, b])
    assert out["inputs"].shape == (5, 24) and out["labels"].shape == (5, 5)
    assert out["set_onehot"].tolist() == [[1, 0]] * 3 + [[0, 1]] * 2
    np.testing.assert_array_equal(out["inputs"][:3, :16], a["inputs"])
    assert (out["inputs"][:3, 16:] == 0).all()
    for row, t in enumerate(list(a["targets"]) + list(b["targets"])):
        where = np.flatnonzero(t != -100)
        k = len(where)
        np.testing.assert_array_equal(out["positions"][row, :k], where)
        np.testing.assert_array_equal(out["labels"][row, :k], t[where])
        assert (out["labels"][row, k:] == -100).all()


def test_token_loss_and_metrics_match_a_hand_computed_reference(tmp_path):
    config = load(
        "mqar",
        tmp_path=tmp_path,
        **{
            "data.options": {
                "vocab_size": 16,
                "num_eval": 4,
                "train_sets": [
                    {"seq_len": 12, "num_kv_pairs": 2, "num_examples": 8},
                    {"seq_len": 16, "num_kv_pairs": 3, "num_examples": 8},
                ],
                "eval_sets": [
                    {"seq_len": 12, "num_kv_pairs": 2, "name": "a"},
                    {"seq_len": 16, "num_kv_pairs": 3, "name": "b"},
                ],
                "cache_dir": str(tmp_path / "cache"),
            },
            "model.features": 16,
            "model.depth": 1,
            "data.batch_size": 8,
        },
    )
    task = registry.get_task("mqar")
    model = task.build_model(config, nnx.Rngs(params=0))
    records = task.records(config, "eval")
    batch = {k: v for k, v in records.items()}
    batch["weights"] = np.array([1, 1, 0, 1, 1, 1, 1, 0.5], np.float32)
    logits = np.asarray(model(jnp.asarray(batch["inputs"])))  # full LM forward
    logp = log_softmax(logits)
    # The reference reads the generators' own targets, independently of the task's
    # gathering; answers are made right (whole rows, or the first query) so that
    # accuracy and exact match are not trivially zero.
    raw = [
        mqar.mqar(4, seed=0, stream=1, seq_len=12, num_kv_pairs=2, vocab_size=16),
        mqar.mqar(4, seed=0, stream=3, seq_len=16, num_kv_pairs=3, vocab_size=16),
    ]
    for s, data in enumerate(raw):
        for r in range(4):
            i = 4 * s + r
            where = np.flatnonzero(data["targets"][r] != -100)
            fix = where if r % 2 == 0 else where[:1]
            data["targets"][r, fix] = logits[i, fix].argmax(-1)
            batch["labels"][i, : len(fix)] = logits[i, fix].argmax(-1)
    loss, sums = task.loss(model, batch)

    nats = correct = count = rows = exact = 0.0
    set_correct, set_count = np.zeros(2), np.zeros(2)
    for s, data in enumerate(raw):
        for r in range(4):
            i = 4 * s + r
            w = batch["weights"][i]
            t = data["targets"][r]
            where = np.flatnonzero(t != -100)
            right = logits[i, where].argmax(-1) == t[where]
            nats -= w * logp[i, where, t[where]].sum()
            correct += w * right.sum()
            count += w * len(where)
            rows += w
            exact += w * right.all()
            set_correct[s] += w * right.sum()
            set_count[s] += w * len(where)
    np.testing.assert_allclose(float(loss), nats / count, rtol=1e-5)
    np.testing.assert_allclose(float(sums["nats"]), nats, rtol=1e-5)
    for key, value in [
        ("correct", correct),
        ("count", count),
        ("rows", rows),
        ("exact", exact),
    ]:
        np.testing.assert_allclose(float(sums[key]), value, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sums["set_correct"]), set_correct)
    np.testing.assert_allclose(np.asarray(sums["set_count"]), set_count)
    task.datasets(config, 0, 1)  # learns the evaluation set names
    summary = task.summarize(jax.device_get(sums))
    assert summary["eval/accuracy"] == pytest.approx(correct / count)
    assert summary["eval/exact_match"] == pytest.approx(exact / rows)
    assert summary["eval/accuracy/b"] == pytest.approx(set_correct[1] / set_count[1])


def test_jrt_prompt_option_repeats_the_context(tmp_path):
    config = load("set_disjointness", tmp_path=tmp_path)
    options = dict(config.data.options, jrt_repeats=3, num_eval=6)
    config = config_lib.apply_overrides(config, {"data.options": options})
    records = registry.get_task("set_disjointness").records(config, "eval")
    expected = mqar.jrt_prompt(
        mqar.set_disjointness(6, seed=0, stream=1, first_size=4, second_size=8,
                              vocab_size=32),
        3,
    )  # fmt: skip
    np.testing.assert_array_equal(records["inputs"], expected["inputs"])
    assert (records["positions"][:, 0] == expected["inputs"].shape[1] - 1).all()


def test_fresh_training_batches_are_seeded_and_resume_from_the_iterator(tmp_path):
    config = load("selective_copying", tmp_path=tmp_path)
    options = dict(config.data.options, fresh_train=True)
    config = config_lib.apply_overrides(config, {"data.options": options})
    train, held_out = registry.get_task("selective_copying").datasets(config, 0, 1)
    it = iter(train.to_iter_dataset())
    first = [next(it) for _ in range(2)]
    state = it.get_state()
    rest = [next(it) for _ in range(2)]
    again = iter(train.to_iter_dataset())
    again.set_state(state)
    for a, b in zip(rest, [next(again) for _ in range(2)], strict=True):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(first[0]["inputs"], first[1]["inputs"])
    assert first[0]["inputs"].shape == (64, 32)
    assert first[0]["labels"].shape == (64, 4)
    assert len(held_out) == 512 // 64


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("mqar", {"num_kv_pair": 3}, r"unknown key\(s\) \['num_kv_pair'\]"),
        ("selective_copying", {"jrt_repeats": 2}, r"jrt_repeats.*not to"),
        ("mqar", {"num_train": 0}, r"num_train.*int >= 1"),
        ("mqar", {"num_kv_pairs": 40}, r"mqar data settings"),
        (
            "mqar",
            {"fresh_train": True, "train_sets": [{}, {}]},
            r"fresh_train.*2 train_sets",
        ),
        ("parity", {"curriculum": "twice"}, r"curriculum.*one of"),
        ("parity", {"measure_steps": 20}, r"measure_steps.*<= epoch_steps"),
        ("parity", {"ns": [3]}, r"ns.*curriculum='none'"),
        ("dms", {"curriculum": "none", "ns": [1]}, r"ns.*ints >= 2"),
    ],
)
def test_bad_options_raise_config_errors(tmp_path, name, options, match):
    config = load(name, tmp_path=tmp_path)
    config.data.options.update(options)
    task = registry.get_task(name)
    with pytest.raises(config_lib.ConfigError, match=match):
        task.build_model(config, nnx.Rngs(0))
        task.datasets(config, 0, 1)


# --- N-parity / N-DMS: heads and curricula -----------------------------------------


@pytest.mark.parametrize(
    "kind, extra",
    [("single", {}), ("multi", {"add_heads": 2}), ("sliding", {"init_heads": 3})],
)
def test_schedule_follows_the_curriculum_rule(kind, extra):
    curriculum = parity.Curriculum(kind, max_n=9, **extra)
    schedule = synthetic.HeadSchedule.from_curriculum(
        curriculum, 9, epoch_sequences=4, measure_sequences=2
    )
    state = curriculum.init()
    for stage in range(schedule.num_stages):
        active = np.asarray(schedule.active(stage))
        assert tuple(np.asarray(schedule.ns)[active]) == curriculum.ns(state)
        assert int(schedule.n_max(stage)) == max(curriculum.ns(state))
        state = parity.CurriculumState(stage + 1)
    assert max(curriculum.ns(state)) > 9  # the next stage would exceed max_n
    rng = np.random.default_rng(0)
    for trial in range(200):
        stage = int(rng.integers(schedule.num_stages))
        count = 64  # no exact ties with 98 %, which rounding would decide
        correct = rng.integers(58, 65, size=schedule.num_heads)
        ns = np.asarray(schedule.ns)[np.asarray(schedule.active(stage))]
        expected = curriculum.update(
            parity.CurriculumState(stage), correct[ns - schedule.ns[0]] / count
        )
        got = schedule.advance(jnp.int32(stage), jnp.asarray(correct), count)
        assert int(got) == expected.stage, (trial, stage, correct)


def test_bit_stream_loss_matches_a_hand_computed_reference():
    schedule = synthetic.HeadSchedule(
        (2, 3, 4), ((True, False, False), (True, True, False), (True, True, True)),
        0.98, epoch_sequences=16, measure_sequences=8,
    )  # fmt: skip
    model = synthetic.MultiHeadReadout(
        schedule, 8, 1, "lru", mixer_options={"state_size": 4}, conv_width=2,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    model.stage[...] = jnp.int32(1)
    rng = np.random.default_rng(3)
    batch = synthetic._stream_records(
        rng, 6, task="parity", ns=schedule.ns, length=schedule.seq_len
    )
    task = registry.get_task("parity")
    loss_fn = nnx.jit(task.loss)  # compiled: quicker than op by op
    forward = nnx.jit(lambda m, x, n: m(x, n))
    loss, sums = loss_fn(model, batch)
    lengths = np.asarray(schedule.lengths(1, jnp.asarray(batch["u"])))
    assert lengths.min() >= 3 + 2 and lengths.max() <= 3 + 1 + 9
    logits = np.asarray(forward(model, batch["inputs"], lengths))
    # The padding trick: each row's answer is that of its last M bits alone.
    for i in np.argsort(lengths)[[0, -1]]:  # the shortest and the longest
        alone = forward(
            model, batch["inputs"][i : i + 1, -lengths[i] :], lengths[i : i + 1]
        )
        np.testing.assert_allclose(logits[i], np.asarray(alone)[0], atol=1e-5)
    logp = log_softmax(logits)
    y = batch["targets"]
    ce = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]  # [6, 3]
    right = logits.argmax(-1) == y
    np.testing.assert_allclose(float(loss), ce[:, :2].sum(1).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(sums["nats"]), ce[:, :2].sum(), rtol=1e-5)
    assert float(sums["correct"]) == right[:, :2].sum()
    assert float(sums["count"]) == 12
    assert float(sums["top_correct"]) == right[:, 1].sum()
    summary = task.summarize(jax.device_get(sums))
    assert summary["eval/n_max"] == 3 and summary["eval/stage"] == 1
    assert summary["eval/accuracy"] == pytest.approx(right[:, :2].mean())
    assert int(model.seen[...]) == 0, "evaluation mode records nothing"
    model.train()
    loss_fn(model, batch)
    assert int(model.seen[...]) == 6
    assert int(model.count[...]) == 0, "outside the measured end of the epoch"


def test_record_measures_the_end_of_each_epoch_then_advances():
    schedule = synthetic.HeadSchedule(
        (2, 3), ((True, False), (True, True)), 0.9, epoch_sequences=8,
        measure_sequences=4,
    )  # fmt: skip
    model = synthetic.MultiHeadReadout(schedule, 4, 1, "lru", rngs=nnx.Rngs(0))
    model.record(jnp.array([0, 0]), 4)  # not measured: accuracy 0 ignored
    assert int(model.count[...]) == 0 and int(model.seen[...]) == 4
    model.record(jnp.array([4, 0]), 4)  # measured; epoch ends; head 2 is 100 %
    assert int(model.stage[...]) == 1
    assert int(model.seen[...]) == int(model.count[...]) == 0
    model.record(jnp.array([4, 4]), 4)
    model.record(jnp.array([4, 3]), 4)  # N = 3 at 75 %: stays
    assert int(model.stage[...]) == 1
    model.record(jnp.array([0, 0]), 4)
    model.record(jnp.array([4, 4]), 4)  # the last stage: never beyond it
    assert int(model.stage[...]) == 1


def _state(workdir):
    _, state, step = trainer.restore_run(workdir)
    return step, jax.tree.map(
        np.asarray, jax.device_get(checkpoint_lib.to_savable(state))
    )


def test_curriculum_advances_inside_training_and_resumes_exactly(tmp_path):
    options = {
        "curriculum": "multi", "max_n": 6, "epoch_steps": 2, "measure_steps": 1,
        "threshold": 0.01, "cache_dir": str(tmp_path / "cache"),
    }  # fmt: skip
    overrides = {
        "data.options": options, "data.batch_size": 8, "model.features": 16,
        "optim.schedule": "constant", "train.steps": 8, "train.eval_every": 4,
        "train.checkpoint_every": 2, "train.eval_batches": 1,
    }  # fmt: skip
    config = load("parity", **overrides)
    trainer.train(config, tmp_path / "straight")
    half = config_lib.apply_overrides(config, {"train.steps": 5})
    trainer.train(half, tmp_path / "resumed")  # stops mid-epoch (epoch = 2 steps)
    _, mid = _state(tmp_path / "resumed")
    assert int(mid[0]["stage"][...]) == 2 and int(mid[0]["seen"][...]) == 8
    trainer.train(config, tmp_path / "resumed")
    step_a, a = _state(tmp_path / "straight")
    step_b, b = _state(tmp_path / "resumed")
    assert step_a == step_b == 8
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert int(a[0]["stage"][...]) == 4  # one advance per epoch: N = 2 ... 6
    evals = [e for e in metrics(tmp_path / "straight") if "eval/n_max" in e]
    assert [e["eval/n_max"] for e in evals] == [4.0, 6.0]


# --- every config end to end, and the tiny presets learning ------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_full_preset_resolves(name):
    config = load(name, variant="default")
    task = registry.get_task(name)
    if name in ("parity", "dms"):
        assert task.schedule(config).ns[-1] == 100
    else:
        assert task.data_sets(config, "train") and task.data_sets(config, "eval")
    nnx.eval_shape(lambda: task.build_model(config, nnx.Rngs(0)))


# mqar and parity train their whole tiny presets in the tests below.
@pytest.mark.parametrize(
    "name", ["dms", "induction_heads", "selective_copying", "set_disjointness"]
)
def test_the_other_configs_train_a_few_steps(tmp_path, name):
    config = load(
        name,
        tmp_path=tmp_path,
        **{
            "train.steps": 2,
            "train.eval_every": 2,
            "train.eval_batches": 1,
            "optim.warmup_steps": 0,
            "model.depth": 1,  # compiles faster; the presets use 1-2 layers
        },
    )
    result = trainer.train(config, tmp_path / "run")
    assert result.step == 2 and 0.0 <= result.metrics["eval/accuracy"] <= 1.0


def _final_eval(config, workdir):
    trainer.train(config, workdir)
    return [e for e in metrics(workdir) if "eval/accuracy" in e][-1]


def test_tiny_mqar_learns_associative_recall(tmp_path):
    final = _final_eval(load("mqar", tmp_path=tmp_path), tmp_path / "run")
    # chance 1/16; copying some value of the context gets 1/4
    assert final["eval/accuracy"] > 0.6, final


def test_tiny_parity_curriculum_advances_and_learns(tmp_path):
    final = _final_eval(load("parity", tmp_path=tmp_path), tmp_path / "run")
    assert final["eval/n_max"] >= 3, final  # advanced: > 98 % on N = 2
    assert final["eval/accuracy"] > 0.7, final  # chance 0.5


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, threshold",
    [
        ("dms", 0.7),  # chance 0.5
        ("selective_copying", 0.5),  # chance 1/6
        ("induction_heads", 0.5),  # chance 1/7
        ("set_disjointness", 0.4),  # chance 1/28; an element of A: 1/4
    ],
)
def test_tiny_presets_learn_above_chance(tmp_path, name, threshold):
    final = _final_eval(load(name, tmp_path=tmp_path), tmp_path / "run")
    assert final["eval/accuracy"] > threshold, final
