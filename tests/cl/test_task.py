"""The stream classification task: task-incremental masking against a hand
computation, and the trainer running the model once when an extension asks for the
outputs the task loss already computed."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqjax import config as config_lib
from seqjax.cl import runner
from seqjax.cl import task as task_lib
from seqjax.tasks import classification
from seqjax.train import extension as extension_lib
from seqjax.train import trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "cl_parity.py:tiny")
MICRO = {
    "data.seq_len": 8,
    "model.features": 8,
    "cl.num_tasks": 3,
    "cl.steps_per_task": 2,
    "data.batch_size": 8,
    "data.options": {"sizes": [64, 16]},
    "mesh.data": 1,
}


def stream_run(setting, extension=None):
    config = config_lib.apply_overrides(
        config_lib.load_config(CONFIG), {**MICRO, "cl.setting": setting}
    )
    config, stream = runner.resolve(config)
    task = task_lib.StreamClassification(stream)
    run = trainer.build(config, task=task, extension=extension)
    records = runner.with_weights(stream.experiences[1].train)
    train, _ = classification.batched(config, records, records, 0, 1)
    return run, task, train[0]


def test_task_incremental_loss_masks_each_row_to_its_task():
    run, task, batch = stream_run("task")
    assert task.masks.tolist() == [
        [True, True, False, False, False, False],
        [False, False, True, True, False, False],
        [False, False, False, False, True, True],
    ]
    model = run.model(run.init_state())
    logits = np.asarray(task.outputs(model, batch), np.float64)
    loss, sums = task.loss(model, batch)
    # By hand: a softmax over task 1's two units (2, 3) only.
    own = logits[:, 2:4]
    log_p = own - np.log(np.exp(own).sum(-1, keepdims=True))
    targets = np.asarray(batch["targets"])
    assert set(targets) <= {2, 3}
    expected = -np.mean(log_p[np.arange(len(targets)), targets - 2])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    correct = np.sum(np.argmax(own, -1) + 2 == targets)
    assert float(sums["correct"]) == correct


def test_domain_incremental_loss_uses_every_unit():
    run, task, batch = stream_run("domain")
    assert task.masks is None
    model = run.model(run.init_state())
    logits = task.outputs(model, batch)
    expected = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch["targets"]
    ).mean()
    np.testing.assert_allclose(task.loss(model, batch)[0], expected, rtol=1e-5)


@pytest.mark.parametrize("share", [True, False])
def test_outputs_for_the_extension_are_the_task_losss_own(monkeypatch, share):
    """A loss term on ``ctx.outputs(params, batch)``: the same loss and gradient
    whether the trainer shares the task's outputs (one forward pass) or not."""
    c = 0.3

    def penalty(state, params, batch, ctx):
        return c * jnp.mean(jnp.square(ctx.outputs(params, batch)))

    ext = extension_lib.Extension(init=lambda p: {}, loss=penalty)
    if not share:  # a task without loss_from_outputs: the model runs twice
        unshared = task_lib.StreamClassification.loss_from_outputs
        monkeypatch.setattr(
            task_lib.StreamClassification,
            "loss",
            lambda self, m, b: unshared(self, self.outputs(m, b), b),
        )
        monkeypatch.delattr(task_lib.StreamClassification, "loss_from_outputs")
    calls = []
    original = task_lib.StreamClassification.outputs
    monkeypatch.setattr(
        task_lib.StreamClassification,
        "outputs",
        lambda self, m, b: calls.append(1) or original(self, m, b),
    )
    run, task, batch = stream_run("domain", extension=ext)
    state = run.init_state()
    model = run.model(state)
    model.train()

    def total(m):
        z = original(task, m, batch)
        return task.loss(m, batch)[0] + c * jnp.mean(jnp.square(z))

    expected, grads = nnx.value_and_grad(total)(model)
    calls.clear()
    _, metrics = run.train_step(state, batch)
    assert len(calls) == (1 if share else 2)  # forward passes traced in the step
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
