"""Shared measuring and reporting for the benchmarks in ``experiments/``.

Timings are medians of repeated calls of an already compiled function, blocked until
ready; compile time is measured separately. Peak temporary memory comes from XLA's
``compiled.memory_analysis()``. Tables are written as Markdown (and CSV) under
``experiments/results/`` and name the device they ran on.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
import pathlib
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

# SEQJAX_RESULTS_DIR redirects the tables (e.g. to a folder that is copied back).
RESULTS = pathlib.Path(
    os.environ.get("SEQJAX_RESULTS_DIR", pathlib.Path(__file__).parent / "results")
)


def device_description() -> str:
    """Human-readable name of the default device, e.g. ``"NVIDIA H200"`` or the CPU."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"CPU ({cpu}, {jax.local_device_count()} JAX devices)"
    return getattr(dev, "device_kind", dev.platform)


def device_slug() -> str:
    """Short file-name-safe device name: ``cpu``, ``nvidia-h200``, ``tpu-v5e``..."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return "cpu"
    kind = getattr(dev, "device_kind", dev.platform).lower()
    kind = re.sub(r"[^a-z0-9]+", "-", kind).strip("-")
    return (
        kind if kind.startswith(("nvidia", "tpu", "amd")) else f"{dev.platform}-{kind}"
    )


@dataclasses.dataclass
class Measurement:
    compile_s: float
    median_s: float
    repeats: int
    temp_bytes: int | None


def measure(
    fn: Callable, *args, min_time: float = 0.2, max_repeats: int = 20
) -> Measurement:
    """Compiles ``fn`` for ``args`` and times it: median over repeats after a warm-up.

    Repeats until ``min_time`` seconds have passed (at least 3, at most
    ``max_repeats`` calls).
    """
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))  # warm-up
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_time and len(times) < max_repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # noqa: BLE001 - some backends have no memory analysis.
        temp = None
    return Measurement(compile_s, statistics.median(times), len(times), temp)


def measure_interleaved(
    fns: dict[str, Callable], *args, min_time: float = 0.2, max_repeats: int = 50
) -> dict[str, Measurement]:
    """Like ``measure`` for several functions of the same arguments, timed in turns.

    All are compiled and warmed up first; then each round calls every function once,
    until each has run ``min_time`` seconds (at least 5 rounds). Slow drifts of the
    machine (other processes, frequency changes) then affect all of them alike, which
    makes their ratios trustworthy even when the absolute times are noisy.
    """
    compiled, compile_s = {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        compile_s[name] = time.perf_counter() - start
        jax.block_until_ready(compiled[name](*args))  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    rounds = 0
    while rounds < 5 or (
        min(sum(t) for t in times.values()) < min_time and rounds < max_repeats
    ):
        for name, c in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(c(*args))
            times[name].append(time.perf_counter() - start)
        rounds += 1
    out = {}
    for name, c in compiled.items():
        try:
            temp = c.memory_analysis().temp_size_in_bytes
        except Exception:  # noqa: BLE001 - some backends have no memory analysis.
            temp = None
        out[name] = Measurement(
            compile_s[name], statistics.median(times[name]), rounds, temp
        )
    return out


def copy_seconds(nbytes: int, repeats: int = 10) -> float:
    """Median time of a jitted elementwise copy (``x * 2``) of ``nbytes`` of float32.

    The copy reads and writes ``nbytes`` each, so its bandwidth is
    ``2 * nbytes / copy_seconds(nbytes)``: the memory roofline of a streaming kernel.
    The input is donated and each output feeds the next call, so the copy writes into
    memory already mapped (a fresh output buffer would add page faults on CPU).
    """
    double = jax.jit(lambda x: x * 2, donate_argnums=0)
    x = jax.block_until_ready(double(jnp.ones((max(nbytes // 4, 1),), jnp.float32)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        x = jax.block_until_ready(double(x))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def write_table(
    name: str,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    notes: Sequence[str] = (),
    command: str = "",
) -> pathlib.Path:
    """Writes ``RESULTS/<name>_<device>.md`` and ``.csv``; returns the Markdown path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{name}_{device_slug()}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    lines = [
        f"# {title}",
        "",
        f"- device: {device_description()}",
        f"- jax {jax.__version__}, backend {jax.default_backend()}",
        f"- date: {datetime.date.today().isoformat()}",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- {n}" for n in notes]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    path = stem.with_suffix(".md")
    path.write_text("\n".join(lines) + "\n")
    return path
