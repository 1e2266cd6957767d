"""``experiments/bench_train.py``: its baseline mixers against references, and a smoke
run of the benchmark at a tiny size on two models."""

from __future__ import annotations

import csv
import importlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("experiments.bench_train")


def _allowed(segment_ids: np.ndarray) -> np.ndarray:
    """``[batch, t, s]``: s <= t and no segment start in (s, t] (a Python loop)."""
    batch, length = segment_ids.shape
    out = np.zeros((batch, length, length), bool)
    for b in range(batch):
        for t in range(length):
            for s in range(t + 1):
                run = segment_ids[b, s : t + 1]
                out[b, t, s] = bool(np.all(run == run[0]))
    return out


def _reference_attention(wqkv, wo, x, allowed, heads, base=10_000.0):
    """Softmax attention with rotary positions written with complex rotations."""
    batch, length, features = x.shape
    dh = features // heads
    half = dh // 2
    qkv = (x @ wqkv).reshape(batch, length, 3, heads, dh)
    theta = base ** (-np.arange(half) / half)
    phase = jnp.exp(1j * np.arange(length)[:, None, None] * theta)  # [T, 1, half]

    def rotate(u):
        z = (u[..., :half] + 1j * u[..., half:]) * phase
        return jnp.concatenate([z.real, z.imag], axis=-1)

    q, k, v = rotate(qkv[:, :, 0]), rotate(qkv[:, :, 1]), qkv[:, :, 2]
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(dh)
    scores = jnp.where(allowed[:, None], scores, -jnp.inf)
    weights = jax.nn.softmax(scores, axis=-1)
    y = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(batch, length, features)
    return y @ wo


@pytest.mark.parametrize("with_segments", [False, True])
def test_causal_self_attention_matches_reference(bench, with_segments):
    batch, length, features, heads = 2, 7, 16, 2
    layer = bench.CausalSelfAttention(features, heads=heads, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (batch, length, features))
    w = jax.random.normal(jax.random.key(2), (batch, length, features))
    # Row 0 reuses label 1 after label 2: a new segment, as the recurrent mixers see.
    seg = np.array([[1, 1, 2, 2, 2, 1, 1], [0, 0, 0, 0, 5, 5, 5]], np.int32)
    ids = jnp.asarray(seg) if with_segments else None
    allowed = _allowed(seg if with_segments else np.zeros_like(seg))
    graph, params = nnx.split(layer)

    def loss(params, x):
        return jnp.sum(nnx.merge(graph, params)(x, segment_ids=ids) * w)

    def ref_loss(kernels, x):
        return jnp.sum(_reference_attention(*kernels, x, allowed, heads) * w)

    kernels = (layer.qkv.kernel[...], layer.out.kernel[...])
    y = jax.jit(lambda p, x: nnx.merge(graph, p)(x, segment_ids=ids))(params, x)
    y_ref = jax.jit(_reference_attention, static_argnums=4)(*kernels, x, allowed, heads)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)

    g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    (g_qkv, g_out), g_x_ref = jax.jit(jax.grad(ref_loss, argnums=(0, 1)))(kernels, x)
    np.testing.assert_allclose(g_x, g_x_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_params["qkv"]["kernel"][...], g_qkv, 1e-4, 1e-5)
    np.testing.assert_allclose(g_params["out"]["kernel"][...], g_out, 1e-4, 1e-5)


def test_causal_self_attention_is_causal_and_checks_heads(bench):
    layer = bench.CausalSelfAttention(8, heads=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 6, 8))
    changed = x.at[:, 4:].set(0.0)
    forward = nnx.jit(lambda layer, x: layer(x))
    before, after = forward(layer, x), forward(layer, changed)
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert not np.allclose(before[:, 4:], after[:, 4:])
    with pytest.raises(ValueError, match="heads"):
        bench.CausalSelfAttention(8, heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="x must be"):
        layer(jnp.ones((2, 3, 5)))


def test_gru_scan_matches_flax_rnn(bench):
    layer = bench.gru_scan(4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 9, 4))
    ours = nnx.jit(lambda layer, x: layer(x))(layer, x)
    flax_rnn = nnx.jit(lambda cell, x: nnx.RNN(cell)(x))(layer.cell, x)
    np.testing.assert_allclose(ours, flax_rnn, rtol=1e-5, atol=1e-6)
    assert layer.resolved_method() == "sequential"


def test_bench_train_writes_its_table(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQJAX_RESULTS_DIR", str(tmp_path))
    # benchlib reads SEQJAX_RESULTS_DIR at import: point the imported module here.
    monkeypatch.setattr(bench.benchlib, "RESULTS", tmp_path)
    from seqjax.nn import registry

    path = bench.main(
        [
            "--preset", "tiny", "--models", "transformer", "gru_scan",
            "--set", "model.features=8", "data.seq_len=8", "data.batch_size=2",
            "mesh.data=1", "--steps", "2", "--warmup", "1", "--batches", "2",
            "--data", "synthetic", "--name", "train_smoke",
        ]
    )  # fmt: skip

    assert path.parent == tmp_path and path.exists()
    (csv_path,) = tmp_path.glob("train_smoke_*.csv")
    with open(csv_path, newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == bench.HEADER
    col = {name: i for i, name in enumerate(header)}
    # The reference row is measured first whatever the order asked.
    assert [r[0] for r in rows] == ["GRU (lax.scan)", "Transformer"]
    for row in rows:
        assert len(row) == len(header)
        assert row[col["tokens / step"]] == "16"
        assert float(row[col["tokens/s"]].replace(",", "")) > 0
        assert int(row[col["params"]].replace(",", "")) > 0
        first, last = row[col["loss first -> last"]].split(" -> ")
        assert np.isfinite(float(first)) and np.isfinite(float(last))
    assert rows[0][col["tokens/s vs GRU lax.scan"]] == "1.00x"
    assert rows[0][col["parallel form"]] == "lax.scan"
    assert rows[1][col["parallel form"]].startswith("softmax attention")
    markdown = path.read_text()
    assert "| " + " | ".join(header) + " |" in markdown
    assert "load average" in markdown
    # The benchmark's own mixers are registered only while it runs.
    assert bench.GRU_NAME.replace("_", "") not in registry.mixer_names()
    assert bench.ATTENTION_NAME.replace("_", "") not in registry.mixer_names()
