"""``run(config, workdir)``: train one model on a stream of tasks with a strategy.

The run is one ``seqjax.train.trainer.train`` call with one ``Phase`` per task of
the stream (``cl.steps_per_task`` steps each, so ``train.steps = num_tasks *
steps_per_task``), the strategy's ``Extension`` in the train step, and host-side
callbacks:

* before the first step, the randomly initialised model is evaluated on every
  task's test split (the row ``b`` of forward transfer);
* after the last step of task ``i``: the strategy's ``end_task`` updates its state
  (EWC's Fisher, SI's importance, LwF's snapshot, A-GEM's memory), then the model
  is evaluated on every task's test split: row ``i`` of the accuracy matrix ``R``
  (``R[i, j]`` = accuracy on task ``j`` after training through task ``i``).

``R`` and ``b`` live in the checkpoint's host dict, the strategy's state in the train
state, the data position in the data state: a run killed anywhere and rerun with the
same command continues bit for bit. After every task the report in ``workdir/cl/``
(``cl_report.md``, ``cl_matrix.csv``, ``r_matrix.png``, ``task_accuracy.png``) is
rewritten, and ``metrics.jsonl`` gets ``cl/acc_task_<j>`` and the summary metrics
(``cl/acc``, ``cl/bwt``, ``cl/fwt``, ``cl/forgetting``, over the tasks so far).

Example::

    seqjax cl --config configs/cl_split_mnist.py:tiny --workdir runs/cl-split
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import grain
import jax
import numpy as np

from seqjax import config as config_lib
from seqjax.cl import metrics, report, strategies
from seqjax.cl import strategy as strategy_lib
from seqjax.cl import streams as streams_lib
from seqjax.cl import task as task_lib
from seqjax.tasks import classification
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import trainer

REPORT_DIR = "cl"


@dataclasses.dataclass
class Result:
    """What ``run`` returns: the accuracy matrix, the random baseline, the summary
    metrics, the report's files and the trainer's result."""

    R: np.ndarray
    b: np.ndarray
    summary: dict[str, float]
    task_names: list[str]
    files: dict[str, pathlib.Path]
    train: trainer.Result


def resolve(config: config_lib.Config) -> tuple[config_lib.Config, Any]:
    """The stream of ``config`` and the config with ``task`` and ``train.steps``
    set from it.

    Raises:
      ConfigError: no ``cl.stream``, or a stream, setting or option that does not
        exist.
    """
    if not config.cl.stream:
        raise config_lib.ConfigError(
            "cl.stream is empty: set it to one of "
            + ", ".join(sorted(streams_lib.STREAMS))
        )
    stream = streams_lib.make_stream(config)
    steps = stream.num_tasks * config.cl.steps_per_task
    config = config_lib.apply_overrides(
        config,
        {"task": task_lib.StreamClassification.name, "train.steps": steps},
    )
    return config, stream


def with_weights(records: grain.MapDataset) -> grain.MapDataset:
    return records.map(lambda r: {**r, "weights": np.float32(1.0)})


def stream_spec(config, stream, train_records) -> strategy_lib.StreamSpec:
    """What a strategy may know of ``stream`` (see ``StreamSpec``)."""
    first = with_weights(stream.experiences[0].train)[0]
    example = {
        k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype)
        for k, v in first.items()
    }
    return strategy_lib.StreamSpec(
        num_tasks=stream.num_tasks,
        task_classes=tuple(e.classes for e in stream.experiences),
        num_classes=stream.num_classes,
        setting=stream.setting,
        example=example,
        batch_size=config.data.batch_size,
        train_sizes=tuple(len(r) for r in train_records),
    )


def training_records(stream, data: str, index: int) -> grain.MapDataset:
    """The records task ``index`` trains on: its own (``"current"``), those of
    tasks ``0..index`` (``"cumulative"``) or of every task (``"joint"``)."""
    experiences = stream.experiences
    chosen = {
        "current": experiences[index : index + 1],
        "cumulative": experiences[: index + 1],
        "joint": experiences,
    }[data]
    if len(chosen) == 1:
        return chosen[0].train
    return grain.MapDataset.concatenate([e.train for e in chosen])


def task_batches(config, records: grain.MapDataset, seed: int):
    """One pass over ``records`` in a seeded order, in training-size batches padded
    with weight-0 rows (for ``TaskEnd.batches``)."""

    def batches():
        shuffled = records.shuffle(seed=seed)
        padded = grain.MapDataset.source(
            classification.PaddedSource(shuffled, config.data.batch_size)
        )
        return iter(padded.batch(config.data.batch_size))

    return batches


def accuracies(run, state, eval_sets) -> list[float]:
    """The model's accuracy on each task's test batches."""
    return [
        trainer.evaluate_state(run, state, data, len(data))["eval/accuracy"]
        for data in eval_sets
    ]


def run(config: config_lib.Config, workdir: str | pathlib.Path) -> Result:
    """Trains ``config``'s model on its stream with its strategy (see the module
    docstring); reruns resume.

    Raises:
      ConfigError: a bad stream, setting, strategy or option (one line naming it),
        or a workdir holding a run of another stream or strategy.
    """
    workdir = pathlib.Path(workdir)
    config, stream = resolve(config)
    _check_same_run(config, workdir)
    names = [e.name for e in stream.experiences]
    count = stream.num_tasks
    task = task_lib.StreamClassification(stream)
    process, processes = jax.process_index(), jax.process_count()
    spec = stream_spec(config, stream, [e.train for e in stream.experiences])
    strategy = strategies.make_strategy(
        config.cl.strategy, dict(config.cl.strategy_options), spec
    )
    records = [training_records(stream, strategy.data, k) for k in range(count)]
    if min(len(r) for r in records) < config.data.batch_size:
        raise config_lib.ConfigError(
            f"a task has {min(len(r) for r in records)} training examples, fewer "
            f"than one batch (data.batch_size={config.data.batch_size}); raise "
            "cl.train_examples or lower data.batch_size"
        )
    tests = [with_weights(e.test) for e in stream.experiences]
    trains = [with_weights(r) for r in records]
    batched = [
        classification.batched(config, trains[k], tests[k], process, processes)
        for k in range(count)
    ]
    eval_sets = [b[1] for b in batched]

    def write(host) -> dict[str, pathlib.Path]:
        R = _matrix(host, count)
        b = np.asarray(host["b"]) if "b" in host else None
        return report.write_report(
            workdir / REPORT_DIR,
            R,
            b,
            names,
            title=f"{config.cl.strategy} on {stream.name} "
            f"({stream.setting}-incremental)",
        )

    def on_start(run, state, host):
        b = accuracies(run, state, eval_sets)
        host = {**host, "b": b, "R": []}
        return host, {f"cl/random_acc_task_{j}": v for j, v in enumerate(b)}

    def make_end(index: int):
        def end(run, state, host):
            if strategy.end_task is not None:
                new = strategy.end_task(
                    strategy_lib.TaskEnd(
                        index=index,
                        state=run.extension_state(state),
                        params=run.params(state),
                        ctx=run.context(state),
                        batches=task_batches(
                            config, trains[index], config.data.seed + index
                        ),
                    )
                )
                state = run.with_extension(state, new)
            row = accuracies(run, state, eval_sets)
            host = {**host, "R": list(host.get("R", []))[:index] + [row]}
            R = _matrix(host, count)[: index + 1, : index + 1]
            b = np.asarray(host["b"])[: index + 1]
            record = {f"cl/acc_task_{j}": v for j, v in enumerate(row)}
            record["cl/task"] = index
            record.update({f"cl/{k}": v for k, v in metrics.summary(R, b).items()})
            write(host)
            return state, host, record

        return end

    phases = [
        trainer.Phase(
            config.cl.steps_per_task,
            batched[k][0],
            eval_sets[k],
            name=f"task {names[k]}",
            end=make_end(k),
        )
        for k in range(count)
    ]
    result = trainer.train(
        config,
        workdir,
        task=task,
        extension=strategy.extension,
        phases=phases,
        on_start=on_start,
    )
    host = result.host
    R = _matrix(host, count)
    b = np.asarray(host.get("b", [np.nan] * count))
    done = len(host.get("R", []))
    summary = metrics.summary(R[:done, :done], b[:done]) if done else {}
    return Result(
        R=R,
        b=b,
        summary=summary,
        task_names=names,
        files=write(host) if "b" in host else {},
        train=result,
    )


# What a resumed run must share with the run in its workdir: its state's layout and
# meaning depend on them.
_FIXED = ("stream", "setting", "num_tasks", "steps_per_task", "strategy",
          "strategy_options", "train_examples")  # fmt: skip


def _check_same_run(config: config_lib.Config, workdir: pathlib.Path) -> None:
    """Refuses to resume a workdir whose run had another stream or strategy."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    saved = config_lib.to_dict(config_lib.load_json(path)).get("cl", {})
    now = config_lib.to_dict(config)["cl"]
    changed = [k for k in _FIXED if saved.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise config_lib.ConfigError(
            f"{workdir} holds a run with cl.{k}={saved.get(k)!r}, not {now[k]!r}: "
            "use another --workdir, or the same settings to resume it"
        )


def restore(workdir: str | pathlib.Path, *, which: str = "latest"):
    """The run, train state and host dict (``R``, ``b``) of a continual-learning
    workdir's checkpoint (``which``: ``"latest"`` or a step number).

    Returns:
      ``(run, state, step, host)``.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} a workdir?")
    config, stream = resolve(config_lib.load_json(path))
    spec = stream_spec(config, stream, [e.train for e in stream.experiences])
    strategy = strategies.make_strategy(
        config.cl.strategy, dict(config.cl.strategy_options), spec
    )
    run = trainer.build(
        config,
        task=task_lib.StreamClassification(stream),
        extension=strategy.extension,
    )
    checkpointer = checkpoint_lib.Checkpointer(
        workdir / "checkpoints", keep=config.train.keep_checkpoints, best_metric=None
    )
    restored = checkpointer.restore(
        run.abstract_state, None if which == "latest" else int(which)
    )
    checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
    return run, restored["state"], restored["step"], restored["host"]


def _matrix(host: dict, count: int) -> np.ndarray:
    """``R`` as a ``[count, count]`` array, NaN for the tasks not yet trained."""
    R = np.full((count, count), np.nan)
    for i, row in enumerate(host.get("R", [])):
        R[i] = row
    return R
