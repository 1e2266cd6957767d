"""Training throughput and memory of the demo language model with six sequence mixers.

The model, data and optimizer are those of ``configs/demo.py`` (a byte-level
``LanguageModel``: width 128, depth 2, GLU channel mixer, causal conv of width 4,
sequence length 256, batch 16, grouped AdamW with clipping); only the sequence mixer
changes between rows:

* ``gru_scan``: a GRU (``nnx.GRUCell``, full recurrent matrices) evaluated with
  ``jax.lax.scan`` — ``seqjax.nn.ParallelRNN(cell, method="sequential")``, registered
  as a mixer; the reference row of the ratio column;
* ``paragru``: ParaGRU as in the demo (``heads=4``, ``method="auto"``: ``lax.scan``
  on CPU, Newton on accelerators);
* ``paragru_newton``: the same ParaGRU with Newton's method forced;
* ``lru``, ``mamba``: the registry's mixers with their default options;
* ``transformer``: causal multi-head softmax self-attention with rotary positions
  (``CausalSelfAttention``, defined here as a baseline) in the same pre-norm block.

For each it builds the trainer's run (``seqjax.train.trainer.build``), compiles the
real jitted, sharded, state-donating ``run.train_step`` ahead of time for the
pre-built batches, reads XLA's memory analysis of the compiled step, runs a few
warm-up steps, then times ``--steps`` steps (each blocked until the new state is
ready): tokens/s = batch·T / median step time. Every model trains on the same batches
(built once, before any timing, from the built-in corpus or synthetic bytes).

Writes ``experiments/results/train_<device>.md`` and ``.csv``; rows are printed as
they complete and the table is rewritten after each, so a killed run keeps its rows.

Run: ``python experiments/bench_train.py`` (``--preset tiny`` for the demo's tiny
variant, ``--models gru_scan lru`` for a subset, ``--set data.batch_size=8`` for
config overrides).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

try:
    from experiments import bench_mixers, benchlib
except ImportError:  # run as a script: python experiments/bench_train.py
    import bench_mixers
    import benchlib

from seqjax import config as config_lib
from seqjax.data import tokenizer as tokenizer_lib
from seqjax.nn import parallel_rnn, registry, segments
from seqjax.tasks import registry as task_registry
from seqjax.train import mesh as mesh_lib
from seqjax.train import trainer

DEMO_CONFIG = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "demo.py")
)

# Registry names of the two mixers this file defines (removed again after ``main``).
GRU_NAME = "bench_train_gru"
ATTENTION_NAME = "bench_train_attention"


# --- the baseline mixers ------------------------------------------------------------


def rotary(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
    """Rotary position embedding: rotates feature pairs by position-dependent angles.

    .. math:: (x_i, x_{i+d/2}) \\mapsto (x_i \\cos t\\theta_i - x_{i+d/2} \\sin
        t\\theta_i,\\; x_i \\sin t\\theta_i + x_{i+d/2} \\cos t\\theta_i),
        \\quad \\theta_i = \\text{base}^{-2i/d}

    Args:
      x: ``[batch, time, heads, d]`` with ``d`` even.
      positions: ``[time]`` positions ``t``.
      base: the frequency base.

    Returns:
      ``[batch, time, heads, d]``, same dtype as ``x``.

    Raises:
      ValueError: odd last dimension.

    Reference: Su et al., "RoFormer: Enhanced Transformer with Rotary Position
    Embedding" (2021).
    """
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary: the head dimension must be even, got {d}.")
    half = d // 2
    theta = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions.astype(jnp.float32)[:, None] * theta  # [time, half]
    cos = jnp.cos(angles)[:, None, :]
    sin = jnp.sin(angles)[:, None, :]
    x1 = x[..., :half].astype(jnp.float32)
    x2 = x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.astype(x.dtype)


class CausalSelfAttention(nnx.Module):
    """Causal multi-head softmax self-attention with rotary positions (a baseline).

    .. math:: y = W_o\\,\\big[\\mathrm{softmax}\\big(R q_h (R k_h)^T / \\sqrt{d_h}
        + M\\big) v_h\\big]_{h=1}^{H}, \\quad M_{ts} = 0 \\text{ if } s \\le t
        \\text{ and } s, t \\text{ in one segment, else } -\\infty

    The parallel (training) form only: it has no ``init_state``/``step`` (no KV
    cache), because this file uses it as a training-throughput baseline and neither
    ``Block`` nor the train step needs them. Attention runs through
    ``jax.nn.dot_product_attention`` (XLA implementation: the full ``T x T`` score
    matrix per head, no fused kernel). With ``segment_ids``, a position attends only
    to earlier positions of its own segment (a run of equal labels, as the recurrent
    mixers restart their state at each segment start).

    Args:
      features: model width (input and output).
      heads: attention heads; ``features / heads`` must be an even integer.
      rope_base: rotary frequency base.
      dtype: compute dtype; param_dtype: parameter dtype.
      rngs: ``nnx.Rngs``.

    Raises:
      ValueError: ``heads`` that does not divide ``features`` into even head sizes.

    Example:
      >>> layer = CausalSelfAttention(16, heads=2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 16))).shape
      (2, 5, 16)

    References: Vaswani et al., "Attention Is All You Need" (2017); Su et al.,
    "RoFormer: Enhanced Transformer with Rotary Position Embedding" (2021).
    """

    def __init__(
        self,
        features: int,
        *,
        heads: int = 4,
        rope_base: float = 10_000.0,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if heads < 1 or features % heads or (features // heads) % 2:
            raise ValueError(
                f"heads must divide features into even head sizes; got features "
                f"{features}, heads {heads}."
            )
        self.features = features
        self.heads = heads
        self.rope_base = rope_base
        dt = dict(dtype=dtype, param_dtype=param_dtype)
        self.qkv = nnx.Linear(features, 3 * features, use_bias=False, rngs=rngs, **dt)
        self.out = nnx.Linear(features, features, use_bias=False, rngs=rngs, **dt)

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """``x: [batch, time, features] -> [batch, time, features]``.

        Args:
          x: inputs.
          segment_ids: optional ``[batch, time]`` ints; attention stays inside each
            segment.

        Raises:
          ValueError: ``x`` not ``[batch, time, features]``.
        """
        if x.ndim != 3 or x.shape[-1] != self.features:
            raise ValueError(
                f"CausalSelfAttention: x must be [batch, time, {self.features}], got "
                f"shape {x.shape}."
            )
        batch, length, _ = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        positions = jnp.arange(length)
        q = rotary(q, positions, self.rope_base)
        k = rotary(k, positions, self.rope_base)
        mask = None
        if segment_ids is not None:
            run = jnp.cumsum(segments.segment_starts(segment_ids), axis=1)
            mask = (run[:, :, None] == run[:, None, :])[:, None]  # [B, 1, T, T]
        y = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True)
        return self.out(y.reshape(batch, length, self.features))


def gru_scan(
    features: int,
    *,
    rngs: nnx.Rngs,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
) -> parallel_rnn.ParallelRNN:
    """A GRU (``nnx.GRUCell``, ``features -> features``) run with ``jax.lax.scan``.

    .. math:: h_t = (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

    Args:
      features: input and hidden width.
      rngs: ``nnx.Rngs``.
      dtype: compute dtype; param_dtype: parameter dtype.

    Returns:
      ``ParallelRNN(nnx.GRUCell(...), method="sequential")``.

    Reference: Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder
    for Statistical Machine Translation" (2014).
    """
    cell = nnx.GRUCell(
        features, features, dtype=dtype, param_dtype=param_dtype, rngs=rngs
    )
    return parallel_rnn.ParallelRNN(cell, method="sequential")


@contextlib.contextmanager
def registered_mixers() -> Iterator[None]:
    """Registers ``gru_scan`` and ``CausalSelfAttention`` for the duration."""
    added = []
    try:
        for name, factory in (
            (GRU_NAME, gru_scan),
            (ATTENTION_NAME, CausalSelfAttention),
        ):
            registry.register_mixer(name, factory)
            added.append(name)
        yield
    finally:
        for name in added:
            registry.unregister_mixer(name)


# --- the rows -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    label: str
    mixer: str
    options: dict


MODELS = {
    "gru_scan": ModelSpec("GRU (lax.scan)", GRU_NAME, {}),
    "paragru": ModelSpec("ParaGRU (auto)", "paragru", {"heads": 4}),
    "paragru_newton": ModelSpec(
        "ParaGRU (newton)", "paragru", {"heads": 4, "method": "newton"}
    ),
    "lru": ModelSpec("LRU", "lru", {}),
    "mamba": ModelSpec("Mamba", "mamba", {}),
    "transformer": ModelSpec("Transformer", ATTENTION_NAME, {"heads": 4}),
}
REFERENCE = "gru_scan"
PRESETS = {
    "demo": dict(variant="default", steps=10, warmup=2),
    "tiny": dict(variant="tiny", steps=3, warmup=1),
}
HEADER = [
    "model", "mixer options", "parallel form", "params", "tokens / step", "tokens/s",
    "step time", "step min-max", "compile", "temp mem", "state mem", "device peak",
    "tokens/s vs GRU lax.scan", "loss first -> last", "load (1 min)",
]  # fmt: skip


def model_config(base: config_lib.Config, spec: ModelSpec) -> config_lib.Config:
    config = config_lib.copy_config(base)
    config.model.mixer = spec.mixer
    config.model.mixer_options = dict(spec.options)
    return config


def parallel_form(mixer: nnx.Module) -> str:
    if isinstance(mixer, CausalSelfAttention):
        return "softmax attention (XLA, T x T scores)"
    return bench_mixers.parallel_method(mixer)


def host_batches(config: config_lib.Config, count: int, kind: str) -> list[dict]:
    """``count`` training batches (numpy) of the config's shape, built before timing."""
    d = config.data
    if kind == "synthetic":
        rng = np.random.default_rng(d.seed)
        vocab = tokenizer_lib.ByteTokenizer().vocab_size
        out = []
        for _ in range(count):
            tokens = rng.integers(
                tokenizer_lib.OFFSET, vocab, (d.batch_size, d.seq_len + 1)
            )
            out.append(
                {
                    "inputs": tokens[:, :-1].astype(np.int32),
                    "targets": tokens[:, 1:].astype(np.int32),
                    "loss_mask": np.ones((d.batch_size, d.seq_len), np.float32),
                    "positions": np.broadcast_to(
                        np.arange(d.seq_len, dtype=np.int32), (d.batch_size, d.seq_len)
                    ).copy(),
                    "segment_ids": np.ones((d.batch_size, d.seq_len), np.int32),
                }
            )
        return out
    task = task_registry.get_task(config.task)
    train, _ = task.datasets(config, jax.process_index(), jax.process_count())
    data = iter(train.to_iter_dataset())
    return [next(data) for _ in range(count)]


def tree_bytes(tree) -> int:
    return sum(
        math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


def measure(config: config_lib.Config, batches: list[dict], steps: int, warmup: int):
    """Builds the run, compiles its train step and times it; returns a dict."""
    run = trainer.build(config)
    model = nnx.eval_shape(lambda: run.task.build_model(config, nnx.Rngs(0)))
    params = sum(
        math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))
    )
    form = parallel_form(model.backbone.blocks[0].mixer)
    state = run.init_state()
    placed = [mesh_lib.put_batch(b, run.mesh) for b in batches]
    start = time.perf_counter()
    compiled = run.train_step.lower(state, placed[0]).compile()
    compile_s = time.perf_counter() - start
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # noqa: BLE001 - some backends have no memory analysis.
        temp = None
    times, losses = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, metrics = compiled(state, placed[i % len(placed)])
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(metrics["loss"]))
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"{config.model.mixer}: non-finite losses {losses}")
    stats = jax.local_devices()[0].memory_stats() or {}
    del state
    d = config.data
    return dict(
        params=params,
        form=form,
        tokens=d.batch_size * d.seq_len,
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        compile_s=compile_s,
        temp=temp,
        state=tree_bytes(run.abstract_state),
        peak=stats.get("peak_bytes_in_use"),
        loss_first=losses[0],
        loss_last=losses[-1],
        load=os.getloadavg()[0],
    )


