"""The trainer's extension points and phases: an extra loss term, batch and gradient
transforms and per-step state against hand computations; phase-end callbacks and
host state; exact resume with an extension across a phase boundary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_lm import tiny_lm

from seqjax import config as config_lib
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import extension as extension_lib
from seqjax.train import trainer


def tiny(steps=4, **overrides) -> config_lib.Config:
    """The trainer tests' tiny LM run on an LRU, with a constant rate, no weight
    decay and rare evaluations."""
    changes = {
        "model.mixer": "lru",
        "model.mixer_options": {},
        "model.conv_width": None,
        "data.max_bytes": 40_000,
        "data.batch_size": 4,
        "optim.warmup_steps": 0,
        "optim.schedule": "constant",
        "optim.weight_decay": 0.0,
        "train.eval_every": 100,
        "train.eval_batches": 1,
        "train.sample_prompt": "",
    }
    return tiny_lm(steps, **{**changes, **overrides})


def first_batch(run):
    train_data, _ = run.task.datasets(run.config, 0, 1)
    return next(iter(train_data.to_iter_dataset()))


def squared_norm(tree) -> jax.Array:
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))


def counting(**functions) -> extension_lib.Extension:
    """An extension whose state counts steps (plus the given functions)."""

    def update(state, old, new, grads, batch):
        return {**state, "steps": state["steps"] + 1}

    return extension_lib.Extension(
        init=lambda params: {"steps": jnp.zeros((), jnp.int32)},
        update=update,
        **functions,
    )


def test_extra_loss_term_is_added_and_differentiated():
    c = 0.05
    config = tiny()
    plain = trainer.build(config)
    penalised = trainer.build(
        config,
        extension=counting(loss=lambda s, params, b, ctx: c * squared_norm(params)),
    )
    batch = first_batch(plain)
    state = plain.init_state()
    model = plain.model(state)
    model.train()

    def total(m):
        return plain.task.loss(m, batch)[0] + c * squared_norm(nnx.state(m, nnx.Param))

    expected_loss, grads = nnx.value_and_grad(total)(model)
    ext_state, metrics = penalised.train_step(penalised.init_state(), batch)
    np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["grad_norm"], jnp.sqrt(squared_norm(grads)), rtol=1e-5
    )
    assert int(ext_state.extension["steps"]) == 1


def test_a_do_nothing_extension_trains_like_no_extension():
    config = tiny()
    plain, counted = trainer.build(config), trainer.build(config, extension=counting())
    batch = first_batch(plain)
    a, b = plain.init_state(), counted.init_state()
    for _ in range(3):
        a, _ = plain.train_step(a, batch)
        b, _ = counted.train_step(b, batch)
    for x, y in zip(
        jax.tree.leaves(plain.params(a)),
        jax.tree.leaves(counted.params(b)),
        strict=True,
    ):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert int(b.extension["steps"]) == 3


def test_gradient_transform_replaces_the_gradient():
    """Zeroed gradients (no weight decay, Adam): the parameters do not move."""
    run = trainer.build(
        tiny(),
        extension=counting(
            grads=lambda s, g, params, b, ctx: jax.tree.map(jnp.zeros_like, g)
        ),
    )
    state = run.init_state()
    before = jax.tree.map(np.asarray, run.params(state))
    state, metrics = run.train_step(state, first_batch(run))
    assert float(metrics["grad_norm"]) == 0.0
    for x, y in zip(
        jax.tree.leaves(before), jax.tree.leaves(run.params(state)), strict=True
    ):
        np.testing.assert_array_equal(x, y)


def test_batch_transform_feeds_the_loss_and_update_sees_the_original():
    seen = {}

    def mask_everything(state, batch):
        return {**batch, "loss_mask": jnp.zeros_like(batch["loss_mask"])}, state

    def update(state, old, new, grads, batch):
        seen["mask"] = batch["loss_mask"]
        return {**state, "kept": jnp.sum(batch["loss_mask"])}

    run = trainer.build(
        tiny(),
        extension=extension_lib.Extension(
            init=lambda p: {"kept": jnp.zeros((), jnp.int32)},
            batch=mask_everything,
            update=update,
        ),
    )
    batch = first_batch(run)
    state, metrics = run.train_step(run.init_state(), batch)
    assert float(metrics["loss"]) == 0.0  # every position masked out
    assert int(state.extension["kept"]) == int(batch["loss_mask"].sum()) > 0


def test_step_context_matches_the_task_loss():
    run = trainer.build(tiny(), extension=counting())
    state = run.init_state()
    batch = first_batch(run)
    ctx = run.context(state)
    expected = run.task.loss(run.model(state), batch)[0]
    np.testing.assert_allclose(ctx.task_loss(run.params(state), batch), expected)
    with pytest.raises(TypeError, match="outputs"):
        ctx.outputs(run.params(state), batch)


def phases_with(run, ends, fail=False):
    """Two phases of 3 steps on the LM data; each end records its step in the host
    dict and stores the parameters' squared norm in the extension state."""
    train_data, eval_data = run.task.datasets(run.config, 0, 1)

    def make_end(index):
        def end(run, state, host):
            if fail and index == 0:
                raise RuntimeError("injected failure at the end of phase 0")
            ends.append(index)
            norm = squared_norm(run.params(state))
            new = {**run.extension_state(state), "norm": norm}
            host = {**host, "ends": host.get("ends", []) + [index]}
            return run.with_extension(state, new), host, {"phase_end": index}

        return end

    return [
        trainer.Phase(3, train_data, eval_data, name=f"p{i}", end=make_end(i))
        for i in range(2)
    ]


