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

What ``train`` guarantees about the files in its work directory:

* **No non-finite state is saved.** The train step also returns ``finite``, one
  device bool: the loss, the gradient norm and the updated parameters are finite
  (then so are the optimizer's moments, which only add finite gradients). The flags
  stay on the device until the loop is about to log, evaluate or save, and are then
  read in one transfer (no host sync per step). At the first non-finite step
  training stops with a one-line ``FloatingPointError`` naming it, before that
  state is saved: the keep-last-N rotation never runs on a bad state, so the last
  finite checkpoint stays on disk and a rerun with better settings resumes from it.
* **``config.json`` describes the checkpoints.** It is written only after the
  checkpoints were restored (or found absent). A rerun whose config gives a state
  of another layout than the saved one (``optim.grad_clip_norm=none`` changes the
  optimizer's state) fails with a ``ConfigError`` listing the changed keys, and
  leaves ``config.json`` and the checkpoints as they were.
* **One trainer per work directory.** ``train`` holds an exclusive ``flock`` on
  ``DIR/.lock`` (holding its pid and host) from start to end; a second one fails at
  once with a ``ConfigError``. The kernel drops the lock when the process exits,
  however it exits, so no stale lock is left behind.
* **The best checkpoint survives a resume** (see ``checkpoint.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import signal
import socket
import sys
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import config as config_lib
from seqjax.tasks import registry
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import extension as extension_lib
from seqjax.train import mesh as mesh_lib
from seqjax.train import metrics as metrics_lib
from seqjax.train import optimizers, plots, progress, schedules


@dataclasses.dataclass
class Run:
    """Everything built from a config: the task, mesh, state layout and jitted steps.

    Without an extension the train state is ``nnx.state((model, optimizer))``; with
    one it is an ``extension.TrainState`` holding that and the extension's state.
    """

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
    extension: extension_lib.Extension | None = None

    def core(self, state):
        """The model-and-optimizer part of a train state."""
        return state.model if self.extension is not None else state

    def model(self, state) -> nnx.Module:
        """The model of a state (evaluation mode), for sampling or inspection."""
        model, _ = nnx.merge(self.graphdef, self.core(state))
        model.eval()
        return model

    def params(self, state):
        """The model's ``nnx.Param`` variables of a train state (a pytree)."""
        return nnx.state(self.model(state), nnx.Param)

    def extension_state(self, state):
        """The extension's state of a train state."""
        if self.extension is None:
            raise ValueError("this run has no extension")
        return state.extension

    def with_extension(self, state, extension_state):
        """``state`` with its extension state replaced (same shapes), placed like
        the old one."""
        old = self.extension_state(state)
        placed = jax.tree.map(
            lambda new, o: (
                jax.device_put(jnp.asarray(new, o.dtype), o.sharding)
                if not jnp.issubdtype(o.dtype, jax.dtypes.prng_key)
                else jax.device_put(new, o.sharding)
            ),
            extension_state,
            old,
        )
        return state._replace(extension=placed)

    def context(self, state) -> extension_lib.StepContext:
        """The model of ``state`` (evaluation mode) as pure functions of its params."""
        return _step_context(self.task, self.model(state))


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


def _add(loss_and_sums, extra):
    """``(loss + extra, sums)``."""
    loss, sums = loss_and_sums
    return loss + extra, sums


def _all_finite(tree) -> jax.Array:
    """One bool: every floating-point leaf of ``tree`` is finite."""
    flags = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def _step_metrics(loss, grads, model: nnx.Module) -> dict[str, jax.Array]:
    """The train step's metrics: ``loss``, ``grad_norm`` (the global norm of
    ``grads``) and ``finite``: the loss, the gradient norm and the updated model's
    parameters are finite. (The optimizer's moments are then finite too: they
    only ever add finite gradients to finite values.)"""
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    params = nnx.state(model, nnx.Param)
    finite = jnp.isfinite(loss) & jnp.isfinite(norm) & _all_finite(params)
    return {"loss": loss, "grad_norm": norm, "finite": finite}


def _step_context(task, model: nnx.Module) -> extension_lib.StepContext:
    """``model``'s outputs and task loss as pure functions of its parameters."""
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)

    def outputs(params, batch):
        if not hasattr(task, "outputs"):
            raise TypeError(
                f"task {task.name!r} has no outputs(model, batch) method, which this "
                "extension needs"
            )
        return task.outputs(nnx.merge(graphdef, params, rest), batch)

    def task_loss(params, batch):
        return task.loss(nnx.merge(graphdef, params, rest), batch)[0]

    return extension_lib.StepContext(outputs=outputs, task_loss=task_loss)


def build(
    config: config_lib.Config,
    mesh: jax.sharding.Mesh | None = None,
    *,
    task=None,
    extension: extension_lib.Extension | None = None,
) -> Run:
    """Builds the run for ``config`` on ``mesh`` (from ``config.mesh`` by default).

    Args:
      config: the run's config.
      mesh: the device mesh; default from ``config.mesh``.
      task: the task object; default ``seqjax.tasks.get_task(config.task)``.
      extension: pure functions added to the train step, with their state in the
        train state (``seqjax.train.extension``); none by default.
    """
    config_lib.validate(config)
    task = task if task is not None else registry.get_task(config.task)
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
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    if extension is not None:

        def create_extension(core):
            model, _ = nnx.merge(graphdef, core)
            return extension.init(nnx.state(model, nnx.Param))

        abstract_extension = jax.eval_shape(create_extension, abstract_state)
        abstract_state = extension_lib.TrainState(abstract_state, abstract_extension)
        # The extension's state follows the parameters' rules (by shape), so a copy
        # of the parameters (EWC's anchor, its Fisher) is sharded like them.
        shardings = extension_lib.TrainState(
            shardings,
            mesh_lib.state_shardings(
                abstract_extension, mesh, config.mesh.fsdp_min_size
            ),
        )
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        shardings,
    )
    batch_sharding = mesh_lib.batch_sharding(mesh)
    accumulate = o.accumulation_steps

    def initial_state():
        core = nnx.split(create())[1]
        if extension is None:
            return core
        return extension_lib.TrainState(core, create_extension(core))

    init_state = jax.jit(initial_state, out_shardings=shardings)

    def mean_gradient(loss_fn, model, batch):
        """``(mean loss, mean gradient)`` of ``loss_fn(model, batch) -> (loss, aux)``
        over ``accumulate`` micro-batches."""
        grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
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
        return loss / accumulate, jax.tree.map(lambda g: g / accumulate, grads)

    def train_step(state, batch):
        model, optimizer = nnx.merge(graphdef, state)
        model.train()
        loss, grads = mean_gradient(lambda m, b: task.loss(m, b), model, batch)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), _step_metrics(loss, grads, model)

    def train_step_extended(state, batch):
        """The train step with the extension's batch, loss, gradient and state
        functions (see ``seqjax.train.extension``)."""
        model, optimizer = nnx.merge(graphdef, state.model)
        model.train()
        ext, original = state.extension, batch
        if extension.batch is not None:
            batch, ext = extension.batch(ext, batch)
        ctx = _step_context(task, model)

        def loss_fn(m, b):
            if extension.loss is None:
                return task.loss(m, b)
            params = nnx.state(m, nnx.Param)
            if not hasattr(task, "loss_from_outputs"):
                return _add(task.loss(m, b), extension.loss(ext, params, b, ctx))
            # The model runs once: an extension asking for the outputs of these
            # parameters on this batch (LwF) gets the ones the task loss used.
            outputs = task.outputs(m, b)
            shared = ctx._replace(
                outputs=lambda p, x: (
                    outputs if p is params and x is b else ctx.outputs(p, x)
                )
            )
            value = extension.loss(ext, params, b, shared)
            return _add(task.loss_from_outputs(outputs, b), value)

        loss, grads = mean_gradient(loss_fn, model, batch)
        old_params = jax.tree.map(lambda x: x, nnx.state(model, nnx.Param))
        if extension.grads is not None:
            grads = extension.grads(ext, grads, old_params, batch, ctx)
        optimizer.update(model, grads)
        if extension.update is not None:
            new_params = jax.tree.map(lambda x: x, nnx.state(model, nnx.Param))
            ext = extension.update(ext, old_params, new_params, grads, original)
        metrics = _step_metrics(loss, grads, model)
        return extension_lib.TrainState(nnx.state((model, optimizer)), ext), metrics

    def eval_step(state, batch):
        model, _ = nnx.merge(graphdef, state.model if extension else state)
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
            train_step if extension is None else train_step_extended,
            in_shardings=(shardings, batch_sharding),
            out_shardings=(shardings, replicated),
            donate_argnums=0,
        ),
        eval_step=jax.jit(
            eval_step,
            in_shardings=(shardings, batch_sharding),
            out_shardings=replicated,
        ),
        extension=extension,
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


