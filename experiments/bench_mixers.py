"""Every sequence mixer in one language model: training and decoding speed, memory.

For each mixer of ``seqjax.nn.registry`` (all but ``conv``, which is a block part
rather than a sequence mixer) it builds the same byte-level ``LanguageModel`` (vocab
256, tied embeddings, RMSNorm pre-norm blocks with the default MLP) at one width and
depth, with the mixer's default options, and measures at each sequence length ``T``:

* training: one forward+backward of the next-token cross-entropy
  (``jax.value_and_grad`` over the parameters, jitted) on batches of ``tokens``
  tokens (batch = tokens // T unless ``--batch`` is given), median time after
  compilation, as tokens/s = batch·T / time; its compile time and XLA's peak
  temporary memory (``compiled.memory_analysis().temp_size_in_bytes``);
* decoding: ``model.step`` in a jitted ``jax.lax.scan`` over ``decode_tokens``
  tokens at batch ``decode_batch``, from ``model.init_state``, as tokens/s =
  decode_batch · decode_tokens / time and time per step (decoding does not depend on
  ``T``; it is measured once per mixer);
* the parameter count, the decoding state (float32 numbers per sequence per layer, a
  complex number counts two) and the parallel method the mixer uses by default on
  this backend (the ``"auto"`` policies resolved).

Writes ``experiments/results/mixers_<device>.md`` and ``.csv``; rows are printed as
they complete and the table is rewritten after each, so a killed run keeps its rows.

Run: ``python experiments/bench_mixers.py`` (``--preset demo`` for a small run,
``--mixers lru mamba`` for a subset).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

try:
    from experiments import benchlib
except ImportError:  # run as a script: python experiments/bench_mixers.py
    import benchlib

from seqjax.nn import registry, selective_scan
from seqjax.nn.models import LanguageModel
from seqjax.scan import methods

VOCAB = 256  # bytes
# Training batches hold ``tokens`` tokens: batch = tokens // T (the full preset: batch
# 8 at T = 512, batch 2 at T = 2048), which keeps every mixer's temporaries within a
# shared 23 GiB CPU machine (S4D's recurrence, used with segment_ids, holds all states).
PRESETS = {
    "demo": dict(
        width=64, depth=2, lengths=[256], tokens=1024, decode_batch=4, decode_tokens=64
    ),
    "full": dict(
        width=256,
        depth=4,
        lengths=[512, 2048],
        tokens=4096,
        decode_batch=8,
        decode_tokens=256,
    ),
}
HEADER = [
    "mixer", "T", "batch", "params", "state / layer", "parallel method (default)",
    "train tok/s", "fwd+bwd", "compile fwd+bwd", "temp mem fwd+bwd",
    "decode tok/s", "decode / step", "compile decode", "loss at init",
]  # fmt: skip


def all_mixers() -> list[str]:
    """Every registered mixer name except ``conv``."""
    return [name for name in registry.mixer_names() if name != "conv"]


def build(mixer: str, width: int, depth: int, seed: int = 0) -> LanguageModel:
    """The byte-level language model with ``mixer`` (default options) in each block."""
    return LanguageModel(VOCAB, width, depth, mixer, rngs=nnx.Rngs(seed))


def count_params(model: nnx.Module) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def state_numbers(model: LanguageModel) -> int:
    """Real numbers in one sequence's decoding state, over all layers (complex = 2)."""
    shapes = jax.eval_shape(lambda: model.init_state(1))
    total = 0
    for leaf in jax.tree.leaves(shapes):
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            total += 2 * int(np.prod(leaf.shape))
        elif jnp.issubdtype(leaf.dtype, jnp.floating):
            total += int(np.prod(leaf.shape))
    return total


