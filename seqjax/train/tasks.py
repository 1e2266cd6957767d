"""Tasks: what the trainer trains — a model, its data, its loss and its metrics.

A task is an object with

* ``build_model(config, rngs) -> nnx.Module``;
* ``datasets(config, process_index, process_count) -> (train, eval)``: grain
  ``MapDataset``\\ s of batches (dicts of numpy arrays, this process's share);
* ``loss(model, batch) -> (loss, sums)``: the mean training loss and a dict of summed
  statistics (``sums`` are added over batches for evaluation);
* ``summarize(sums) -> dict``: evaluation metrics (``"eval/loss"``, ...);
* ``tokens(batch) -> int``: tokens a batch trains on (for throughput).

The trainer knows nothing else about the task. ``TASKS`` maps names to tasks;
``register_task`` adds one.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from seqjax.data import corpus, packing, tokenizer
from seqjax.nn import models
from seqjax.train import config as config_lib

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class Task(Protocol):
    name: str

    def build_model(self, config: config_lib.Config, rngs: nnx.Rngs) -> nnx.Module: ...

    def datasets(
        self, config: config_lib.Config, process_index: int, process_count: int
    ): ...

    def loss(self, model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]: ...

    def summarize(self, sums: dict) -> dict[str, float]: ...

    def tokens(self, batch: dict) -> int: ...


def backbone_options(model: config_lib.ModelConfig) -> dict[str, Any]:
    """Keyword options shared by every seqjax model: the residual backbone's."""
    return dict(
        mixer_options=dict(model.mixer_options),
        norm=model.norm,
        mlp=model.mlp,
        mlp_options=dict(model.mlp_options),
        conv_width=model.conv_width,
        dropout=model.dropout,
        dtype=DTYPES[model.dtype],
    )


class LanguageModelling:
    """Next-byte prediction on packed documents (``seqjax.nn.models.LanguageModel``).

    Data: ``data.source`` is ``"builtin"`` (the standard library's code and its help
    topics; held-out split by file), ``"files"`` (``data.files``) or ``"tfds"``
    (``data.tfds_name``: its ``train`` split, and ``data.options["eval_split"]``,
    default ``test``, for evaluation). Documents are
    byte-tokenised and packed into ``data.seq_len`` rows with segment ids; the model
    restarts its state at document boundaries.

    Metrics: ``eval/loss`` (nats per predicted token), ``eval/bits_per_byte`` (total
    bits over the bytes predicted; end-of-document predictions are charged to the
    bytes, as a compressor would be) and ``eval/accuracy`` (next-byte accuracy).
    """

    name = "lm"
    tokenizer = tokenizer.ByteTokenizer()

    def build_model(self, config, rngs):
        m = config.model
        return models.LanguageModel(
            self.tokenizer.vocab_size,
            m.features,
            m.depth,
            m.mixer,
            tie_embeddings=m.tie_embeddings,
            rngs=rngs,
            **backbone_options(m),
        )

    def documents(self, config, split: str):
        d = config.data
        if d.source == "builtin":
            return corpus.builtin_corpus(
                split, kind=d.kind, held_out_fraction=d.held_out_fraction,
                max_bytes=d.max_bytes,
            )  # fmt: skip
        if d.source == "files":
            if not d.files:
                raise config_lib.ConfigError("data.source='files' needs data.files")
            return corpus.text_files(
                d.files, split=split, held_out_fraction=d.held_out_fraction,
                max_bytes=d.max_bytes,
            )  # fmt: skip
        if d.source == "tfds":
            if not d.tfds_name:
                raise config_lib.ConfigError("data.source='tfds' needs data.tfds_name")
            tfds_split = (
                "train" if split == "train" else d.options.get("eval_split", "test")
            )
            return corpus.tfds_text(
                d.tfds_name, tfds_split, data_dir=d.tfds_data_dir or None,
                max_documents=d.options.get("max_documents"),
            )  # fmt: skip
        raise config_lib.ConfigError(
            f"data.source must be 'builtin', 'files' or 'tfds', got {d.source!r}"
        )

    def datasets(self, config, process_index, process_count):
        d = config.data
        local = _local_batch(d.batch_size, process_count, "data.batch_size")
        eval_local = _local_batch(
            d.eval_batch_size or d.batch_size, process_count, "data.eval_batch_size"
        )
        common = dict(
            process_index=process_index, process_count=process_count,
            tokenizer=self.tokenizer,
        )  # fmt: skip
        train = packing.lm_dataset(
            self.documents(config, "train"), d.seq_len, local, seed=d.seed, **common
        )
        held_out = packing.lm_dataset(
            self.documents(config, "validation"), d.seq_len, eval_local,
            shuffle=False, num_epochs=1, **common,
        )  # fmt: skip
        return train, held_out

    def loss(self, model, batch):
        logits = model(batch["inputs"], segment_ids=batch["segment_ids"])
        targets = batch["targets"]
        mask = batch["loss_mask"].astype(jnp.float32)
        nats = optax.softmax_cross_entropy_with_integer_labels(logits, targets) * mask
        count = jnp.sum(mask)
        is_byte = (targets >= tokenizer.OFFSET).astype(jnp.float32) * mask
        correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32) * mask
        sums = dict(nats=jnp.sum(nats), count=count, bytes=jnp.sum(is_byte),
                    correct=jnp.sum(correct))  # fmt: skip
        return sums["nats"] / jnp.maximum(count, 1.0), sums

    def summarize(self, sums):
        count = max(float(sums["count"]), 1.0)
        return {
            "eval/loss": float(sums["nats"]) / count,
            "eval/bits_per_byte": float(sums["nats"])
            / math.log(2)
            / max(float(sums["bytes"]), 1.0),
            "eval/accuracy": float(sums["correct"]) / count,
        }

    def tokens(self, batch):
        return int(batch["loss_mask"].sum())

    def sample(self, model, prompt: str, max_tokens: int, *, rng, temperature, top_k):
        """Continues ``prompt`` with recurrent decoding; returns the new text."""
        tokens = jnp.asarray(self.tokenizer.encode(prompt, add_bos=True))[None]
        new = model.generate(
            tokens, max_tokens, rng=rng, temperature=temperature, top_k=top_k
        )
        return self.tokenizer.decode(jax.device_get(new[0]))


def _local_batch(global_batch: int, process_count: int, key: str) -> int:
    if global_batch % process_count:
        raise config_lib.ConfigError(
            f"{key} ({global_batch}) must be divisible by the number of processes "
            f"({process_count})"
        )
    return global_batch // process_count


TASKS: dict[str, Task] = {"lm": LanguageModelling()}

# Modules that register more tasks when imported (classification and retrieval over
# LRA and MNIST; the synthetic memory tasks). Imported on first lookup, so that the
# language-modelling path does not load them.
TASK_MODULES = ("seqjax.train.classification", "seqjax.train.synthetic")


def register_task(task: Task) -> None:
    """Adds a task under ``task.name`` (replacing one of the same name)."""
    TASKS[task.name] = task


def _load_task_modules() -> None:
    for module in TASK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def task_names() -> list[str]:
    _load_task_modules()
    return sorted(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        _load_task_modules()
    try:
        return TASKS[name]
    except KeyError:
        raise config_lib.ConfigError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}"
        ) from None