@contextlib.contextmanager
def _saves_finished_on_error(checkpointer: checkpoint_lib.Checkpointer):
    """On an exception, lets the checkpoint saves in flight finish before it
    propagates, so that the last good checkpoint is complete on disk."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            checkpointer.close()
        raise


class _FiniteGuard:
    """Stops training at the first non-finite step, before its state is used.

    ``add`` keeps each step's ``finite`` flag on the device (no host sync per step);
    ``check``, called before a log, an evaluation or a save, reads the pending flags
    in one transfer and raises at the first false one.

    Args:
      config: the run's config (for the advice in the message).
      last_saved: the step of the newest checkpoint on disk, or None.
    """

    def __init__(self, config: config_lib.Config, last_saved: int | None):
        self.config = config
        self.last_saved = last_saved
        self._pending: list[tuple[int, jax.Array]] = []

    def add(self, step: int, metrics: dict) -> None:
        self._pending.append((step, metrics["finite"]))

    def check(self) -> None:
        """Raises ``FloatingPointError`` if a pending step was not finite.

        Raises:
          FloatingPointError: one line naming the first non-finite step and the
            last checkpoint kept, with what to change.
        """
        pending, self._pending = self._pending, []
        flags = jax.device_get([flag for _, flag in pending])
        bad = [step for (step, _), ok in zip(pending, flags, strict=True) if not ok]
        if not bad:
            return
        kept = (
            "no checkpoint was saved"
            if self.last_saved is None
            else f"the last finite checkpoint (step {self.last_saved}) is kept"
        )
        clip = self.config.optim.grad_clip_norm is None
        raise FloatingPointError(
            f"training diverged at step {bad[0]}: its loss, gradients or new state are "
            f"not finite, so it was not saved and {kept}; lower "
            "optim.learning_rate" + (" or set optim.grad_clip_norm" if clip else "")
        )


@contextlib.contextmanager
def _workdir_lock(workdir: pathlib.Path):
    """Holds ``workdir/.lock`` exclusively while the body runs.

    The lock is an ``fcntl.flock`` on the open file, which the kernel drops when the
    process exits however it exits, so it cannot go stale; the file holds the
    holder's pid and host for the message. Where the file system does not support
    locks it warns and goes on unlocked.

    Raises:
      ConfigError: another trainer holds the lock.
    """
    with open(workdir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise config_lib.ConfigError(
                f"{workdir} is in use by {holder}: wait for that run to end or use "
                "another workdir"
            ) from None
        except OSError as e:
            warnings.warn(
                f"cannot lock {workdir} ({e}); make sure no other trainer uses it",
                RuntimeWarning,
                stacklevel=3,
            )
            locked = False
        else:
            locked = True
            f.truncate(0)
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            f.flush()
        try:
            yield
        finally:
            if locked:
                fcntl.flock(f, fcntl.LOCK_UN)


@dataclasses.dataclass
class Result:
    """What ``train`` returns: the final step, metrics, and why it stopped."""

    step: int
    metrics: dict[str, float]
    stopped_by: str | None = None
    sample: str | None = None
    host: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Phase:
    """A stretch of training on one data stream, ended by a host-side callback.

    ``train`` runs its phases one after the other; the global step counts on across
    them. A continual-learning run is one phase per task.

    Attributes:
      steps: training steps in the phase (>= 1).
      train_data: grain ``MapDataset`` of batches (repeated as needed).
      eval_data: batches for the periodic evaluation during the phase.
      name: shown in messages and logged as ``phase`` at the phase's end.
      end: ``end(run, state, host) -> (state, host, record)``, called on the host
        after the phase's last step and before that step's checkpoint: it may
        return a new train state (e.g. ``run.with_extension(state, ...)``), a new
        ``host`` dict (JSON; saved in every checkpoint and restored on resume) and
        metrics to log at that step.
    """

    steps: int
    train_data: Any
    eval_data: Any
    name: str = ""
    end: Callable[[Run, Any, dict], tuple[Any, dict, dict]] | None = None


def _phase_at(phases: list[Phase], step: int) -> tuple[int, int]:
    """``(phase index, first step of that phase)`` of global ``step`` (1-based);
    the step after the last phase maps to the last phase."""
    first = 1
    for index, phase in enumerate(phases):
        if step < first + phase.steps:
            return index, first
        first += phase.steps
    return len(phases) - 1, first - phases[-1].steps


def train(
    config: config_lib.Config,
    workdir: str | pathlib.Path,
    *,
    task=None,
    extension: extension_lib.Extension | None = None,
    phases: list[Phase] | Callable[[Run], list[Phase]] | None = None,
    on_start: Callable[[Run, Any, dict], tuple[dict, dict]] | None = None,
) -> Result:
    """Trains ``config`` in ``workdir``, resuming from its checkpoints if any.

    Writes ``workdir/config.json``, ``workdir/metrics.jsonl``,
    ``workdir/tensorboard/``, ``workdir/checkpoints/<step>/`` and, at the end,
    ``workdir/plots/*.png``.

    Args:
      config: the run's config.
      workdir: the run's directory (resumes from its checkpoints).
      task: the task object; default ``seqjax.tasks.get_task(config.task)``.
      extension: pure functions added to the train step (``seqjax.train.extension``).
      phases: the ``Phase`` list to run in order (or a function of the built ``Run``
        returning them), whose steps must add up to ``train.steps``; default one
        phase over the task's datasets.
      on_start: ``on_start(run, state, host) -> (host, record)``, called once
        before the first step of a fresh run (not on resume).

    Raises:
      ConfigError: another trainer uses ``workdir``, or its checkpoints hold the
        state of a run with other settings.
      FloatingPointError: a step's loss, gradients or new state are not finite
        (nothing after the last finite checkpoint is saved).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # One lock per run: on several hosts, process 0 holds it for them all.
    lock = _workdir_lock(workdir) if jax.process_index() == 0 else None
    with lock or contextlib.nullcontext():
        return _train(config, workdir, task, extension, phases, on_start)


def _train(config, workdir, task, extension, phases, on_start) -> Result:
    """``train``'s body, run while holding the work directory's lock."""
    t = config.train
    run = build(config, task=task, extension=extension)
    if phases is None:
        train_data, eval_data = run.task.datasets(
            config, jax.process_index(), jax.process_count()
        )
        phases = [Phase(t.steps, train_data, eval_data)]
    elif callable(phases):
        phases = phases(run)
    if sum(p.steps for p in phases) != t.steps or min(p.steps for p in phases) < 1:
        raise config_lib.ConfigError(
            f"the phases' steps {[p.steps for p in phases]} must be >= 1 and add up "
            f"to train.steps ({t.steps})"
        )
    checkpointer = checkpoint_lib.Checkpointer(
        workdir / "checkpoints",
        keep=t.keep_checkpoints,
        best_metric=t.best_metric,
        best_mode=t.best_mode,
    )
    try:
        restored = checkpointer.restore(run.abstract_state)
    except checkpoint_lib.StateMismatchError as e:
        checkpointer.close()
        saved = e.config if e.config is not None else _saved_config(workdir)
        changed = "; ".join(_config_changes(saved or {}, config)) or (
            "none; the task, extension or code differs"
        )
        raise config_lib.ConfigError(
            f"the checkpoints in {workdir} hold a run with a different state "
            f"(changed keys: {changed}): use the saved config or another workdir"
        ) from None
    config_lib.save_json(config, workdir / "config.json")
    host: dict = {}
    if restored is None:
        state, start, data_state = run.init_state(), 0, None
    else:
        state, start = restored["state"], restored["step"]
        data_state, host = restored["data"], restored["host"]
        for step in restored["unreadable"]:
            kept = checkpointer.set_aside(step)
            print(
                f"unreadable checkpoint of step {step} moved to {kept}", file=sys.stderr
            )
        _warn_config_changes(restored["config"], config)
        print(f"resumed from step {start} ({checkpointer.directory / str(start)})")

    writer = metrics_lib.MetricsWriter(workdir)
    writer.truncate_after(start)
    if start == 0 and on_start is not None:
        host, record = on_start(run, state, host)
        if record:
            writer.write(0, record)

    def open_phase(index: int, saved: dict | None):
        data = iter(phases[index].train_data.to_iter_dataset())
        if saved is not None:
            data.set_state(saved)
        return data

    phase_index, _ = _phase_at(phases, start + 1)
    if data_state and "phase" not in data_state:  # written before phases existed
        data_state = {"phase": 0, "iterator": data_state}
    resumes_phase = bool(data_state) and data_state["phase"] == phase_index
    data = open_phase(phase_index, data_state["iterator"] if resumes_phase else None)
    phase_end = sum(p.steps for p in phases[: phase_index + 1])
    bar = progress.Progress(t.steps, initial=start, enabled=t.progress)

    def show_phase(index: int) -> None:
        if phases[index].name:
            label = f"{phases[index].name} ({index + 1}/{len(phases)})"
            bar.set_phase(
                label, phase_end - phases[index].steps + 1, phases[index].steps
            )

    show_phase(phase_index)
    timer = metrics_lib.Throughput()
    guard = _FiniteGuard(config, start if restored is not None else None)
    last_eval: dict[str, float] = {}
    stopped_by = None
    with _StopRequest() as stop, _saves_finished_on_error(checkpointer):
        for step in range(start + 1, t.steps + 1):
            if step > phase_end:
                phase_index += 1
                phase_end += phases[phase_index].steps
                data = open_phase(phase_index, None)
                show_phase(phase_index)
            phase = phases[phase_index]
            batch = next(data)
            state, step_metrics = run.train_step(
                state, mesh_lib.put_batch(batch, run.mesh)
            )
            timer.add(run.task.tokens(batch))
            guard.add(step, step_metrics)
            record: dict[str, float] = {}
            logged = step % t.log_every == 0 or step == t.steps or step == phase_end
            evaluated = step % t.eval_every == 0 or step == t.steps
            if logged or evaluated:
                guard.check()
            if logged:
                values = jax.device_get(step_metrics)
                record.update(
                    {
                        "train/loss": float(values["loss"]),
                        "train/grad_norm": float(values["grad_norm"]),
                        "train/lr": run.learning_rate(step - 1),
                        **timer.rates(),
                    }
                )
            if evaluated:
                with timer.paused():  # evaluation is not training throughput
                    last_eval = evaluate_state(
                        run, state, phase.eval_data, t.eval_batches
                    )
                record.update(last_eval)
            ended = step == phase_end and phase.end is not None
            if ended:
                with timer.paused():
                    state, host, extra = phase.end(run, state, host)
                record.update(extra)
            if record:
                writer.write(step, record)
                bar.update(step, record)
            if (
                step % t.checkpoint_every == 0
                or step == t.steps
                or ended
                or stop.signum
            ):
                guard.check()
                with timer.paused():
                    checkpointer.save(
                        step,
                        state,
                        data_state={"phase": phase_index, "iterator": data.get_state()},
                        config=config_lib.to_dict(config),
                        metrics=last_eval if evaluated else None,
                        host=host,
                    )
                guard.last_saved = step
            if stop.signum:
                stopped_by = signal.Signals(stop.signum).name
                break
    checkpointer.wait()
    bar.close()
    writer.close()
    final_step = step if t.steps > start else start
    result = Result(
        step=final_step, metrics=last_eval, stopped_by=stopped_by, host=host
    )
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


def _config_changes(saved: dict, config: config_lib.Config) -> list[str]:
    """``"key: old -> new"`` for each config key whose value differs from ``saved``
    (a ``config_lib.to_dict`` of an earlier config); sections missing from
    ``saved`` are skipped."""
    changes = []
    for name, value in config_lib.to_dict(config).items():
        old = saved.get(name)
        if not isinstance(value, dict):
            if old != value:
                changes.append(f"{name}: {old!r} -> {value!r}")
        elif isinstance(old, dict):
            changes += [
                f"{name}.{key}: {old.get(key)!r} -> {new!r}"
                for key, new in value.items()
                if old.get(key) != new
            ]
    return changes


def _saved_config(workdir: pathlib.Path) -> dict | None:
    """The ``config.json`` of ``workdir`` as a dict, or None if there is none."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((workdir / "config.json").read_text())
    return None


def _warn_config_changes(saved: dict, config: config_lib.Config) -> None:
    changed = _config_changes(saved, config)
    if changed:
        print("resuming with a changed config: " + "; ".join(changed), file=sys.stderr)


def restore_run(
    workdir: str | pathlib.Path,
    *,
    which: str = "latest",
    task=None,
    extension: extension_lib.Extension | None = None,
):
    """Rebuilds a run from ``workdir/config.json`` and restores a checkpoint.

    Args:
      workdir: a training work directory.
      which: ``"latest"`` or ``"best"`` (by ``train.best_metric``), or a step number.
      task, extension: as given to ``train`` for this run (defaults: the config's
        registered task, no extension).

    Returns:
      ``(run, state, step)``.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} a training workdir?")
    config = config_lib.load_json(path)
    run = build(config, task=task, extension=extension)
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
