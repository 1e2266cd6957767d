"""Checkpoints with orbax: asynchronous saves, last K and best kept, exact resume.

A checkpoint of step ``s`` is the folder ``DIR/checkpoints/s`` holding four items:

* ``state``: the whole training state (parameters, optimizer moments, step counters,
  random-number state, normalisation statistics) as arrays, restored onto any mesh;
* ``data``: the grain iterator's position (its ``get_state()``), so the data stream
  resumes where it stopped;
* ``config``: the resolved run config (JSON);
* ``meta``: the step and, when an evaluation ran at that step, its metrics;
* ``host``: a JSON dict of host-side state (a continual-learning run's accuracy
  matrix, say), restored as ``{}`` from checkpoints written without it.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so
a process killed mid-save leaves no checkpoint that looks finished. A checkpoint that
is finished but unreadable (a truncated or corrupted file) is skipped with a warning
and the previous one is restored instead.

Two guarantees protect the checkpoints on disk:

* **The best checkpoint survives a restart.** The last ``keep`` checkpoints are kept,
  and so is the one with the best ``best_metric``. Each checkpoint's metrics are in
  its ``meta`` item; a ``Checkpointer`` reads them back when it opens, so a resumed
  run ranks the checkpoints of earlier processes too and its first save does not
  delete the best one.
* **A checkpoint of another run's state is not "unreadable".** When the saved state's
  layout (its tree paths and array shapes) differs from the one asked for, as after
  a change of ``optim.grad_clip_norm``, ``restore`` raises ``StateMismatchError``
  (with the checkpoint's saved config) instead of skipping the checkpoint, and
  nothing on disk is touched.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, LatestN

log = logging.getLogger(__name__)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_savable(state):
    """Typed PRNG keys become their raw ``uint32`` data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def abstract_savable(abstract_state):
    """The abstract counterpart of ``to_savable`` (shapes, dtypes and shardings)."""

    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct) and jnp.issubdtype(
            x.dtype, jax.dtypes.prng_key
        ):
            data = jax.eval_shape(lambda k: jax.random.key_data(k), x)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(one, abstract_state)


def from_savable(savable, abstract_state):
    """Inverse of ``to_savable``: wraps key data back into typed keys."""

    def one(saved, like):
        if isinstance(like, jax.ShapeDtypeStruct) and jnp.issubdtype(
            like.dtype, jax.dtypes.prng_key
        ):
            return jax.random.wrap_key_data(saved)
        return saved

    return jax.tree.map(one, savable, abstract_state)


class StateMismatchError(ValueError):
    """A checkpoint holds a state of another layout than the one being restored.

    Its files are intact: it was written by a run whose settings give a different
    state (another optimizer, model size or extension), so it is neither skipped
    nor set aside as unreadable.

    Attributes:
      step: the checkpoint's step.
      config: the config saved with it (a dict), or None if it cannot be read.
    """

    def __init__(self, message: str, step: int, config: dict | None):
        super().__init__(message)
        self.step = step
        self.config = config


def _layout(tree) -> dict[tuple, tuple]:
    """``{path: shape}`` of a state tree, abstract or as saved in orbax metadata."""
    return {k: tuple(v.shape) for k, v in ocp.tree.to_flat_dict(tree).items()}


def _best(metrics: dict[int, dict], steps, name: str, mode: str) -> int | None:
    """The step of ``steps`` with the best ``metrics[step][name]`` (``mode``:
    ``"min"`` or ``"max"``; ties: the earliest), or None if none has it."""
    ranked = [(metrics[s][name], s) for s in steps if name in metrics.get(s, {})]
    if not ranked:
        return None
    pick = min if mode == "min" else max
    return pick(ranked, key=lambda value_step: value_step[0])[1]


@dataclasses.dataclass
class _KeepBest:
    """An orbax preservation policy keeping the step with the best recorded metric.

    ``metrics`` is the ``Checkpointer``'s record (``{step: metrics}``), read from the
    checkpoints' ``meta`` items when it opens and added to on each save. Orbax's own
    ``BestN`` only knows the metrics given to ``save`` in the current process, so
    after a restart it would delete the best checkpoint at the first save.
    """

    metrics: dict[int, dict[str, float]]
    name: str
    mode: str

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        best = _best(self.metrics, [c.step for c in checkpoints], self.name, self.mode)
        return [c.step == best for c in checkpoints]


