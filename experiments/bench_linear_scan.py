"""Benchmark of ``seqjax.scan.linear_scan``: every method on every structure.

For each sequence length T, state width and transition structure it measures, per
method, the forward and forward+backward time (median after compilation), compile
time, XLA's peak temporary memory, the speed-up over ``sequential`` and the achieved
bandwidth as a fraction of a plain device copy measured in the same run (the roofline
of a memory-bound scan). Writes ``experiments/results/linear_scan_<device>.md``.

Structures at width W (batch 1, float32 unless noted):

* ``elementwise``: ``a, b: [T, W]``; ``complex``: the same in complex64;
* ``block2``: W/2 blocks of 2x2, ``a: [T, W/2, 2, 2]``, ``b: [T, W/2, 2]``;
* ``dense16``: W/16 dense 16x16 transitions, ``a: [T, W/16, 16, 16]``.

Run: ``python experiments/bench_linear_scan.py --preset full`` (or ``seqjax bench
scan``); ``--preset demo`` is the small table ``make demo`` prints.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

try:
    from experiments import benchlib
except ImportError:  # run as a script: python experiments/bench_linear_scan.py
    import benchlib

from seqjax.scan import linear_scan, methods

PRESETS = {
    "demo": dict(lengths=[1024, 8192], widths=[256]),
    "full": dict(lengths=[1024, 16384, 131072], widths=[256, 1024]),
}
STRUCTURES = ["elementwise", "complex", "block2", "dense16"]
METHODS = ["sequential", "associative", "chunked", "auto"]


def make_problem(structure: str, length: int, width: int):
    """Stable random ``(a, b)`` for one structure (see the module docstring)."""
    ka, kb, kc = jax.random.split(jax.random.key(0), 3)
    if structure in ("elementwise", "complex"):
        a = jax.random.uniform(ka, (length, width), minval=0.5, maxval=1.0)
        b = jax.random.normal(kb, (length, width))
        if structure == "complex":
            phase = jax.random.uniform(kc, (length, width), maxval=6.28)
            a = a * jnp.exp(1j * phase)
            b = b + 1j * jax.random.normal(kc, (length, width))
        return a, b
    k = 2 if structure == "block2" else 16
    a = jax.random.normal(ka, (length, width // k, k, k)) / (2 * k**0.5)
    b = jax.random.normal(kb, (length, width // k, k))
    return a, b


def estimated_bytes(structure: str, length: int, width: int) -> int:
    """Rough peak bytes of forward+backward: inputs, outputs, gradients, residuals."""
    itemsize = 8 if structure == "complex" else 4
    k = {"block2": 2, "dense16": 16}.get(structure, 1)
    return 4 * length * width * (k + 1) * itemsize


def run(args) -> list[list[object]]:
    header = [
        "T", "width", "structure", "method", "fwd", "fwd+bwd", "compile fwd",
        "compile fwd+bwd", "temp mem fwd", "temp mem fwd+bwd", "speed-up fwd",
        "speed-up fwd+bwd", "bandwidth / copy",
    ]  # fmt: skip
    rows: list[list[object]] = []
    notes = [
        "times are medians after compilation; "
        "speed-up = time(sequential) / time(method)",
        "bandwidth / copy = (bytes of a and b read + h written) / fwd time, divided by "
        "the bandwidth of a jitted copy (x * 2) of as many bytes as a and b, same run",
        "temp mem = XLA's peak temporary allocation (compiled.memory_analysis())",
        "`auto` is measured as its own call; the arrow shows the method it resolves to",
        "the methods of one configuration are timed in turns (round robin), so that "
        "their ratios share the machine's conditions",
    ]
    command = "python experiments/bench_linear_scan.py " + " ".join(sys.argv[1:])
    budget = args.max_gb * 2**30
    copy_cache: dict[int, float] = {}
    start = time.perf_counter()
    for length in args.lengths:
        for width in args.widths:
            for structure in args.structures:
                if estimated_bytes(structure, length, width) > budget:
                    print(f"skip T={length} W={width} {structure}: over --max-gb")
                    rows.append([length, width, structure, "all", "skipped: over "
                                 f"{args.max_gb} GiB budget"] + [""] * 8)  # fmt: skip
                    continue
                a, b = make_problem(structure, length, width)
                matrix = a.ndim == b.ndim + 1
                io_bytes = a.nbytes + 2 * b.nbytes
                nbytes = a.nbytes + b.nbytes
                if nbytes not in copy_cache:
                    copy_cache[nbytes] = benchlib.copy_seconds(nbytes)
                copy_bw = 2 * nbytes / copy_cache[nbytes]
                labels, fwds, boths = {}, {}, {}
                for method in args.methods:
                    labels[method] = method
                    if method == "auto":
                        resolved = methods.resolve(
                            methods.ScanMethod.AUTO, length=length,
                            step_elements=a[0].size, matrix=matrix,
                        )  # fmt: skip
                        labels[method] = f"auto (→ {resolved.value})"
                    fwds[method] = lambda a, b, m=method: linear_scan(a, b, method=m)

                    def loss(a, b, m=method):
                        return jnp.sum(jnp.real(linear_scan(a, b, method=m)))

                    boths[method] = jax.grad(loss, argnums=(0, 1))
                # Methods are timed in turns, so their ratios share the same conditions.
                mfs = benchlib.measure_interleaved(fwds, a, b, min_time=args.min_time)
                mbs = benchlib.measure_interleaved(boths, a, b, min_time=args.min_time)
                base = mfs.get("sequential"), mbs.get("sequential")
                for method in args.methods:
                    mf, mb = mfs[method], mbs[method]
                    speed_f = (
                        f"{base[0].median_s / mf.median_s:.2f}x" if base[0] else "n/a"
                    )
                    speed_b = (
                        f"{base[1].median_s / mb.median_s:.2f}x" if base[1] else "n/a"
                    )
                    frac = (io_bytes / mf.median_s) / copy_bw
                    row = [
                        length, width, structure, labels[method],
                        benchlib.fmt_seconds(mf.median_s),
                        benchlib.fmt_seconds(mb.median_s),
                        benchlib.fmt_seconds(mf.compile_s),
                        benchlib.fmt_seconds(mb.compile_s),
                        benchlib.fmt_bytes(mf.temp_bytes),
                        benchlib.fmt_bytes(mb.temp_bytes),
                        speed_f, speed_b, f"{frac:.0%}",
                    ]  # fmt: skip
                    rows.append(row)
                    print(" | ".join(str(c) for c in row), flush=True)
                path = benchlib.write_table(
                    args.name, "linear_scan benchmark", header, rows, notes, command
                )
                del a, b
    print(f"\nwrote {path} in {time.perf_counter() - start:.0f} s")
    return rows


def chunk_sweep(args) -> None:
    """Times ``chunked`` at several chunk sizes (elementwise, real)."""
    header = ["T", "width", "chunk size", "fwd", "fwd+bwd", "temp mem fwd+bwd"]
    rows: list[list[object]] = []
    command = "python experiments/bench_linear_scan.py " + " ".join(sys.argv[1:])
    for length in args.lengths:
        for width in args.widths:
            a, b = make_problem("elementwise", length, width)
            for size in args.chunk_sweep:
                fwd = lambda a, b, c=size: linear_scan(
                    a, b, method="chunked", chunk_size=c
                )

                def loss(a, b, c=size):
                    return jnp.sum(linear_scan(a, b, method="chunked", chunk_size=c))

                mf = benchlib.measure(fwd, a, b, min_time=args.min_time)
                mb = benchlib.measure(
                    jax.grad(loss, argnums=(0, 1)), a, b, min_time=args.min_time
                )
                row = [
                    length, width, size, benchlib.fmt_seconds(mf.median_s),
                    benchlib.fmt_seconds(mb.median_s),
                    benchlib.fmt_bytes(mb.temp_bytes),
                ]  # fmt: skip
                rows.append(row)
                print(" | ".join(map(str, row)), flush=True)
                benchlib.write_table(
                    "linear_scan_chunks", "chunked linear_scan: chunk size sweep",
                    header, rows, [], command,
                )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--widths", type=int, nargs="+")
    parser.add_argument(
        "--structures", nargs="+", choices=STRUCTURES, default=STRUCTURES
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument(
        "--max-gb", type=float, default=4.0, help="skip configurations over this size"
    )
    parser.add_argument(
        "--min-time", type=float, default=0.2, help="seconds of repeats (>= 3 calls)"
    )
    parser.add_argument("--name", default=None, help="results file stem")
    parser.add_argument(
        "--chunk-sweep", type=int, nargs="+", help="only time these chunk sizes"
    )
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    args.lengths = args.lengths or preset["lengths"]
    args.widths = args.widths or preset["widths"]
    args.name = args.name or (
        "linear_scan" if args.preset == "full" else f"linear_scan_{args.preset}"
    )
    print(f"linear_scan benchmark on {benchlib.device_description()}")
    if args.chunk_sweep:
        chunk_sweep(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
