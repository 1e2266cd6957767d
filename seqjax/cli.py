"""The ``seqjax`` command.

``seqjax bench scan [options]`` runs ``experiments/bench_linear_scan.py`` from the
source checkout (benchmarks live beside the package, not inside it); ``seqjax bench scan
--help`` lists its options.
"""

from __future__ import annotations

import argparse
import pathlib
import runpy
import sys

BENCHMARKS = {
    "scan": "bench_linear_scan.py",
    "newton": "bench_newton.py",
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


def _bench(name: str, rest: list[str]) -> None:
    script = _experiments_dir() / BENCHMARKS[name]
    sys.argv = [str(script), *rest]
    sys.path.insert(0, str(script.parents[1]))
    runpy.run_path(str(script), run_name="__main__")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seqjax", description="Parallel recurrence for JAX and Flax."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="run a benchmark from experiments/",
        description="Run a benchmark; options after the name go to the script.",
    )
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the script's options")
    args = parser.parse_args(argv)
    if args.command == "bench":
        _bench(args.name, args.options)


if __name__ == "__main__":
    main()
