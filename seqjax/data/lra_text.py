"""LRA Text: IMDB sentiment classification at the byte level, up to 4096 bytes.

Each review is encoded as UTF-8 bytes with :class:`ByteTokenizer` (byte ``b`` is
token ``b + 3``, ``0`` is padding), truncated to its first ``max_length`` bytes
and padded with ``0``:

.. math:: \\mathrm{inputs}[t] = \\mathrm{utf8}(\\mathrm{review})[t] + 3
   \\ (t < \\mathrm{lengths}),\\qquad 0\\ \\text{otherwise}.

LRA (and S4/S5 after it) encoded ``byte + 1`` and had no validation set: they
validated on the test set. Here ``"validation"`` is 2,500 reviews (10%) held out
of the 25,000 training reviews with a seed
(:func:`seqjax.data.corpus.holdout_indices`), so the splits are
22,500/2,500/25,000 and the test set is only for the final number.

Records: ``{"inputs": int32[max_length], "lengths": int32, "targets": int32}``,
two classes (0 negative, 1 positive), read from TFDS ``imdb_reviews``
(``plain_text``) through ``tfds.data_source``.

References:
  "Long Range Arena: A Benchmark for Efficient Transformers" (Tay et al., 2021);
  "Learning Word Vectors for Sentiment Analysis" (Maas et al., 2011).
"""

from __future__ import annotations

import functools
from typing import Any

import grain
import numpy as np

from seqjax.data import corpus
from seqjax.data import tokenizer as tokenizer_lib

MAX_LENGTH = 4096
NUM_CLASSES = 2
VALIDATION_SIZE = 2500


def encode_padded(
    text: str | bytes,
    max_length: int,
    tokenizer: tokenizer_lib.Tokenizer | None = None,
) -> tuple[np.ndarray, int]:
    """Tokenizes ``text``, keeps the first ``max_length`` tokens, pads with pad.

    Args:
      text: the document.
      max_length: output length, ``>= 1``.
      tokenizer: default :class:`ByteTokenizer`.

    Returns:
      ``(ids int32 [max_length], length)`` where ``length`` counts the real
      tokens.

    Raises:
      ValueError: ``max_length < 1``.

    Example:
      >>> ids, n = encode_padded("hi", 4)
      >>> ids.tolist(), n
      ([107, 108, 0, 0], 2)
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}.")
    tok = tokenizer if tokenizer is not None else tokenizer_lib.ByteTokenizer()
    ids = np.asarray(tok.encode(text))[:max_length]
    out = np.full(max_length, tok.pad_id, np.int32)
    out[: len(ids)] = ids
    return out, len(ids)


def _record(example: dict[str, Any], max_length: int) -> dict[str, np.ndarray]:
    text = example["text"]
    if isinstance(text, np.ndarray):
        text = text.item()
    ids, length = encode_padded(text, max_length)
    return {
        "inputs": ids,
        "lengths": np.int32(length),
        "targets": np.int32(example["label"]),
    }


def lra_text(
    split: str = "train",
    *,
    max_length: int = MAX_LENGTH,
    validation_size: int = VALIDATION_SIZE,
    seed: int = 0,
    data_dir: str | None = None,
    download: bool = False,
) -> grain.MapDataset:
    """LRA Text records of one split, from TFDS ``imdb_reviews``.

    Args:
      split: ``"train"``, ``"validation"`` (held out of train) or ``"test"``.
      max_length: bytes kept per review (4096 in LRA).
      validation_size: training reviews held out for validation.
      seed: seed of the held-out split.
      data_dir: folder of the prepared TFDS dataset.
      download: let TFDS download and prepare ``imdb_reviews``.

    Returns:
      a ``grain.MapDataset`` of ``{"inputs": int32[max_length], "lengths":
      int32, "targets": int32}``.

    Raises:
      ValueError: unknown ``split``, bad ``validation_size`` or ``max_length``.
      RuntimeError: the TFDS dataset cannot be opened.

    Example:
      >>> val = lra_text("validation")  # doctest: +SKIP
      >>> len(val), val[0]["inputs"].shape  # doctest: +SKIP
      (2500, (4096,))
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"max_length must be a positive int, got {max_length!r}.")
    if max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length}.")
    return corpus.tfds_examples(
        "imdb_reviews",
        split,
        functools.partial(_record, max_length=max_length),
        validation_size=validation_size,
        seed=seed,
        data_dir=data_dir,
        download=download,
    )
