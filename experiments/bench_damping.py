"""Damping for ``newton_scan``: iterations, convergence and cost, from calm to chaotic.

Random RNNs ``h' = phi(g W h + x)`` with ``|W|_2 = 1`` (dense Jacobians, state 16,
batch 8, T 256, inputs N(0, 1)) for ``phi`` in {sin, tanh} and gains ``g`` from 0.5
to 3. Larger gains make the Jacobian products grow (sin never saturates, so its
products grow fastest); past the edge of stability the recurrence is chaotic and any
parallel method needs about T iterations. For each damping of ``newton_scan`` (none,
a step size of 0.5, Levenberg–Marquardt with Marquardt's adaptive rule, and ELK's
fixed lambda) it reports the mean iterations used, how many of the 8 sequences
converged within 100 iterations, the largest final residual, and the time of one
jitted solve. Writes ``experiments/results/damping_<device>.md`` and a plot of
iterations against gain (``.png``).

Run: ``python experiments/bench_damping.py`` (``--length 1024`` for longer sequences).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

try:
    from experiments import benchlib
except ImportError:  # run as a script
    import benchlib

from seqjax.scan import LevenbergMarquardt, newton_scan

CELLS = {"sin": jnp.sin, "tanh": jnp.tanh}
DAMPINGS = {
    "none (Newton)": None,
    "step 0.5": 0.5,
    "Levenberg-Marquardt": LevenbergMarquardt(),
    "ELK, fixed lambda 0.1": LevenbergMarquardt(lam=0.1, adaptive=False),
}
GAINS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
STATE = 16
BATCH = 8


def make_solver(phi, damping, max_iters):
    """``(w, xs) -> (hs, info)`` for a batch, with ``w`` as data (one compile)."""

    def solve(w, xs):
        step = lambda h, x: phi(w @ h + x)
        return newton_scan(
            step, jnp.zeros((BATCH, STATE)), xs, axis=1, batch_ndim=1,
            jacobian="dense", max_iters=max_iters, damping=damping,
            on_failure="ignore",
        )  # fmt: skip

    return solve


def rows_for(cell, args):
    phi = CELLS[cell]
    unit = jax.random.normal(jax.random.key(0), (STATE, STATE))
    unit = unit / jnp.linalg.norm(unit, 2)
    xs = jax.random.normal(jax.random.key(1), (BATCH, args.length, STATE))
    rows, curves = [], {}
    for label, damping in DAMPINGS.items():
        solve = make_solver(phi, damping, args.max_iters)
        compiled = jax.jit(solve).lower(unit, xs).compile()
        curve = []
        for gain in GAINS:
            w = gain * unit
            hs, info = jax.block_until_ready(compiled(w, xs))
            timing = benchlib.measure(solve, w, xs, min_time=args.min_time)
            iters = np.asarray(info.iterations)
            converged = np.asarray(info.converged)
            worst = float(np.max(np.asarray(info.residual)))
            finite = bool(jnp.all(jnp.isfinite(hs)))
            row = [
                cell, gain, label, f"{iters.mean():.1f}",
                f"{int(converged.sum())}/{BATCH}",
                f"{worst:.1e}" if np.isfinite(worst) else "non-finite",
                "yes" if finite else "no",
                benchlib.fmt_seconds(timing.median_s),
            ]  # fmt: skip
            rows.append(row)
            curve.append((gain, iters.mean(), converged.all()))
            print(" | ".join(map(str, row)), flush=True)
        curves[label] = curve
    return rows, curves


def plot(curves_by_cell, max_iters, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves_by_cell), figsize=(11, 4), sharey=True)
    for ax, (cell, curves) in zip(
        np.atleast_1d(axes), curves_by_cell.items(), strict=True
    ):
        for label, curve in curves.items():
            gains, iters, ok = map(np.asarray, zip(*curve, strict=True))
            (line,) = ax.plot(gains, iters, marker="o", label=label)
            ax.scatter(gains[~ok], iters[~ok], marker="x", s=80, color=line.get_color())
        ax.axhline(max_iters, color="grey", lw=0.8, ls=":")
        ax.set_title(f"h' = {cell}(g W h + x), |W| = 1")
        ax.set_xlabel("gain g")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("mean Newton iterations (x: not all converged)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--max-iters", type=int, default=100)
    parser.add_argument("--min-time", type=float, default=0.1)
    args = parser.parse_args(argv)
    command = "python experiments/bench_damping.py " + " ".join(sys.argv[1:])
    print(f"damping benchmark on {benchlib.device_description()}")
    start = time.perf_counter()
    header = [
        "cell", "gain", "damping", "mean iterations", "converged",
        "largest residual", "finite", "solve time",
    ]  # fmt: skip
    rows, curves = [], {}
    for cell in CELLS:
        cell_rows, curves[cell] = rows_for(cell, args)
        rows += cell_rows
    notes = [
        f"state {STATE}, batch {BATCH}, T {args.length}, dense Jacobians, at most "
        f"{args.max_iters} iterations, tolerance 1e-6 (newton_scan's default), "
        "on_failure='ignore' so that failures show",
        "mean iterations over the batch (a sequence that never converges counts "
        "max_iters); converged = sequences within tolerance",
        "solve time: median of one jitted batch solve, for comparing dampings "
        "with each other (the same gain, the same machine)",
    ]
    path = benchlib.write_table(
        "damping", "newton_scan damping benchmark", header, rows, notes, command
    )
    written = [path]
    try:
        plot(curves, args.max_iters, path.with_suffix(".png"))
        written.append(path.with_suffix(".png"))
    except ImportError:  # a machine without matplotlib still gets the table
        print("matplotlib is not installed: no plot")
    names = " and ".join(map(str, written))
    print(f"\nwrote {names} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
