"""The ``seqjax`` command.

* ``seqjax train --config configs/NAME.py[:VARIANT] --workdir DIR [key=value ...]``:
  trains, evaluates and checkpoints; rerunning on the same ``DIR`` resumes.
* ``seqjax cl --config configs/cl_NAME.py[:VARIANT] --workdir DIR [key=value ...]``:
  continual learning: trains on a stream of tasks with a strategy, writes the
  accuracy matrix, its metrics and plots to ``DIR/cl/``; rerunning resumes.
* ``seqjax eval --workdir DIR [--best]``: evaluates the latest (or best) checkpoint.
* ``seqjax generate --workdir DIR --prompt TEXT``: samples from a language model.
* ``seqjax plot --workdir DIR``: writes loss-curve PNGs from ``DIR/metrics.jsonl``.
* ``seqjax bench scan|newton|damping|mixers|train [options]``: runs a benchmark
  script from ``experiments/`` in a source checkout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import runpy
import shutil
import sys

BENCHMARKS = {
    "scan": "bench_linear_scan.py",
    "newton": "bench_newton.py",
    "damping": "bench_damping.py",
    "mixers": "bench_mixers.py",
    "train": "bench_train.py",
}


def _experiments_dir() -> pathlib.Path:
    root = pathlib.Path(__file__).resolve().parents[1]
    path = root / "experiments"
    if not path.is_dir():
        raise SystemExit(
            f"seqjax: no experiments/ folder next to the package (looked in {root}); "
            "benchmarks run from a source checkout: git clone the repository and "
            "`pip install -e .` there."
        )
    return path


def _bench(args) -> None:
    script = _experiments_dir() / BENCHMARKS[args.name]
    sys.argv = [str(script), *args.options]
    sys.path.insert(0, str(script.parents[1]))
    runpy.run_path(str(script), run_name="__main__")


def _invocation() -> str:
    """How to call this command again from the same shell: ``seqjax`` when that is
    on the PATH, else the path it was started by (``.venv/bin/seqjax``)."""
    started = pathlib.Path(sys.argv[0])
    if started.name != "seqjax":
        return f"{pathlib.Path(sys.executable).name} -m seqjax.cli"
    found = shutil.which("seqjax")
    if found and pathlib.Path(found).resolve() == started.resolve():
        return "seqjax"
    return str(started)


def _tensorboard_line(logdir: pathlib.Path) -> str:
    if shutil.which("tensorboard"):
        return f"  tensorboard   tensorboard --logdir {logdir}"
    return f"  tensorboard   {logdir} (event files; pip install tensorboard to view)"


def _train(args) -> int:
    from seqjax import config as config_lib
    from seqjax.train import trainer

    try:
        config = config_lib.load_config(args.config)
        config = config_lib.apply_overrides(config, args.overrides)
    except config_lib.ConfigError as e:
        print(f"seqjax train: {e}", file=sys.stderr)
        return 2
    if config.cl.stream:
        print(
            f"seqjax train: {args.config} is a continual-learning config "
            f"(cl.stream={config.cl.stream!r}); run it with `seqjax cl --config "
            f"{args.config} --workdir {args.workdir}`",
            file=sys.stderr,
        )
        return 2
    workdir = pathlib.Path(args.workdir)
    try:
        result = trainer.train(config, workdir)
    except config_lib.ConfigError as e:  # a busy workdir, checkpoints of another run
        print(f"seqjax train: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # diverged; the last finite checkpoint is kept
        print(f"seqjax train: {e}", file=sys.stderr)
        return 1
    if result.stopped_by:
        print(
            f"stopped by {result.stopped_by} at step {result.step}; checkpoint saved. "
            f"Rerun the same command to resume."
        )
        return 130 if result.stopped_by == "SIGINT" else 143
    print(f"\nfinished step {result.step}: " + trainer.dump(result.metrics))
    if result.sample is not None:
        print(f"\nsample from {config.train.sample_prompt!r}:\n{'-' * 60}")
        print(config.train.sample_prompt + result.sample)
        print("-" * 60)
    plots_dir = workdir / "plots"
    lines = [
        "\nwhere everything is:",
        f"  config        {workdir / 'config.json'}",
        f"  metrics       {workdir / 'metrics.jsonl'} (one JSON object per event)",
        _tensorboard_line(workdir / "tensorboard"),
        f"  checkpoints   {workdir / 'checkpoints'}",
        f"  plots         {plots_dir}",
        f"  evaluate      {_invocation()} eval --workdir {workdir}",
    ]
    if config.task == "lm":
        lines.append(
            f"  generate      {_invocation()} generate --workdir {workdir} "
            "--prompt 'def '"
        )
    print("\n".join(lines) + "\n")
    return 0


def _cl(args) -> int:
    from seqjax import config as config_lib

    try:
        config = config_lib.load_config(args.config)
        config = config_lib.apply_overrides(config, args.overrides)
        from seqjax.cl import runner

        result = runner.run(config, args.workdir)
    except config_lib.ConfigError as e:
        print(f"seqjax cl: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # diverged; the last finite checkpoint is kept
        print(f"seqjax cl: {e}", file=sys.stderr)
        return 1
    if result.train.stopped_by:
        print(
            f"stopped by {result.train.stopped_by} at step {result.train.step}; "
            "checkpoint saved. Rerun the same command to resume."
        )
        return 130 if result.train.stopped_by == "SIGINT" else 143
    table = result.files.get("markdown")
    if table is not None:
        print("\n" + table.read_text())
    workdir = pathlib.Path(args.workdir)
    print(
        "where everything is:\n"
        f"  report        {workdir / 'cl' / 'cl_report.md'}\n"
        f"  plots         {workdir / 'cl' / 'r_matrix.png'}, "
        f"{workdir / 'cl' / 'task_accuracy.png'}\n"
        f"  matrix        {workdir / 'cl' / 'cl_matrix.csv'}\n"
        f"  metrics       {workdir / 'metrics.jsonl'} (cl/acc, cl/bwt, ...)\n"
        f"  checkpoints   {workdir / 'checkpoints'}\n"
    )
    return 0


def _continual_workdir(workdir: str) -> bool:
    path = pathlib.Path(workdir) / "config.json"
    return path.is_file() and json.loads(path.read_text()).get("task") == "continual"


def _eval(args) -> int:
    from seqjax.train import trainer

    if _continual_workdir(args.workdir):
        print(
            f"seqjax eval: {args.workdir} is a continual-learning run; its accuracy "
            f"matrix and metrics are in {pathlib.Path(args.workdir) / 'cl'}/ "
            "(rerun its `seqjax cl` command to finish it or rewrite them)",
            file=sys.stderr,
        )
        return 2

    metrics = trainer.evaluate(args.workdir, which="best" if args.best else args.step)
    print(json.dumps(metrics))
    return 0


def _generate(args) -> int:
    from seqjax.train import trainer

    text = trainer.generate(
        args.workdir,
        args.prompt,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        which="best" if args.best else "latest",
    )
    print(args.prompt + text)
    return 0


def _plot(args) -> int:
    from seqjax.train import plots

    for path in plots.plot_metrics(args.workdir):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqjax", description="Parallel recurrence for JAX and Flax."
    )
    commands = p.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume) a config")
    train.add_argument("--config", required=True, help="configs/NAME.py[:VARIANT]")
    train.add_argument("--workdir", required=True, help="run directory (resumes)")
    train.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=100")
    train.set_defaults(fn=_train)

    cl = commands.add_parser(
        "cl", help="continual learning: train (or resume) on a stream of tasks"
    )
    cl.add_argument("--config", required=True, help="configs/cl_NAME.py[:VARIANT]")
    cl.add_argument("--workdir", required=True, help="run directory (resumes)")
    cl.add_argument("overrides", nargs="*", help="key=value, e.g. cl.strategy=ewc")
    cl.set_defaults(fn=_cl)

    ev = commands.add_parser("eval", help="evaluate a checkpoint")
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--best", action="store_true", help="the best checkpoint")
    ev.add_argument("--step", default="latest", help="a step number, or latest")
    ev.set_defaults(fn=_eval)

    gen = commands.add_parser("generate", help="sample from a language model")
    gen.add_argument("--workdir", required=True)
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--best", action="store_true")
    gen.set_defaults(fn=_generate)

    plot = commands.add_parser("plot", help="write loss-curve PNGs")
    plot.add_argument("--workdir", required=True)
    plot.set_defaults(fn=_plot)

    bench = commands.add_parser(
        "bench",
        help="run a benchmark from experiments/",
        description="Run a benchmark; options after the name go to the script.",
    )
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the script's options")
    bench.set_defaults(fn=_bench)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    code = args.fn(args)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