def parallel_method(mixer: nnx.Module) -> str:
    """How ``mixer`` evaluates its recurrence over time by default on this backend."""

    def scan_auto(method: str = "auto") -> str:
        resolved = methods.resolve(
            methods.parse(method), length=1, step_elements=1, matrix=False
        )
        return f"{method}→{resolved.value}" if method == "auto" else method

    if hasattr(mixer, "resolved_method"):  # ParaGRU / ParaLSTM
        resolved = mixer.resolved_method()
        label = "lax.scan" if resolved == "sequential" else resolved
        return f"{mixer.method}→{label}" if mixer.method == "auto" else label
    if getattr(mixer, "mode", "recurrence") != "recurrence":  # S4D's kernel form
        return "FFT convolution (Vandermonde kernel)"
    if isinstance(getattr(mixer, "method", None), str):  # LRU, S4D, S5, RG-LRU
        return f"linear_scan {scan_auto(mixer.method)}"
    if hasattr(mixer, "intra_chunk"):  # Mamba's selective scan
        inner = mixer.intra_chunk
        if inner == "auto":
            inner = f"auto→{selective_scan.resolve(inner)}"
        return (
            f"selective scan, chunks of {mixer.chunk_size} ({inner} inside, "
            "lax.scan across)"
        )
    if hasattr(mixer, "chunk_size"):  # GLA, LightNet: chunked_gla
        return (
            f"chunked GLA, chunks of {mixer.chunk_size} (quadratic inside, "
            f"linear_scan {scan_auto()} across)"
        )
    return "n/a"


def train_step(model: LanguageModel):
    """``(fn, params)``: ``fn(params, tokens)`` is the loss and its gradient."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, tokens):
        model = nnx.merge(graph, params, rest)
        logits = model(tokens[:, :-1])
        logp = jax.nn.log_softmax(logits, axis=-1)
        target = tokens[:, 1:, None]
        return -jnp.mean(jnp.take_along_axis(logp, target, axis=-1))

    return jax.value_and_grad(loss), params


def decoder(model: LanguageModel, batch: int):
    """``(fn, params)``: ``fn(params, tokens)`` steps through ``tokens: [batch, n]``."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def decode(params, tokens):
        model = nnx.merge(graph, params, rest)

        def step(carry, token):
            state, _ = carry
            return model.step(state, token), None

        logits0 = jnp.zeros((batch, VOCAB), jnp.float32)
        (_, logits), _ = jax.lax.scan(
            step, (model.init_state(batch), logits0), tokens.T
        )
        return logits

    return decode, params


def train_batch(args, length: int) -> int:
    """``--batch`` if given, else ``tokens // length`` (at least 1)."""
    return args.batch or max(args.tokens // length, 1)


def run(args):
    """Yields the rows so far after each (mixer, T) pair is measured."""
    fmt_s, fmt_b = benchlib.fmt_seconds, benchlib.fmt_bytes
    rows = []
    key = jax.random.key(0)
    for mixer in args.mixers:
        model = build(mixer, args.width, args.depth)
        params_n = count_params(model)
        state_n = state_numbers(model) // args.depth
        method = parallel_method(model.backbone.blocks[0].mixer)

        decode, params = decoder(model, args.decode_batch)
        prompt = jax.random.randint(
            key, (args.decode_batch, args.decode_tokens), 0, VOCAB
        )
        md = benchlib.measure(decode, params, prompt, min_time=args.min_time)
        logits = jax.jit(decode)(params, prompt)
        if not bool(jnp.all(jnp.isfinite(logits))):
            raise FloatingPointError(f"{mixer}: non-finite decoding logits.")
        n_decoded = args.decode_batch * args.decode_tokens

        for length in args.lengths:
            batch = train_batch(args, length)
            step, params = train_step(model)
            tokens = jax.random.randint(key, (batch, length + 1), 0, VOCAB)
            mt = benchlib.measure(step, params, tokens, min_time=args.min_time)
            loss, grads = jax.jit(step)(params, tokens)
            finite = bool(jnp.isfinite(loss)) and all(
                bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)
            )
            if not finite:
                raise FloatingPointError(f"{mixer}, T={length}: non-finite gradients.")
            row = [
                mixer, length, batch, f"{params_n:,}", f"{state_n:,}", method,
                f"{batch * length / mt.median_s:,.0f}", fmt_s(mt.median_s),
                fmt_s(mt.compile_s), fmt_b(mt.temp_bytes),
                f"{n_decoded / md.median_s:,.0f}",
                fmt_s(md.median_s / args.decode_tokens), fmt_s(md.compile_s),
                f"{float(loss):.3f}",
            ]  # fmt: skip
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
            yield rows


