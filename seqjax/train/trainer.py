"""The trainer: ``train(config, workdir)``; ``evaluate``/``generate`` from a workdir.

One training state holds everything that changes during training — the model's
parameters and other variables (normalisation statistics, random-number streams), the
optimizer's moments and step — as one pytree. The train and eval steps are ``jax.jit``
functions of that state with ``in_shardings``/``out_shardings`` from the mesh rules in
``mesh.py`` and the state donated, so the same code runs on one device, on 8 host CPU
devices and on a pod slice. Gradient accumulation averages micro-batch gradients inside
the step. Rerunning ``train`` on the same work directory resumes from the newest
readable checkpoint, restoring the state, the data iterator's position and the metrics
log, so N steps straight and k steps, a kill and N-k more give identical parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import config as config_lib
from seqjax.tasks import registry
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import mesh as mesh_lib
from seqjax.train import metrics as metrics_lib
from seqjax.train import optimizers, plots, progress, schedules


@dataclasses.dataclass
class Run:
    """Everything built from a config: the task, mesh, state layout and jitted steps."""

    config: config_lib.Config
    task: Any
    mesh: jax.sharding.Mesh
    graphdef: Any
    abstract_state: Any
    shardings: Any
    learning_rate: Callable[[int], float]
    init_state: Callable[[], Any]
    train_step: Callable
    eval_step: Callable

    def model(self, state) -> nnx.Module:
        """The model of a state (evaluation mode), for sampling or inspection."""
        model, _ = nnx.merge(self.graphdef, state)
        model.eval()
        return model


def _schedule(config: config_lib.Config):
    """The learning-rate schedule: ``optim.schedule`` with the run's peak rate, warmup
    and length filled in where the schedule takes them, then ``schedule_options``."""
    o = config.optim
    shared = {
        "peak": o.learning_rate,
        "peaks": o.learning_rate,
        "lr": o.learning_rate,
        "warmup_steps": o.warmup_steps,
        "total_steps": config.train.steps,
    }
    accepted = schedules.schedule_arguments(o.schedule)
    kwargs = {k: v for k, v in shared.items() if k in accepted}
    kwargs.update(o.schedule_options)
    try:
        return schedules.make_schedule(o.schedule, **kwargs)
    except (ValueError, TypeError) as e:
        raise config_lib.ConfigError(
            f"optim.schedule / schedule_options: {e}"
        ) from None


def build(config: config_lib.Config, mesh: jax.sharding.Mesh | None = None) -> Run:
    """Builds the run for ``config`` on ``mesh`` (from ``config.mesh`` by default)."""
    config_lib.validate(config)
    task = registry.get_task(config.task)
    mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh)
    o, seed = config.optim, config.train.seed
    schedule = _schedule(config)

    def create():
        rngs = nnx.Rngs(params=seed, dropout=seed + 1)
        model = task.build_model(config, rngs)
        tx = optimizers.make_optimizer(
            nnx.state(model, nnx.Param),
            learning_rate=schedule,
            ssm_learning_rate=o.ssm_learning_rate,
            weight_decay=o.weight_decay,
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            grad_clip_norm=o.grad_clip_norm,
        )
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    abstract = nnx.eval_shape(create)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = mesh_lib.state_shardings(
        abstract_state, mesh, config.mesh.fsdp_min_size
    )
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        shardings,
    )
    batch_sharding = mesh_lib.batch_sharding(mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    accumulate = o.accumulation_steps

    init_state = jax.jit(lambda: nnx.split(create())[1], out_shardings=shardings)

    def train_step(state, batch):
        model, optimizer = nnx.merge(graphdef, state)
        model.train()
        grad_fn = nnx.value_and_grad(lambda m, b: task.loss(m, b), has_aux=True)
        rows = jax.tree.leaves(batch)[0].shape[0]
        # Micro-batch i takes every accumulate-th row, so each one spans all devices.
        micro = jax.tree.map(
            lambda x: x.reshape((rows // accumulate, accumulate) + x.shape[1:]), batch
        )
        grads, loss = None, 0.0
        for i in range(accumulate):
            (value, _), g = grad_fn(model, jax.tree.map(lambda x, i=i: x[:, i], micro))
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
            loss = loss + value
        grads = jax.tree.map(lambda g: g / accumulate, grads)
        optimizer.update(model, grads)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        metrics = {"loss": loss / accumulate, "grad_norm": norm}
        return nnx.state((model, optimizer)), metrics

    def eval_step(state, batch):
        model, _ = nnx.merge(graphdef, state)
        model.eval()
        return task.loss(model, batch)[1]

    return Run(
        config=config,
        task=task,
        mesh=mesh,
        graphdef=graphdef,
        abstract_state=abstract_state,
        shardings=shardings,
        learning_rate=lambda step: float(schedule(step)),
        init_state=init_state,
        train_step=jax.jit(
            train_step,
            in_shardings=(shardings, batch_sharding),
            out_shardings=(shardings, replicated),
            donate_argnums=0,
        ),
        eval_step=jax.jit(
            eval_step,
            in_shardings=(shardings, batch_sharding),
            out_shardings=replicated,
        ),
    )


def evaluate_state(run: Run, state, eval_data, max_batches: int) -> dict[str, float]:
    """Runs the eval step over the first ``max_batches`` batches and summarises."""
    count = min(len(eval_data), max_batches)
    if count == 0:
        raise ValueError(
            "the evaluation split holds no full batch; lower data.eval_batch_size or "
            "data.seq_len, or raise data.held_out_fraction"
        )
    totals = None
    for i in range(count):
        sums = run.eval_step(state, mesh_lib.put_batch(eval_data[i], run.mesh))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    return run.task.summarize(jax.device_get(totals))


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\nreceived {signal.Signals(signum).name}: saving a checkpoint, then "
            "stopping (send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclasses.dataclass
class Result:
    """What ``train`` returns: the final step, metrics, and why it stopped."""

    step: int
    metrics: dict[str, float]
    stopped_by: str | None = None
    sample: str | None = None


def train(config: config_lib.Config, workdir: str | pathlib.Path) -> Result:
    """Trains ``config`` in ``workdir``, resuming from its checkpoints if any.

    Writes ``workdir/config.json``, ``workdir/metrics.jsonl``,
    ``workdir/tensorboard/``, ``workdir/checkpoints/<step>/`` and, at the end,
    ``workdir/plots/*.png``.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t = config.train
    run = build(config)
    config_lib.save_json(config, workdir / "config.json")
    checkpointer = checkpoint_lib.Checkpointer(
        workdir / "checkpoints",
        keep=t.keep_checkpoints,
        best_metric=t.best_metric,
        best_mode=t.best_mode,
    )
    train_data, eval_data = run.task.datasets(
        config, jax.process_index(), jax.process_count()
    )
    data = iter(train_data.to_iter_dataset())
    restored = checkpointer.restore(run.abstract_state)
    if restored is None:
        state, start = run.init_state(), 0
    else:
        state, start = restored["state"], restored["step"]
        data.set_state(restored["data"])
        for step in restored["unreadable"]:
            kept = checkpointer.set_aside(step)
            print(
                f"unreadable checkpoint of step {step} moved to {kept}", file=sys.stderr
            )
        _warn_config_changes(restored["config"], config)
        print(f"resumed from step {start} ({checkpointer.directory / str(start)})")

    writer = metrics_lib.MetricsWriter(workdir)
    writer.truncate_after(start)
    bar = progress.Progress(t.steps, initial=start, enabled=t.progress)
    timer = metrics_lib.Throughput()
    last_eval: dict[str, float] = {}
    stopped_by = None
    with _StopRequest() as stop:
        for step in range(start + 1, t.steps + 1):
            batch = next(data)
            state, step_metrics = run.train_step(
                state, mesh_lib.put_batch(batch, run.mesh)
            )
            timer.add(run.task.tokens(batch))
            record: dict[str, float] = {}
            if step % t.log_every == 0 or step == t.steps:
                values = jax.device_get(step_metrics)
                if not np.isfinite(values["loss"]):
                    raise FloatingPointError(
                        f"training loss is {values['loss']} at step {step}; lower "
                        "optim.learning_rate or set optim.grad_clip_norm"
                    )
                record.update(
                    {
                        "train/loss": float(values["loss"]),
                        "train/grad_norm": float(values["grad_norm"]),
                        "train/lr": run.learning_rate(step - 1),
                        **timer.rates(),
                    }
                )
            evaluated = step % t.eval_every == 0 or step == t.steps
            if evaluated:
                with timer.paused():  # evaluation is not training throughput
                    last_eval = evaluate_state(run, state, eval_data, t.eval_batches)
                record.update(last_eval)
            if record:
                writer.write(step, record)
                bar.update(step, record)
            if step % t.checkpoint_every == 0 or step == t.steps or stop.signum:
                with timer.paused():
                    checkpointer.save(
                        step,
                        state,
                        data_state=data.get_state(),
                        config=config_lib.to_dict(config),
                        metrics=last_eval if evaluated else None,
                    )
            if stop.signum:
                stopped_by = signal.Signals(stop.signum).name
                break
    checkpointer.wait()
    bar.close()
    writer.close()
    final_step = step if t.steps > start else start
    result = Result(step=final_step, metrics=last_eval, stopped_by=stopped_by)
    if stopped_by is None and config.task == "lm" and t.sample_prompt:
        result.sample = sample_text(run, state, t.sample_prompt)
    checkpointer.close()
    with contextlib.suppress(ValueError):  # no metrics yet: nothing to plot
        plots.plot_metrics(workdir)
    return result


def sample_text(run: Run, state, prompt: str, *, max_tokens=None, seed=0) -> str:
    t = run.config.train
    return run.task.sample(
        run.model(state),
        prompt,
        max_tokens or t.sample_tokens,
        rng=jax.random.key(seed),
        temperature=t.temperature,
        top_k=t.top_k,
    )


def _warn_config_changes(saved: dict, config: config_lib.Config) -> None:
    now = config_lib.to_dict(config)
    changed = [
        f"{section}.{key}: {saved[section][key]!r} -> {value!r}"
        for section, fields in now.items()
        if isinstance(fields, dict) and isinstance(saved.get(section), dict)
        for key, value in fields.items()
        if saved[section].get(key) != value
    ]
    if changed:
        print("resuming with a changed config: " + "; ".join(changed), file=sys.stderr)


def restore_run(workdir: str | pathlib.Path, *, which: str = "latest"):
    """Rebuilds a run from ``workdir/config.json`` and restores a checkpoint.

    Args:
      workdir: a training work directory.
      which: ``"latest"`` or ``"best"`` (by ``train.best_metric``), or a step number.

    Returns:
      ``(run, state, step)``.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} a training workdir?")
    config = config_lib.load_json(path)
    run = build(config)
    t = config.train
    checkpointer = checkpoint_lib.Checkpointer(
        workdir / "checkpoints", keep=t.keep_checkpoints, best_metric=t.best_metric,
        best_mode=t.best_mode,
    )  # fmt: skip
    if which == "best":
        step = checkpointer.best_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {workdir} has {t.best_metric}")
    elif which == "latest":
        step = None
    else:
        step = int(which)
    restored = checkpointer.restore(run.abstract_state, step)
    checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
    return run, restored["state"], restored["step"]


def evaluate(workdir: str | pathlib.Path, *, which: str = "latest") -> dict[str, Any]:
    """Evaluates a checkpoint of ``workdir`` on the held-out data."""
    run, state, step = restore_run(workdir, which=which)
    _, eval_data = run.task.datasets(
        run.config, jax.process_index(), jax.process_count()
    )
    metrics = evaluate_state(run, state, eval_data, run.config.train.eval_batches)
    return {"step": step, **metrics}


def generate(
    workdir: str | pathlib.Path,
    prompt: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
    which: str = "latest",
) -> str:
    """Samples a continuation of ``prompt`` from a language model's checkpoint."""
    run, state, _ = restore_run(workdir, which=which)
    if run.config.task != "lm":
        raise ValueError(f"generate needs a language model; this run's task is "
                         f"{run.config.task!r}")  # fmt: skip
    t = run.config.train
    return run.task.sample(
        run.model(state),
        prompt,
        max_tokens or t.sample_tokens,
        rng=jax.random.key(seed),
        temperature=t.temperature if temperature is None else temperature,
        top_k=t.top_k if top_k is None else top_k,
    )


def dump(metrics: dict) -> str:
    return json.dumps(
        {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
    )
