"""The ParaRNN table: Newton's convergence and speed against ``jax.lax.scan``.

Two tables, written to ``experiments/results/newton_<device>.md``:

1. *Convergence* of ParaGRU and ParaLSTM at initialisation (batch 8): the max-abs
   residual :math:`\\max_t |h_t - f(h_{t-1}, x_t)|` after each Newton iteration from
   ParaRNN's initial guess :math:`f(0, x_t)`, and the mean (over sequences) number of
   iterations needed to reach 1e-5.
2. *Speed*: forward and forward+backward time of the layer with ``method="newton"``
   against the same layer with ``method="sequential"`` (``jax.lax.scan``), at hidden 64
   and 256, batch 8, input width = hidden, 4 heads; compile time, XLA's peak temporary
   memory, the error of the outputs against sequential (max abs) and of the gradients
   (max abs / max abs of the sequential gradients, for parameters and inputs).

Run: ``python experiments/bench_newton.py`` (``--preset demo`` for a small CPU run).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

try:
    from experiments import benchlib
except ImportError:  # run as a script
    import benchlib

from seqjax.nn import ParaGRU, ParaLSTM
from seqjax.scan import newton_scan

CELLS = {"ParaGRU": ParaGRU, "ParaLSTM": ParaLSTM}
PRESETS = {
    "demo": dict(lengths=[512, 2048], hiddens=[64], iterations=6),
    "full": dict(lengths=[512, 2048, 8192, 32768], hiddens=[64, 256], iterations=8),
}
BATCH = 8
TARGET = 1e-5


def make_layer(name: str, hidden: int, method: str, seed: int = 0):
    return CELLS[name](hidden, hidden, heads=4, method=method, rngs=nnx.Rngs(seed))


def convergence_rows(args):
    rows = []
    for name in args.cells:
        for length in args.lengths:
            layer = make_layer(name, args.conv_hidden, "newton")
            x = jax.random.normal(jax.random.key(1), (BATCH, length, args.conv_hidden))
            trace = _trace(layer, x, args.iterations)  # [k+1, batch]
            below = trace <= TARGET
            needed = np.where(below.any(0), below.argmax(0), np.inf)
            mean_needed = float(np.mean(needed))
            row = [name, args.conv_hidden, length] + [f"{r:.1e}" for r in trace.max(1)]
            row.append("never" if np.isinf(mean_needed) else f"{mean_needed:.2f}")
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
    return rows


def _trace(layer, x, iterations):
    """Residual (max over the batch's sequences, per sequence) after k iterations."""
    graph, state = nnx.split(layer)

    def run(state, x, guess, k):
        layer = nnx.merge(graph, state)
        cell = layer.cell
        u = cell.project(x)
        h0 = layer.init_state(x.shape[0])
        hs, info = newton_scan(
            cell.recur, h0, u, axis=1, batch_ndim=1, jacobian=cell.jacobian_structure,
            init=guess, max_iters=k, atol=0.0, rtol=0.0, on_failure="ignore",
        )  # fmt: skip
        return hs, info.residual

    one = jax.jit(lambda s, x, g: run(s, x, g, 1))
    zero = jax.jit(lambda s, x, g: run(s, x, g, 0))

    @jax.jit
    def guess(state, x):  # ParaRNN's initial guess f(0, x_t)
        layer = nnx.merge(graph, state)
        u = layer.cell.project(x)
        z = jax.tree.map(lambda z: z[:, None], layer.init_state(x.shape[0]))
        return layer.cell.recur(z, u)

    hs = guess(state, x)
    trace = [np.asarray(zero(state, x, hs)[1])]
    for _ in range(iterations):
        hs, res = one(state, x, hs)
        trace.append(np.asarray(res))
    return np.stack(trace)


def speed_rows(args):
    fmt_s, fmt_b = benchlib.fmt_seconds, benchlib.fmt_bytes
    rows = []
    for name in args.cells:
        for hidden in args.hiddens:
            for length in args.lengths:
                newton = make_layer(name, hidden, "newton")
                sequential = make_layer(name, hidden, "sequential")
                x = jax.random.normal(jax.random.key(2), (BATCH, length, hidden))
                w = jax.random.normal(jax.random.key(3), (BATCH, length, hidden))
                graphs, state = {}, None
                for label, layer in (("newton", newton), ("lax.scan", sequential)):
                    graphs[label], state = nnx.split(layer)  # same parameters
                fwds = {
                    label: lambda s, x, g=g: nnx.merge(g, s)(x)
                    for label, g in graphs.items()
                }

                def loss(s, x, g, w=w):
                    return jnp.sum(nnx.merge(g, s)(x) * w)

                boths = {
                    label: jax.grad(functools.partial(loss, g=g), argnums=(0, 1))
                    for label, g in graphs.items()
                }
                # Newton and lax.scan are timed in turns: their ratio shares the
                # machine's conditions.
                mfs = benchlib.measure_interleaved(
                    fwds, state, x, min_time=args.min_time
                )
                mbs = benchlib.measure_interleaved(
                    boths, state, x, min_time=args.min_time
                )
                results = {
                    label: (mfs[label], mbs[label], jax.jit(fwds[label])(state, x),
                            jax.jit(boths[label])(state, x))
                    for label in graphs
                }  # fmt: skip
                n, s = results["newton"], results["lax.scan"]
                out_err = float(jnp.max(jnp.abs(n[2] - s[2])))
                gn = jax.tree.leaves(n[3])
                gs = jax.tree.leaves(s[3])
                grad_err = max(
                    float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                    for a, b in zip(gn, gs, strict=True)
                )
                row = [
                    name, hidden, length,
                    fmt_s(n[0].median_s), fmt_s(s[0].median_s),
                    f"{s[0].median_s / n[0].median_s:.2f}x",
                    fmt_s(n[1].median_s), fmt_s(s[1].median_s),
                    f"{s[1].median_s / n[1].median_s:.2f}x",
                    fmt_s(n[0].compile_s + n[1].compile_s),
                    fmt_b(n[1].temp_bytes), fmt_b(s[1].temp_bytes),
                    f"{out_err:.1e}", f"{grad_err:.1e}",
                ]  # fmt: skip
                rows.append(row)
                print(" | ".join(map(str, row)), flush=True)
                yield rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--hiddens", type=int, nargs="+")
    parser.add_argument("--conv-hidden", type=int, default=256)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument(
        "--skip", choices=["convergence", "speed"], nargs="*", default=[]
    )
    parser.add_argument(
        "--cells", choices=sorted(CELLS), nargs="+", default=list(CELLS)
    )
    parser.add_argument("--name", help="results file stem (default: newton)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    args.lengths = args.lengths or preset["lengths"]
    args.hiddens = args.hiddens or preset["hiddens"]
    args.iterations = args.iterations or preset["iterations"]
    name = args.name or ("newton" if args.preset == "full" else f"newton_{args.preset}")
    command = "python experiments/bench_newton.py " + " ".join(sys.argv[1:])
    print(f"newton benchmark on {benchlib.device_description()}")
    start = time.perf_counter()

    conv_header = ["cell", "hidden", "T"] + [
        f"residual after {k}" for k in range(args.iterations + 1)
    ] + [f"mean iterations to {TARGET:g}"]  # fmt: skip
    conv_rows = [] if "convergence" in args.skip else convergence_rows(args)
    speed_header = [
        "cell", "hidden", "T", "newton fwd", "lax.scan fwd", "speed-up fwd",
        "newton fwd+bwd", "lax.scan fwd+bwd", "speed-up fwd+bwd", "newton compile",
        "newton temp mem", "lax.scan temp mem", "output error", "gradient error",
    ]  # fmt: skip
    notes = [
        f"batch {BATCH}; convergence at hidden {args.conv_hidden}, initialisation "
        "'paper', from ParaRNN's initial guess f(0, x_t); residual = max over the "
        "batch of max_t |h_t - f(h_{t-1}, x_t)|",
        "speed-up = lax.scan time / newton time (same layer, same parameters); newton "
        "runs with its defaults (tolerance 1e-6, at most 10 iterations, fallback on)",
        "gradient error = max over parameter and input gradients of "
        "max|g_newton - g_scan| / max|g_scan|",
    ]
    speed = [] if "speed" in args.skip else speed_rows(args)
    path = None
    for rows in speed:
        path = _write(name, conv_header, conv_rows, speed_header, rows, notes, command)
    if path is None:
        path = _write(name, conv_header, conv_rows, speed_header, [], notes, command)
    print(f"\nwrote {path} in {time.perf_counter() - start:.0f} s")


def _write(name, conv_header, conv_rows, speed_header, speed_rows_, notes, command):
    """Both tables in one Markdown file (the CSV holds the speed table)."""
    path = benchlib.write_table(
        name,
        "Newton (ParaRNN) benchmark: speed",
        speed_header,
        speed_rows_,
        notes,
        command,
    )
    if not conv_rows:
        return path
    conv = ["", "## Convergence at initialisation", ""]
    conv += ["| " + " | ".join(conv_header) + " |", "|" + "---|" * len(conv_header)]
    conv += ["| " + " | ".join(map(str, r)) + " |" for r in conv_rows]
    path.write_text(path.read_text() + "\n".join(conv) + "\n")
    return path


if __name__ == "__main__":
    main()