def norm_extension():
    ext = counting()
    return ext._replace(
        init=lambda p: {
            "steps": jnp.zeros((), jnp.int32),
            "norm": jnp.zeros((), jnp.float32),
        }
    )


def final_state(workdir, extension):
    _, state, step = trainer.restore_run(workdir, extension=extension)
    return step, jax.tree.map(np.asarray, checkpoint_lib.to_savable(state))


def test_phases_run_their_end_callbacks_and_resume_exactly(tmp_path):
    config = tiny(steps=6, **{"train.checkpoint_every": 2})
    ext = norm_extension()
    ends = []
    result = trainer.train(
        config,
        tmp_path / "straight",
        extension=ext,
        phases=lambda run: phases_with(run, ends),
    )
    assert ends == [0, 1] and result.host == {"ends": [0, 1]}
    step, straight = final_state(tmp_path / "straight", ext)
    assert step == 6 and int(straight.extension["steps"]) == 6

    # Die inside the first phase's end callback: the step-2 checkpoint survives,
    # and the rerun repeats steps 3 and the callback, then ends identically.
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="injected"):
        trainer.train(
            config,
            broken,
            extension=ext,
            phases=lambda run: phases_with(run, [], fail=True),
        )
    assert checkpoint_lib.Checkpointer(broken / "checkpoints").steps() == [2]
    ends = []
    result = trainer.train(
        config, broken, extension=ext, phases=lambda run: phases_with(run, ends)
    )
    assert ends == [0, 1] and result.host == {"ends": [0, 1]}
    _, resumed = final_state(broken, ext)
    for x, y in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(x, y)


def test_phase_steps_must_add_up_to_train_steps(tmp_path):
    run_config = tiny(steps=5)
    with pytest.raises(config_lib.ConfigError, match="add up"):
        trainer.train(
            run_config,
            tmp_path,
            extension=norm_extension(),
            phases=lambda run: phases_with(run, []),
        )


def test_extension_state_is_sharded_like_the_parameters():
    """On 2 devices with FSDP, a copy of the parameters in the extension state gets
    each parameter's sharding; a scalar is replicated."""
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices")
    config = tiny(**{"mesh.data": 1, "mesh.fsdp": 2, "mesh.fsdp_min_size": 64})
    ext = extension_lib.Extension(
        init=lambda params: {
            "anchor": jax.tree.map(jnp.array, params),
            "count": jnp.zeros((), jnp.int32),
        }
    )
    run = trainer.build(config, extension=ext)
    state = run.init_state()
    params = run.params(state)
    anchor = state.extension["anchor"]
    sharded = 0
    for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(anchor), strict=True):
        assert a.sharding.is_equivalent_to(p.sharding, p.ndim)
        sharded += not p.sharding.is_fully_replicated
    assert sharded > 0  # the check above compared some split arrays
    assert state.extension["count"].sharding.is_fully_replicated
    state, _ = run.train_step(state, first_batch(run))  # and the step runs