def notes(args) -> list[str]:
    return [
        f"byte-level LanguageModel: vocab {VOCAB}, width {args.width}, depth "
        f"{args.depth}, tied embeddings, RMSNorm pre-norm blocks, default MLP, no "
        "extra conv; float32; parameters seeded identically",
        "training batches: "
        + (
            f"batch {args.batch} at every T"
            if args.batch
            else f"{args.tokens} tokens each (batch = {args.tokens} // T), so every "
            "row processes the same number of tokens per step"
        ),
        "every mixer runs with its registry defaults (the papers' usual settings), so "
        "parameter counts and state sizes differ between mixers: compare speed "
        "together with the `params` and `state / layer` columns",
        "train tok/s = batch·T / median time of one jitted forward+backward of the "
        "mean next-token cross-entropy (jax.value_and_grad over the parameters); "
        "compile times are separate",
        "temp mem = XLA's peak temporary allocation of the compiled forward+backward "
        "(compiled.memory_analysis().temp_size_in_bytes), excluding parameters and "
        "inputs",
        f"decode: model.step in a jitted lax.scan over {args.decode_tokens} tokens at "
        f"batch {args.decode_batch} from init_state; decode tok/s = batch·tokens / "
        "time; "
        "decode / step = time / tokens; it does not depend on T (measured once per "
        "mixer, repeated on each of its rows)",
        "state / layer = real float32 numbers of one sequence's decoding state per "
        "layer (complex numbers count two; Mamba's includes its conv buffer, "
        "LightNet's its log-normaliser)",
        "parallel method: how the training (parallel) form evaluates the recurrence "
        f"on this backend ({jax.default_backend()}) with default options; the "
        "'auto' policies resolved (seqjax.scan.methods.resolve for linear_scan, "
        "ParaRNN's resolved_method)",
        "loss at init: the measured training loss on uniform random bytes (ln 256 "
        "= 5.545 for a uniform prediction; the tied N(0, 1/width) embeddings give "
        "unit-scale logits, hence a little more); gradients and decoding logits were "
        "checked finite",
        "timings are medians of at least 3 calls; when the load average (below) "
        f"exceeds the {os.cpu_count()} CPU cores, other jobs slow some rows more than "
        "others and differences under ~2x between rows are noise",
        "load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{x:.2f}" for x in args.load_start),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--mixers", nargs="+", choices=all_mixers())
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--width", type=int)
    parser.add_argument("--depth", type=int)
    parser.add_argument("--tokens", type=int, help="training tokens per step")
    parser.add_argument(
        "--batch", type=int, help="training batch (default: tokens // T)"
    )
    parser.add_argument("--decode-batch", type=int)
    parser.add_argument("--decode-tokens", type=int)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument(
        "--name", help="results file stem (default: mixers, or mixers_<preset>)"
    )
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    for field in (
        "lengths",
        "width",
        "depth",
        "tokens",
        "decode_batch",
        "decode_tokens",
    ):
        if getattr(args, field) is None:
            setattr(args, field, preset[field])
    args.mixers = args.mixers or all_mixers()
    name = args.name or ("mixers" if args.preset == "full" else f"mixers_{args.preset}")
    command = "python experiments/bench_mixers.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.load_start = os.getloadavg()
    print(f"mixers benchmark on {benchlib.device_description()}")
    print(" | ".join(HEADER), flush=True)
    start = time.perf_counter()
    title = "Sequence mixers in a byte-level language model"
    path, rows = None, []
    for rows in run(args):
        path = benchlib.write_table(name, title, HEADER, rows, notes(args), command)
    end_notes = notes(args) + [
        "load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + f"; whole run {time.perf_counter() - start:.0f} s"
    ]
    path = benchlib.write_table(name, title, HEADER, rows, end_notes, command)
    print(f"\nwrote {path} in {time.perf_counter() - start:.0f} s")
    return path


if __name__ == "__main__":
    main()