def format_rows(results: dict[str, dict]) -> list[list[str]]:
    fmt_s, fmt_b = benchlib.fmt_seconds, benchlib.fmt_bytes
    reference = results.get(REFERENCE)
    rows = []
    for key, r in results.items():
        spec = MODELS[key]
        rate = r["tokens"] / r["median_s"]
        ratio = (
            "n/a"
            if reference is None
            else f"{rate / (reference['tokens'] / reference['median_s']):.2f}x"
        )
        options = ", ".join(f"{k}={v}" for k, v in spec.options.items()) or "defaults"
        rows.append(
            [
                spec.label,
                options,
                r["form"],
                f"{r['params']:,}",
                f"{r['tokens']:,}",
                f"{rate:,.0f}",
                fmt_s(r["median_s"]),
                f"{fmt_s(r['min_s'])} - {fmt_s(r['max_s'])}",
                fmt_s(r["compile_s"]),
                fmt_b(r["temp"]),
                fmt_b(r["state"]),
                fmt_b(r["peak"]),
                ratio,
                f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}",
                f"{r['load']:.2f}",
            ]  # fmt: skip
        )
    return rows


def notes(args, config: config_lib.Config) -> list[str]:
    m, d, o = config.model, config.data, config.optim
    return [
        f"model: configs/demo.py ({args.preset} preset"
        + (f", overrides {' '.join(args.set)}" if args.set else "")
        + f"): byte-level LanguageModel, width {m.features}, depth {m.depth}, "
        f"mlp {m.mlp}, conv_width {m.conv_width}, norm {m.norm}, tied embeddings "
        f"{m.tie_embeddings}, dtype {m.dtype}; sequence length {d.seq_len}, batch "
        f"{d.batch_size}; AdamW (lr {o.learning_rate}, weight decay "
        f"{o.weight_decay}, clip {o.grad_clip_norm}, accumulation "
        f"{o.accumulation_steps}); only model.mixer and mixer_options change "
        "between rows",
        f"data: {args.batches} batches built before any timing from "
        + (
            "the built-in corpus (the demo's packed documents)"
            if args.data == "builtin"
            else "uniform random bytes (one document per row)"
        )
        + ", the same for every model, cycled through the steps",
        "GRU (lax.scan): nnx.GRUCell (full input and recurrent matrices) in "
        "seqjax.nn.ParallelRNN(method='sequential'), i.e. jax.lax.scan over time; "
        "it restarts its carry at document starts like the other mixers",
        "ParaGRU (auto) is the demo's mixer (auto = lax.scan on CPU, Newton on "
        "accelerators); ParaGRU (newton) forces newton_scan with its defaults",
        "Transformer: CausalSelfAttention defined in this file: 4-head causal "
        "softmax self-attention with rotary positions, attention kept inside each "
        "document, in the same pre-norm Block (conv and GLU included); only its "
        "parallel (training) form exists — it has no recurrent step or KV cache, as "
        "a training-throughput baseline needs none",
        f"tokens/s = batch·T / median time of {args.steps} train steps after "
        f"{args.warmup} warm-up steps; each step is the trainer's own jitted, "
        "sharded run.train_step (loss, gradients, AdamW update, state donated), "
        "compiled ahead of time, and is blocked until its new state is ready; "
        "step min-max shows the spread of the timed steps",
        "compile = lower + compile of the train step; temp mem = XLA's peak "
        "temporary allocation of the compiled step "
        "(compiled.memory_analysis().temp_size_in_bytes), excluding its arguments "
        "and outputs; state mem = parameters + optimizer moments (float32); device "
        "peak = the device's peak_bytes_in_use from memory_stats() after the row "
        "(process-wide since start, so it only grows; n/a on CPU, which has no "
        "memory stats)",
        "tokens/s vs GRU lax.scan = tokens/s / the GRU (lax.scan) row's; loss "
        "first -> last: the training loss of the first and last step run (finite "
        "checked), a sanity check, not a quality comparison (the few batches "
        "repeat, so it falls fast)",
        f"load (1 min) = os.getloadavg()[0] after the row; on {os.cpu_count()} "
        "CPU cores shared with other jobs, a load above the core count slows rows "
        "unevenly and differences under ~2x between rows are noise",
        "load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{x:.2f}" for x in args.load_start),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(MODELS)
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides (e.g. data.batch_size=8 mesh.data=1)",
    )
    parser.add_argument("--steps", type=int, help="timed steps per model")
    parser.add_argument("--warmup", type=int, help="untimed steps after compiling")
    parser.add_argument("--batches", type=int, default=4, help="pre-built batches")
    parser.add_argument("--data", choices=["builtin", "synthetic"], default="builtin")
    parser.add_argument(
        "--name", help="results file stem (default: train, or train_<preset>)"
    )
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    args.steps = args.steps or preset["steps"]
    args.warmup = preset["warmup"] if args.warmup is None else args.warmup
    name = args.name or ("train" if args.preset == "demo" else f"train_{args.preset}")
    command = " ".join(
        ["python experiments/bench_train.py", *(sys.argv[1:] if argv is None else argv)]
    )
    base = config_lib.load_config(DEMO_CONFIG, preset["variant"])
    base = config_lib.apply_overrides(base, args.set)
    # The reference row first, so that the ratio column fills as rows complete.
    models = sorted(args.models, key=lambda k: (k != REFERENCE, args.models.index(k)))
    args.load_start = os.getloadavg()
    print(f"train benchmark on {benchlib.device_description()}")
    print(" | ".join(HEADER), flush=True)
    start = time.perf_counter()
    batches = host_batches(base, args.batches, args.data)
    title = "Training throughput and memory at the demo size"
    results: dict[str, dict] = {}
    path = None
    with registered_mixers():
        for key in models:
            config = model_config(base, MODELS[key])
            results[key] = measure(config, batches, args.steps, args.warmup)
            rows = format_rows(results)
            print(" | ".join(rows[-1]), flush=True)
            path = benchlib.write_table(
                name, title, HEADER, rows, notes(args, base), command
            )
    end_notes = notes(args, base) + [
        "load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + f"; whole run {time.perf_counter() - start:.0f} s"
    ]
    path = benchlib.write_table(
        name, title, HEADER, format_rows(results), end_notes, command
    )
    print(f"\nwrote {path} in {time.perf_counter() - start:.0f} s")
    return path


if __name__ == "__main__":
    main()
