"""Continual-learning benchmarks: every strategy on permuted and split MNIST.

For each stream and strategy (and seed) a ``seqjax cl`` run trains a ParaGRU
classifier on the stream's tasks in order (``configs/cl_permuted_mnist.py``,
``configs/cl_split_mnist.py``, ``--preset`` picking their variant) and records the
accuracy matrix; the table gives, per strategy, the average final accuracy (ACC),
backward transfer (BWT) and forgetting (``seqjax.cl.metrics``), mean ± std over
seeds, with the published number of the same stream and setting beside ACC where a
paper reports one. A second table gives each strategy's train-step time against
fine-tuning's, measured in turns on the same batches with the strategy's state
active (after one task end, so that penalties, snapshots and memories are in use).

Usage::

    python experiments/cl_benchmarks.py [--preset tiny|full] [--out DIR]
        [--mnist-dir DIR] [--strategies ...] [--streams ...] [--seeds 0 1]

Every run is a workdir under ``OUT/runs/`` (``OUT`` defaults to
``runs/cl_benchmarks``): rerunning after an interruption resumes the unfinished
run and skips the finished ones. Writes ``OUT/cl_<preset>_<device>.md`` and ``.csv``
and a PNG of ACC and forgetting per strategy; ``--out experiments/results`` writes
the committed tables. ``tiny`` runs on a laptop CPU in about half an hour from the
10,000 ``t10k`` MNIST images (``--mnist-dir``, or ``$SEQJAX_MNIST_DIR``); ``full``
is the configs' default setting (pixel by pixel, for GPUs, with the full MNIST).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments import benchlib  # noqa: E402
from seqjax import config as config_lib  # noqa: E402
from seqjax.cl import runner, strategies  # noqa: E402
from seqjax.cl import strategy as strategy_lib  # noqa: E402
from seqjax.cl import task as task_lib  # noqa: E402
from seqjax.tasks import classification  # noqa: E402
from seqjax.train import mesh as mesh_lib  # noqa: E402
from seqjax.train import trainer  # noqa: E402

CONFIGS = {
    "permuted_mnist": ROOT / "configs" / "cl_permuted_mnist.py",
    "split_mnist": ROOT / "configs" / "cl_split_mnist.py",
}
STRATEGIES = ("naive", "joint", "cumulative", "replay", "ewc", "si", "lwf", "agem")

# Per preset: the configs' variant, seeds, overrides, and each strategy's options.
PRESETS = {
    "tiny": {
        "variant": "tiny",
        "seeds": (0,),
        "overrides": [],
        # EWC's λ from {1, 10, 100, 1000} and SI's c from {0.01, 0.1, 1} on seed 9
        # (other permutations and splits than the reported seeds).
        "options": {
            "replay": {"buffer_size": 200},
            "agem": {"buffer_size": 200},
            "ewc": {"lam": 10.0},
            "si": {"c": 0.1},
            "lwf": {"alpha": 1.0, "temperature": 2.0},
        },
        "timing_steps": 50,
    },
    "full": {
        "variant": "default",
        "seeds": (0, 1, 2),
        "overrides": [],
        "options": {
            "replay": {"buffer_size": 1000},
            "agem": {"buffer_size": 1000},
            "ewc": {"lam": 10.0},
            "si": {"c": 0.1},
            "lwf": {"alpha": 1.0, "temperature": 2.0},
        },
        "timing_steps": 50,
    },
    # For the smoke test: two tasks of a few steps.
    "micro": {
        "variant": "tiny",
        "seeds": (0,),
        "overrides": [
            "cl.num_tasks=2",
            "cl.steps_per_task=4",
            "cl.train_examples=64",
            "cl.eval_examples=32",
            "model.features=8",
            "data.batch_size=8",
        ],
        "options": {"replay": {"buffer_size": 16}, "agem": {"buffer_size": 16}},
        "timing_steps": 3,
    },
}

# Published average accuracies (%) of the same stream and setting: "Three scenarios
# for continual learning" (van de Ven & Tolias, 2019), tables of split MNIST (5
# tasks; task- and class-incremental; an MLP with 2 x 400 units) and permuted MNIST
# (10 tasks; domain-incremental; 2 x 1000 units). UNVERIFIED: transcribed from
# memory of the paper's tables, not checked against the PDF here; "joint" is the
# paper's "offline" upper bound and "naive" its "none" lower bound.
PUBLISHED = {
    ("split_mnist", "task"): {
        "naive": 87.19, "joint": 99.66, "ewc": 98.64, "si": 99.09, "lwf": 99.57,
    },
    ("split_mnist", "class"): {
        "naive": 19.90, "joint": 97.94, "ewc": 20.01, "si": 19.99, "lwf": 23.85,
    },
    ("permuted_mnist", "domain"): {
        "naive": 78.51, "joint": 97.59, "ewc": 94.31, "si": 95.33, "lwf": 72.64,
    },
}  # fmt: skip
PUBLISHED_SOURCE = (
    'van de Ven & Tolias, "Three scenarios for continual learning" (2019); MLPs on '
    "pixel vectors, several epochs per task (UNVERIFIED transcription)"
)


def cell_config(stream, strategy, seed, preset, args) -> config_lib.Config:
    """The config of one run of the grid."""
    p = PRESETS[preset]
    config = config_lib.load_config(CONFIGS[stream], p["variant"])
    options = dict(config.data.options)
    if args.mnist_dir:
        options["mnist_dir"] = args.mnist_dir
    overrides = {
        "cl.strategy": strategy,
        "cl.strategy_options": dict(p["options"].get(strategy, {})),
        "data.options": options,
        "data.seed": seed,
        "train.seed": seed,
        "train.progress": False,
    }
    config = config_lib.apply_overrides(config, overrides)
    return config_lib.apply_overrides(config, [*p["overrides"], *args.set])


def run_cell(config, workdir: pathlib.Path) -> dict:
    """Runs (or resumes, or skips when finished) one cell; returns its summary."""
    done = workdir / "cl" / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    start = time.perf_counter()
    result = runner.run(config, workdir)
    if result.train.stopped_by:
        raise SystemExit(f"stopped by {result.train.stopped_by}; rerun to resume")
    out = {
        "summary": result.summary,
        "R": result.R.tolist(),
        "b": result.b.tolist(),
        "setting": config.cl.setting,
        "seconds": time.perf_counter() - start,
    }
    done.write_text(json.dumps(out, indent=1) + "\n")
    return out


def step_times(stream_name, names, preset, args) -> dict[str, float]:
    """Median train-step seconds of each strategy, timed in turns (in a new random
    order each round) on the same batches, each with its state after one task end
    (penalties active)."""
    runs, states, batch = {}, {}, None
    for name in names:
        config = cell_config(stream_name, name, 0, preset, args)
        config, stream = runner.resolve(config)
        spec = runner.stream_spec(config, stream, [e.train for e in stream.experiences])
        strategy = strategies.make_strategy(name, config.cl.strategy_options, spec)
        run = trainer.build(
            config,
            task=task_lib.StreamClassification(stream),
            extension=strategy.extension,
        )
        records = runner.with_weights(stream.experiences[0].train)
        train, _ = classification.batched(config, records, records, 0, 1)
        if batch is None:
            batch = mesh_lib.put_batch(train[0], run.mesh)
        state = run.init_state()
        if strategy.end_task is not None:
            end = strategy_lib.TaskEnd(
                index=0,
                state=run.extension_state(state),
                params=run.params(state),
                ctx=run.context(state),
                batches=runner.task_batches(config, records, 0),
            )
            state = run.with_extension(state, strategy.end_task(end))
        state, _ = run.train_step(state, batch)  # compile
        jax.block_until_ready(state)
        runs[name], states[name] = run, state
    times = {name: [] for name in names}
    order = np.random.default_rng(0)
    for _ in range(PRESETS[preset]["timing_steps"]):
        # A fresh order each round, so that no strategy always runs first.
        for name in order.permutation(names):
            start = time.perf_counter()
            states[name], metrics = runs[name].train_step(states[name], batch)
            jax.block_until_ready(metrics)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def fmt(values: list[float]) -> str:
    """Mean ± std in percent (std only with several seeds)."""
    mean = 100 * float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * float(np.std(values, ddof=1)):.1f}"


def plot(rows: list[dict], path: pathlib.Path) -> None:
    """Bars of ACC and forgetting per strategy, one panel per stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = sorted({r["stream"] for r in rows})
    fig, axes = plt.subplots(1, len(streams), figsize=(6 * len(streams), 4))
    axes = np.atleast_1d(axes)
    for ax, stream in zip(axes, streams, strict=True):
        mine = [r for r in rows if r["stream"] == stream]
        x = np.arange(len(mine))
        ax.bar(x - 0.2, [100 * r["acc"] for r in mine], 0.4, label="ACC")
        ax.bar(x + 0.2, [100 * r["forgetting"] for r in mine], 0.4, label="forgetting")
        ax.set_xticks(x, [r["strategy"] for r in mine], rotation=30)
        ax.set_ylabel("%")
        ax.set_ylim(min(0, ax.get_ylim()[0]), 118)
        ax.set_title(f"{stream} ({mine[0]['setting']}-incremental)")
        ax.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> pathlib.Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--out", default=str(ROOT / "runs" / "cl_benchmarks"),
                        help="where the tables go")  # fmt: skip
    parser.add_argument("--runs", help="where the run workdirs go (default OUT/runs)")
    parser.add_argument("--mnist-dir", default=os.environ.get("SEQJAX_MNIST_DIR"))
    parser.add_argument("--streams", nargs="+", choices=list(CONFIGS),
                        default=list(CONFIGS))  # fmt: skip
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                        default=list(STRATEGIES))  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run")  # fmt: skip
    parser.add_argument("--no-timing", action="store_true",
                        help="skip the step-time table")  # fmt: skip
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    seeds = args.seeds or list(preset["seeds"])
    out = pathlib.Path(args.out)
    runs = pathlib.Path(args.runs) if args.runs else out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    cells = [
        (stream, strategy, seed)
        for stream in args.streams
        for strategy in args.strategies
        for seed in seeds
    ]
    command = " ".join(
        [
            "python experiments/cl_benchmarks.py",
            *(sys.argv[1:] if argv is None else argv),
        ]
    )
    print(f"continual-learning benchmarks on {benchlib.device_description()}: "
          f"{len(cells)} runs in {runs}", flush=True)  # fmt: skip
    results = {}
    for i, (stream, strategy, seed) in enumerate(cells, 1):
        config = cell_config(stream, strategy, seed, args.preset, args)
        workdir = runs / f"{stream}-{strategy}-s{seed}"
        print(f"[{i}/{len(cells)}] {stream} {strategy} seed {seed} ...", flush=True)
        results[stream, strategy, seed] = r = run_cell(config, workdir)
        s = r["summary"]
        print(f"    ACC {100 * s['acc']:.1f}  BWT {100 * s['bwt']:.1f}  "
              f"forgetting {100 * s['forgetting']:.1f}  "
              f"({r['seconds']:.0f} s)", flush=True)  # fmt: skip

    header = ["stream", "setting", "strategy", "ACC (%)", "published ACC (%)",
              "BWT (pp)", "forgetting (pp)", "seeds"]  # fmt: skip
    rows, table = [], []
    for stream in args.streams:
        for strategy in args.strategies:
            mine = [results[stream, strategy, seed] for seed in seeds]
            setting = mine[0]["setting"]
            summaries = [m["summary"] for m in mine]
            published = PUBLISHED.get((stream, setting), {}).get(strategy)
            table.append([
                stream, setting, strategy,
                fmt([s["acc"] for s in summaries]),
                "—" if published is None else f"{published:.1f}",
                fmt([s["bwt"] for s in summaries]),
                fmt([s["forgetting"] for s in summaries]),
                len(seeds),
            ])  # fmt: skip
            rows.append({
                "stream": stream, "setting": setting, "strategy": strategy,
                "acc": float(np.mean([s["acc"] for s in summaries])),
                "forgetting": float(np.mean([s["forgetting"] for s in summaries])),
            })  # fmt: skip

    timing_rows = []
    if not args.no_timing and "naive" in args.strategies:
        for stream in args.streams:
            times = step_times(stream, args.strategies, args.preset, args)
            for name, seconds in times.items():
                timing_rows.append([
                    stream, name, benchlib.fmt_seconds(seconds),
                    f"{seconds / times['naive']:.2f}x",
                ])  # fmt: skip

    slug = benchlib.device_slug()
    stem = out / f"cl_{args.preset}_{slug}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)
    plot(rows, stem.with_suffix(".png"))
    base = cell_config(args.streams[0], "naive", seeds[0], args.preset, args)
    images = (
        "MNIST t10k only: 8,000 train / 2,000 test"
        if base.data.options.get("splits") == "t10k"
        else "full MNIST"
    )
    lines = [
        f"# Continual learning: strategies on MNIST streams ({args.preset})",
        "",
        f"- device: {benchlib.device_description()}",
        f"- jax {jax.__version__}; date {time.strftime('%Y-%m-%d')}",
        f"- command: `{command}`",
        f"- model: {base.model.mixer} classifier, width {base.model.features}, "
        f"depth {base.model.depth}, {base.model.pooling} pooling; Adam, constant "
        f"learning rate {base.optim.learning_rate}; batch {base.data.batch_size}; "
        f"{base.cl.steps_per_task} steps per task; images read "
        f"{base.data.options.get('order', 'rows')}-wise ({images})",
        "- strategy options: "
        + "; ".join(f"{k} {v}" for k, v in preset["options"].items()),
        f"- published: {PUBLISHED_SOURCE}. Our model differs: a recurrent "
        "classifier over pixel sequences, far fewer steps per task; compare the "
        "ranking, not the digits.",
        "- ACC: mean final accuracy over tasks; BWT: mean change of each task's "
        "accuracy from just after learning it to the end; forgetting: mean drop "
        "from each task's best earlier accuracy to the end (Chaudhry et al., "
        "max over the rows before the last)",
        f"- the {len(cells)} runs took "
        f"{sum(r['seconds'] for r in results.values()) / 60:.0f} min in all; "
        "joint and cumulative run the same train step as naive, so their step-time "
        "ratio shows the timing's noise",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    if timing_rows:
        lines += [
            "",
            "## Train-step time against fine-tuning (same batches, timed in turns)",
            "",
            "| stream | strategy | step time | vs naive |",
            "|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in timing_rows]
    path = stem.with_suffix(".md")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[lines.index("") + 1 :]))
    print(f"\nwrote {path}")
    return path


if __name__ == "__main__":
    main()