class Checkpointer:
    """Saves and restores training checkpoints under ``directory``.

    Args:
      directory: where the step folders go (created if missing).
      keep: how many of the latest checkpoints to keep.
      best_metric: metric (from ``save(..., metrics=)``) that ranks checkpoints; the
        best one is kept in addition to the latest ``keep``.
      best_mode: ``"min"`` or ``"max"``.
      asynchronous: save in a background thread (``wait`` blocks until done).
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        keep: int = 3,
        best_metric: str | None = "eval/loss",
        best_mode: str = "min",
        asynchronous: bool = True,
    ):
        self.directory = pathlib.Path(directory).absolute()
        self.best_metric = best_metric
        self.best_mode = best_mode
        # {step: eval metrics} of the checkpoints on disk and of this process's saves.
        self._metrics: dict[int, dict[str, float]] = {}
        policies = [LatestN(n=keep)]
        if best_metric:
            policies.append(_KeepBest(self._metrics, best_metric, best_mode))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=AnyPreservationPolicy(policies),
            enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        if best_metric:
            self._load_metrics()

    def _load_metrics(self) -> None:
        """Records the metrics saved in each checkpoint's ``meta`` item."""
        for step in self.steps():
            try:
                meta = self._read(step, meta=ocp.args.JsonRestore())["meta"]
            except Exception:  # noqa: BLE001 - an unreadable checkpoint is not best
                continue
            self._metrics[step] = meta.get("metrics", {})

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(
        self,
        step: int,
        state,
        *,
        data_state: dict | None,
        config: dict,
        metrics: dict[str, float] | None = None,
        host: dict | None = None,
    ) -> None:
        """Starts saving ``state`` (asynchronously unless configured otherwise)."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self._metrics[int(step)] = metrics
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(to_savable(state)),
            data=ocp.args.JsonSave(data_state or {}),
            config=ocp.args.JsonSave(config),
            meta=ocp.args.JsonSave({"step": int(step), "metrics": metrics}),
            host=ocp.args.JsonSave(host or {}),
        )
        self.manager.save(int(step), args=args, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def best_step(self) -> int | None:
        """The kept step with the best ``best_metric``, or None if none has it."""
        if not self.best_metric:
            return None
        return _best(self._metrics, self.steps(), self.best_metric, self.best_mode)

    def _read(self, step, **items):
        return self.manager.restore(step, args=ocp.args.Composite(**items))

    def restore(self, abstract_state, step: int | None = None) -> dict[str, Any] | None:
        """Restores the newest readable checkpoint (or exactly ``step``).

        Args:
          abstract_state: ``jax.ShapeDtypeStruct`` tree (with target shardings) of the
            state, e.g. from ``nnx.eval_shape``; the checkpoint is resharded to it.
          step: a specific step; ``None`` tries the newest first and falls back to
            older ones when a checkpoint cannot be read.

        Returns:
          ``{"step", "state", "data", "config", "meta", "host", "unreadable"}``
          (``unreadable``: the newer steps that could not be read), or None when
          there is no checkpoint.

        Raises:
          StateMismatchError: a checkpoint's state has another layout than
            ``abstract_state`` (nothing is skipped or set aside then).
          RuntimeError: checkpoints exist but none could be read.
        """
        candidates = [step] if step is not None else list(reversed(self.steps()))
        if not candidates:
            return None
        abstract = abstract_savable(abstract_state)
        errors = []
        for candidate in candidates:
            items = dict(
                state=ocp.args.StandardRestore(abstract),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            )
            if (self.directory / str(candidate) / "host").exists():
                items["host"] = ocp.args.JsonRestore()
            try:
                out = self._read(candidate, **items)
            except Exception as e:  # noqa: BLE001 - any unreadable file means skip
                self._check_layout(candidate, abstract)
                errors.append(f"step {candidate}: {type(e).__name__}: {e}")
                warnings.warn(
                    f"checkpoint {self.directory / str(candidate)} is unreadable "
                    f"({type(e).__name__}: {str(e)[:200]}); trying the previous one",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            return {
                "step": candidate,
                "state": from_savable(out["state"], abstract_state),
                "data": out["data"],
                "config": out["config"],
                "meta": out["meta"],
                "host": out["host"] if "host" in items else {},
                "unreadable": [c for c in candidates if c > candidate],
            }
        raise RuntimeError(
            f"no readable checkpoint in {self.directory}:\n" + "\n".join(errors)
        )

    def _check_layout(self, step: int, abstract) -> None:
        """Raises ``StateMismatchError`` if the state saved at ``step`` has other
        tree paths or array shapes than ``abstract``; returns if they agree or if
        the saved layout cannot be read (a damaged checkpoint)."""
        handler = ocp.StandardCheckpointHandler()
        try:
            saved = _layout(handler.metadata(self.directory / str(step) / "state"))
        except Exception:  # noqa: BLE001 - no readable layout: damaged, not other
            return
        if saved == _layout(abstract):
            return
        try:
            config = self._read(step, config=ocp.args.JsonRestore())["config"]
        except Exception:  # noqa: BLE001 - the config is only for the message
            config = None
        raise StateMismatchError(
            f"the checkpoint {self.directory / str(step)} holds a state of another "
            "layout (tree paths or array shapes) than the one restored",
            step,
            config,
        )

    def set_aside(self, step: int) -> pathlib.Path:
        """Renames an unreadable checkpoint to ``<step>.unreadable`` (kept for
        inspection, invisible to restores) so that training can save that step again.
        """
        source = self.directory / str(step)
        target = self.directory / f"{step}.unreadable"
        suffix = 1
        while target.exists():
            target = self.directory / f"{step}.unreadable.{suffix}"
            suffix += 1
        source.rename(target)
        self._metrics.pop(step, None)
        self.manager.reload()
        return target

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
