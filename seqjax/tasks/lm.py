"""Language modelling: next-byte prediction on packed documents (task ``"lm"``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from seqjax import config as config_lib
from seqjax.data import corpus, packing, tokenizer
from seqjax.nn import models
from seqjax.tasks import registry


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
            **registry.backbone_options(m),
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
        local = registry.local_batch(d.batch_size, process_count, "data.batch_size")
        eval_local = registry.local_batch(
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


registry.register_task(LanguageModelling())
