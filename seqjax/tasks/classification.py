"""Sequence classification and document retrieval: the Long Range Arena and s/psMNIST.

Two tasks are registered with ``seqjax.tasks`` when this module is imported:

* ``"classify"`` — one sequence, one label, with ``seqjax.nn.models.SequenceClassifier``
  (input encoder → residual blocks → norm → mean or last pooling over the true
  lengths → linear head). ``data.source`` picks the data:

  ==============  ============================================  ======  =======  ======
  source          data                                          length  classes  inputs
  ==============  ============================================  ======  =======  ======
  ``listops``     generated ListOps (``seqjax.data.listops``)   ≤ 2000  10       tokens
  ``pathfinder``  generated 32 px Pathfinder                    1024    2        pixels
  ``pathx``       generated 128 px Path-X                       16384   2        pixels
  ``text``        IMDB bytes, TFDS ``imdb_reviews``             ≤ 4096  2        tokens
  ``image``       CIFAR-10 gray, TFDS ``cifar10``               1024    10       pixels
  ``smnist``      MNIST pixels in scan order (idx or TFDS)      784     10       pixels
  ``psmnist``     MNIST pixels, one seeded permutation          784     10       pixels
  ==============  ============================================  ======  =======  ======

* ``"retrieval"`` (``data.source="aan"``) — LRA's byte-level document matching,
  with ``seqjax.nn.models.DualEncoder``: both documents through one shared encoder,
  ``[u, v, u ⊙ v, u − v]`` → MLP → 2 classes, read from the release's TSV files in
  ``data.options["data_dir"]`` (streamed, see ``seqjax.data.lra_retrieval``).

**Loss and metrics.** Cross-entropy of the true class, averaged over the real rows of
a batch; evaluation reports ``eval/loss`` (mean nats per sequence) and
``eval/accuracy`` over every evaluated sequence:

.. math:: \\mathcal{L} = -\\frac{1}{\\sum_i w_i} \\sum_i w_i \\log
   \\mathrm{softmax}(f(x_i))_{y_i},\\qquad
   \\mathrm{acc} = \\frac{\\sum_i w_i [\\arg\\max f(x_i) = y_i]}{\\sum_i w_i}

Every batch carries ``weights`` (``1`` for real rows): the evaluation split is padded
to whole batches with rows of weight ``0``, so every example is evaluated exactly once
and a last, partial batch neither is dropped nor changes the shapes (no recompiling).

**Sequence length.** ``data.seq_len`` is the padded width of the token sources
(ListOps: LRA's ``max_length``, kept expressions are shorter; Text: bytes kept per
review; Retrieval: bytes kept per document). For the pixel sources it is the number
of pixels and must match the images: 1024 (``image``), 784 (``smnist``/``psmnist``),
or ``S²`` for Pathfinder at ``S`` px (``pathfinder``/``pathx`` take the image size
from it: 1024 → 32 px, 16384 → 128 px, 256 → 16 px for quick runs).

**Pixels.** S5 (and S4 before it) feed pixels as one normalised float per step
through a linear encoder, ``(p / 255 - μ) / σ`` with ``μ = 122.6/255, σ =
61/255`` for gray CIFAR, ``μ = σ = 0.5`` for Pathfinder and ``μ = 0, σ = 1`` for
MNIST (their dataloaders, lindermanlab/S5 ``s5/dataloaders/{basic,lra}.py``); that
is the default here (``pixel_encoding="float"``). ``pixel_encoding="tokens"``
embeds the 256 gray levels instead, as LRA's Transformer baselines did.

**Options** (``data.options``; an unknown key is an error that lists the valid
ones):

* every source: ``eval_split`` (``"validation"``, default, or ``"test"``),
  ``train_examples`` / ``eval_examples`` (use only the first ``n`` records of a
  split: quick runs), ``cache_dir`` (generated data and file indexes; default
  ``$SEQJAX_CACHE`` or ``~/.cache/seqjax``);
* ``listops``: ``sizes`` (train, validation, test; default 96K/2K/2K),
  ``min_length`` (500), ``max_depth`` (10), ``max_args`` (10);
* ``pathfinder``/``pathx``: ``sizes`` (default 160K/20K/20K), ``difficulty``
  (``"hard"``), ``geometry`` (a dict of ``seqjax.data.pathfinder.PathfinderConfig``
  fields replacing the preset's, e.g. ``{"contour_length": 4}``), ``num_workers``
  (processes rendering a cache miss);
* ``text``/``image``/``smnist``/``psmnist``: ``validation_size`` (held out of TFDS
  train), ``download`` (let TFDS download and prepare the dataset);
* ``smnist``/``psmnist``: ``mnist_dir`` (a folder of MNIST idx files; else
  ``$SEQJAX_MNIST_DIR``; else TFDS ``mnist``), ``permutation_seed`` (psMNIST),
  ``splits``: ``"standard"`` (55K/5K of train, the 10K test set) or ``"t10k"`` (train
  and validation carved out of the 10,000 test images only — quick offline runs
  with just the ``t10k`` files; never for reported numbers);
* pixel sources: ``pixel_encoding`` (``"float"`` or ``"tokens"``);
* task ``retrieval``: ``data_dir`` (required: the ``lra_release/tsv_data``
  folder), ``text_format`` (``"raw"``, as LRA, or ``"decoded"``).

Data seeds: generators and held-out splits use ``data.seed``; shuffling uses
``data.seed`` too; the training order is then a pure function of the config, and
grain's iterator state (checkpointed by the trainer) resumes it exactly.

Example::

    seqjax train --config configs/listops.py:tiny --workdir runs/listops-tiny

References:
  Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers" (2021);
  Smith, Warrington & Linderman, "Simplified State Space Layers for Sequence
  Modeling" (2023); Le, Jaitly & Hinton, "A Simple Way to Initialize Recurrent
  Networks of Rectified Linear Units" (2015) for s/psMNIST.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqjax import config as config_lib
from seqjax.data import (
    corpus,
    listops,
    lra_image,
    lra_retrieval,
    lra_text,
    mnist,
    pathfinder,
    sources,
    tokenizer,
)
from seqjax.nn import models
from seqjax.tasks import registry

SOURCES = ("listops", "pathfinder", "pathx", "text", "image", "smnist", "psmnist")
PIXEL_ENCODINGS = ("float", "tokens")
EVAL_SPLITS = ("validation", "test")

_COMMON_OPTIONS = ("eval_split", "train_examples", "eval_examples", "cache_dir")
_TFDS_OPTIONS = ("validation_size", "download")
_OPTIONS = {
    "listops": ("sizes", "min_length", "max_depth", "max_args"),
    "pathfinder": ("sizes", "difficulty", "geometry", "num_workers", "pixel_encoding"),
    "pathx": ("sizes", "difficulty", "geometry", "num_workers", "pixel_encoding"),
    "text": _TFDS_OPTIONS,
    "image": (*_TFDS_OPTIONS, "pixel_encoding"),
    "smnist": (*_TFDS_OPTIONS, "mnist_dir", "splits", "pixel_encoding"),
    "psmnist": (
        *_TFDS_OPTIONS,
        "mnist_dir",
        "splits",
        "permutation_seed",
        "pixel_encoding",
    ),
    "retrieval": ("data_dir", "text_format"),
}
_BYTES = tokenizer.ByteTokenizer()


# --- what a source is ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What the model needs to know about a data source.

    Attributes:
      num_classes: label count.
      vocab_size: token vocabulary (``None`` for float pixel inputs).
      pixel_mean: ``μ`` of the float pixel encoding (pixels scaled to ``[0, 1]``).
      pixel_std: ``σ`` of the float pixel encoding.
    """

    num_classes: int
    vocab_size: int | None
    pixel_mean: float = 0.0
    pixel_std: float = 1.0

    @property
    def input_features(self) -> int | None:
        """``1`` for float pixel inputs, else ``None`` (tokens)."""
        return 1 if self.vocab_size is None else None


_PIXEL_NORMALISATION = {  # (μ, σ) of the S4/S5 dataloaders, pixels in [0, 1]
    "pathfinder": (0.5, 0.5),
    "pathx": (0.5, 0.5),
    "image": (122.6 / 255.0, 61.0 / 255.0),
    "smnist": (0.0, 1.0),
    "psmnist": (0.0, 1.0),
}
_NUM_CLASSES = {
    "listops": listops.NUM_CLASSES,
    "pathfinder": 2,
    "pathx": 2,
    "text": lra_text.NUM_CLASSES,
    "image": lra_image.NUM_CLASSES,
    "smnist": mnist.NUM_CLASSES,
    "psmnist": mnist.NUM_CLASSES,
}


def _options(config: config_lib.Config, source: str) -> dict[str, Any]:
    """``data.options``, checked against the keys ``source`` understands."""
    options = dict(config.data.options)
    valid = _COMMON_OPTIONS + _OPTIONS[source]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise config_lib.ConfigError(
            f"data.options: unknown key(s) {unknown} for source {source!r}; valid "
            f"keys: {', '.join(valid)}"
        )
    split = options.get("eval_split", "validation")
    if split not in EVAL_SPLITS:
        raise config_lib.ConfigError(
            f"data.options['eval_split'] must be one of {EVAL_SPLITS}, got {split!r}"
        )
    return options


def _classify_source(config: config_lib.Config) -> str:
    source = config.data.source
    if source not in SOURCES:
        raise config_lib.ConfigError(
            f"data.source must be one of {SOURCES} for task 'classify', got {source!r}"
        )
    return source


def source_spec(config: config_lib.Config) -> SourceSpec:
    """The classes and input encoding of ``config.data.source``.

    Raises:
      ConfigError: unknown source, options or ``pixel_encoding``.
    """
    source = _classify_source(config)
    options = _options(config, source)
    classes = _NUM_CLASSES[source]
    if source == "listops":
        return SourceSpec(classes, listops.VOCAB_SIZE)
    if source == "text":
        return SourceSpec(classes, _BYTES.vocab_size)
    encoding = options.get("pixel_encoding", "float")
    if encoding not in PIXEL_ENCODINGS:
        raise config_lib.ConfigError(
            f"data.options['pixel_encoding'] must be one of {PIXEL_ENCODINGS}, got "
            f"{encoding!r}"
        )
    if encoding == "tokens":
        return SourceSpec(classes, 256)
    mean, std = _PIXEL_NORMALISATION[source]
    return SourceSpec(classes, None, mean, std)


# --- records ------------------------------------------------------------------------


def _int_option(options: dict, key: str, default: int, minimum: int = 0) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise config_lib.ConfigError(
            f"data.options[{key!r}] must be an int >= {minimum}, got {value!r}"
        )
    return value


def _sizes(options: dict, default: tuple[int, int, int]) -> tuple[int, int, int]:
    sizes = options.get("sizes", default)
    if (
        not isinstance(sizes, list | tuple)
        or len(sizes) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes)
        or min(sizes) < 0
    ):
        raise config_lib.ConfigError(
            "data.options['sizes'] must be [train, validation, test] sizes "
            f"(non-negative ints), got {sizes!r}"
        )
    return tuple(sizes)


def _cache_dir(options: dict) -> str | None:
    return options.get("cache_dir")


def _arrays_dataset(split: dict[str, np.ndarray]) -> grain.MapDataset:
    keep = {k: split[k] for k in ("inputs", "targets")}
    if "lengths" in split:
        keep["lengths"] = split["lengths"]
    else:
        keep["lengths"] = np.full(len(split["targets"]), split["inputs"].shape[1])
    keep["lengths"] = np.asarray(keep["lengths"], np.int32)
    keep["targets"] = np.asarray(keep["targets"], np.int32)
    return grain.MapDataset.source(sources.ArraySource(keep))


def _listops_splits(config, options) -> dict[str, grain.MapDataset]:
    splits = listops.load_splits(
        seed=config.data.seed,
        sizes=_sizes(options, (96_000, 2_000, 2_000)),
        max_depth=_int_option(options, "max_depth", 10, 2),
        max_args=_int_option(options, "max_args", 10, 2),
        min_length=_int_option(options, "min_length", 500),
        max_length=config.data.seq_len,
        cache_dir=_cache_dir(options),
    )
    return {name: _arrays_dataset(data) for name, data in splits.items()}


def _image_size(config: config_lib.Config) -> int:
    side = math.isqrt(config.data.seq_len)
    if side * side != config.data.seq_len:
        raise config_lib.ConfigError(
            f"data.seq_len must be the pixel count S*S of an S-pixel Pathfinder image "
            f"(1024 for 32 px, 16384 for 128 px), got {config.data.seq_len}"
        )
    return side


def _pathfinder_splits(config, options) -> dict[str, grain.MapDataset]:
    difficulty = options.get("difficulty", "hard")
    if difficulty not in pathfinder.DIFFICULTIES:
        raise config_lib.ConfigError(
            f"data.options['difficulty'] must be one of "
            f"{sorted(pathfinder.DIFFICULTIES)}, got {difficulty!r}"
        )
    geometry = pathfinder.config_for(_image_size(config), difficulty)
    changes = options.get("geometry", {})
    if not isinstance(changes, dict):
        raise config_lib.ConfigError(
            f"data.options['geometry'] must be a dict of PathfinderConfig fields, got "
            f"{changes!r}"
        )
    try:
        geometry = dataclasses.replace(geometry, **changes)
    except (TypeError, ValueError) as error:
        raise config_lib.ConfigError(f"data.options['geometry']: {error}") from None
    splits = pathfinder.load_splits(
        seed=config.data.seed,
        config=geometry,
        sizes=_sizes(options, (160_000, 20_000, 20_000)),
        cache_dir=_cache_dir(options),
        num_workers=_int_option(options, "num_workers", 1, 1),
    )
    return {name: _arrays_dataset(data) for name, data in splits.items()}


def _check_length(config: config_lib.Config, source: str, expected: int) -> None:
    if config.data.seq_len != expected:
        raise config_lib.ConfigError(
            f"data.seq_len must be {expected} for source {source!r} (the pixel "
            f"count), got {config.data.seq_len}"
        )


def _tfds_kwargs(config, options) -> dict[str, Any]:
    kwargs = dict(
        seed=config.data.seed,
        data_dir=config.data.tfds_data_dir or None,
        download=bool(options.get("download", False)),
    )
    if "validation_size" in options:
        kwargs["validation_size"] = _int_option(options, "validation_size", 0)
    return kwargs


def _mnist_splits(config, options, source) -> dict[str, grain.MapDataset]:
    _check_length(config, source, mnist.SEQ_LEN)
    directory = options.get("mnist_dir") or os.environ.get(mnist.ENV_VAR) or None
    common = dict(
        permuted=source == "psmnist",
        permutation_seed=_int_option(options, "permutation_seed", 0),
        source="tfds" if directory is None else "idx",
        directory=directory,
        data_dir=config.data.tfds_data_dir or None,
        download=bool(options.get("download", False)),
    )
    mode = options.get("splits", "standard")
    if mode == "standard":
        extra = {"seed": config.data.seed}
        if "validation_size" in options:
            extra["validation_size"] = _int_option(options, "validation_size", 0)
        return {
            split: mnist.smnist(split, **common, **extra)
            for split in ("train", "validation", "test")
        }
    if mode != "t10k":
        raise config_lib.ConfigError(
            f"data.options['splits'] must be 'standard' or 't10k', got {mode!r}"
        )
    test = mnist.smnist("test", **common)
    held_out = _int_option(options, "validation_size", 2000, 1)
    train_idx, val_idx = corpus.holdout_indices(len(test), held_out, config.data.seed)
    return {
        "train": grain.MapDataset.source(corpus.IndexedSource(test, train_idx)),
        "validation": grain.MapDataset.source(corpus.IndexedSource(test, val_idx)),
    }


def _record_splits(config: config_lib.Config) -> dict[str, grain.MapDataset]:
    """Records (``inputs``, ``lengths``, ``targets``) of every split available."""
    source = _classify_source(config)
    options = _options(config, source)
    if source == "listops":
        return _listops_splits(config, options)
    if source in ("pathfinder", "pathx"):
        return _pathfinder_splits(config, options)
    if source in ("smnist", "psmnist"):
        return _mnist_splits(config, options, source)
    kwargs = _tfds_kwargs(config, options)
    if source == "text":
        return {
            split: lra_text.lra_text(split, max_length=config.data.seq_len, **kwargs)
            for split in ("train", "validation", "test")
        }
    _check_length(config, source, lra_image.SEQ_LEN)
    return {
        split: lra_image.lra_image(split, **kwargs)
        for split in ("train", "validation", "test")
    }


def _pixels_to_floats(record: dict, mean: float, std: float) -> dict:
    """``[T]`` gray levels to ``[T, 1]`` float32 ``(p / 255 - μ) / σ``."""
    out = dict(record)
    pixels = np.asarray(record["inputs"], np.float32) / np.float32(255.0)
    out["inputs"] = ((pixels - np.float32(mean)) / np.float32(std))[:, None]
    return out


def _as_int32(record: dict) -> dict:
    """Token ids as int32; an empty sequence gets length 1 (its padding token)."""
    out = dict(record)
    out["inputs"] = np.asarray(record["inputs"], np.int32)
    out["lengths"] = np.int32(max(int(record["lengths"]), 1))
    return out


# --- batching -----------------------------------------------------------------------


def _with_weight(record: dict, weight: float = 1.0) -> dict:
    out = dict(record)
    out["weights"] = np.float32(weight)
    return out


class PaddedSource:
    """A dataset padded to a multiple of ``multiple`` records with weight-0 rows.

    Record ``i < n`` is ``dataset[i]`` with ``weights = 1``; record ``i >= n`` repeats
    ``dataset[i mod n]`` with ``weights = 0`` (so it counts in no metric).

    Args:
      dataset: anything with ``len`` and ``[int]`` returning a dict of arrays.
      multiple: the padded length is the next multiple of this.

    Raises:
      ValueError: ``dataset`` is empty or ``multiple < 1``.
    """

    def __init__(self, dataset: Any, multiple: int):
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.dataset = dataset
        self.n = len(dataset)
        if self.n == 0:
            raise ValueError("the evaluation split is empty")
        self.length = -(-self.n // multiple) * multiple

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"record {index} out of range for {self.length}")
        weight = 1.0 if index < self.n else 0.0
        return _with_weight(self.dataset[index % self.n], weight)

    def __repr__(self) -> str:
        return f"PaddedSource({self.n} records padded to {self.length})"


def _local(global_batch: int, process_count: int, key: str) -> int:
    if global_batch % process_count:
        raise config_lib.ConfigError(
            f"{key} ({global_batch}) must be divisible by the number of processes "
            f"({process_count})"
        )
    return global_batch // process_count


def _limit(ds: grain.MapDataset, options: dict, key: str) -> grain.MapDataset:
    if key not in options:
        return ds
    n = _int_option(options, key, 0, 1)
    return ds[: min(n, len(ds))]


def batched(
    config: config_lib.Config,
    train_records: grain.MapDataset,
    eval_records: grain.MapDataset,
    process_index: int,
    process_count: int,
) -> tuple[grain.MapDataset, grain.MapDataset]:
    """Train and eval batches of this process from record datasets.

    Train: this process's records (every ``process_count``-th), shuffled with
    ``data.seed``, repeated forever, in batches of ``batch_size / process_count``
    (incomplete batches dropped). Eval: the split padded with weight-0 records to a
    multiple of the global eval batch, then this process's share of each global
    batch, in order, one epoch.

    Raises:
      ConfigError: a batch size that the process count does not divide, or a
        training split smaller than one batch.
    """
    d = config.data
    local = _local(d.batch_size, process_count, "data.batch_size")
    eval_global = d.eval_batch_size or d.batch_size
    eval_local = _local(eval_global, process_count, "data.eval_batch_size")
    mine = train_records[process_index::process_count]
    if len(mine) < local:
        raise config_lib.ConfigError(
            f"the training split has {len(train_records)} records, fewer than one "
            f"batch (data.batch_size={d.batch_size}) per process"
        )
    train = (
        mine.map(_with_weight)
        .shuffle(seed=d.seed)
        .repeat()
        .batch(local, drop_remainder=True)
    )
    padded = grain.MapDataset.source(PaddedSource(eval_records, eval_global))
    held_out = padded[process_index::process_count].batch(eval_local)
    return train, held_out


# --- the loss -----------------------------------------------------------------------


def classification_sums(
    logits: jax.Array, targets: jax.Array, weights: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted cross-entropy and accuracy of a batch.

    .. math:: \\mathcal{L} = \\frac{\\sum_i w_i\\,(-\\log \\mathrm{softmax}(
       \\ell_i)_{y_i})}{\\max(\\sum_i w_i, 1)}

    Args:
      logits: ``[batch, classes]``.
      targets: ``[batch]`` ints in ``[0, classes)``.
      weights: ``[batch]`` row weights (``0`` for padding rows).

    Returns:
      ``(loss, sums)`` with ``sums = {"nats", "correct", "count"}``: the weighted
      sums of the per-row cross-entropy, of ``argmax == target`` and of the
      weights.

    Example:
      >>> loss, sums = classification_sums(
      ...     jnp.array([[0.0, 0.0]]), jnp.array([1]), jnp.array([1.0]))
      >>> round(float(loss), 4), float(sums["count"])
      (0.6931, 1.0)
    """
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    nats = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    sums = {
        "nats": jnp.sum(nats * weights),
        "correct": jnp.sum(correct * weights),
        "count": jnp.sum(weights),
    }
    return sums["nats"] / jnp.maximum(sums["count"], 1.0), sums


def summarize_sums(sums: dict) -> dict[str, float]:
    """``eval/loss`` (mean nats per sequence) and ``eval/accuracy``."""
    count = max(float(sums["count"]), 1.0)
    return {
        "eval/loss": float(sums["nats"]) / count,
        "eval/accuracy": float(sums["correct"]) / count,
    }


def _encoder_options(config: config_lib.Config) -> dict[str, Any]:
    m = config.model
    return dict(
        pooling=m.pooling,
        bidirectional=m.bidirectional,
        **registry.backbone_options(m),
    )


# --- the tasks ----------------------------------------------------------------------


class Classification:
    """One sequence → one of ``num_classes`` labels (see the module docstring).

    Batches: ``inputs`` (``[B, T]`` int32 tokens, or ``[B, T, 1]`` float32 pixels),
    ``lengths`` ``[B]``, ``targets`` ``[B]``, ``weights`` ``[B]``.
    """

    name = "classify"

    def build_model(self, config, rngs):
        spec = source_spec(config)
        m = config.model
        return models.SequenceClassifier(
            spec.num_classes,
            m.features,
            m.depth,
            m.mixer,
            vocab_size=spec.vocab_size,
            input_features=spec.input_features,
            rngs=rngs,
            **_encoder_options(config),
        )

    def records(self, config) -> tuple[grain.MapDataset, grain.MapDataset]:
        """The train and eval records, encoded for the model (one record each)."""
        spec = source_spec(config)
        options = _options(config, config.data.source)
        splits = _record_splits(config)
        eval_split = options.get("eval_split", "validation")
        if eval_split not in splits:
            raise config_lib.ConfigError(
                f"data.options['eval_split']={eval_split!r} is not available with "
                f"these options (available: {sorted(splits)})"
            )
        encode = (
            _as_int32
            if spec.vocab_size is not None
            else functools.partial(
                _pixels_to_floats, mean=spec.pixel_mean, std=spec.pixel_std
            )
        )
        train = _limit(splits["train"], options, "train_examples").map(encode)
        held_out = _limit(splits[eval_split], options, "eval_examples").map(encode)
        return train, held_out

    def datasets(self, config, process_index, process_count):
        train, held_out = self.records(config)
        return batched(config, train, held_out, process_index, process_count)

    def loss(self, model, batch):
        logits = model(batch["inputs"], lengths=batch["lengths"])
        return classification_sums(logits, batch["targets"], batch["weights"])

    def summarize(self, sums):
        return summarize_sums(sums)

    def tokens(self, batch):
        real = np.asarray(batch["weights"]) > 0
        return int(np.asarray(batch["lengths"])[real].sum())


class Retrieval:
    """LRA Retrieval: do two documents cite each other? (2 classes, ``DualEncoder``).

    Batches: ``inputs1``, ``inputs2`` (``[B, T]`` byte tokens, ``T = data.seq_len``),
    ``lengths1``, ``lengths2``, ``targets``, ``weights`` (``[B]``). A document of
    zero bytes is given length 1 (its first, padding, token), since an encoder
    needs at least one position to pool.
    """

    name = "retrieval"

    def build_model(self, config, rngs):
        _retrieval_source(config)
        _options(config, "retrieval")
        m = config.model
        return models.DualEncoder(
            m.features,
            m.depth,
            m.mixer,
            num_classes=lra_retrieval.NUM_CLASSES,
            vocab_size=_BYTES.vocab_size,
            rngs=rngs,
            **_encoder_options(config),
        )

    def records(self, config) -> tuple[grain.MapDataset, grain.MapDataset]:
        """The train and eval records (one document pair each)."""
        _retrieval_source(config)
        options = _options(config, "retrieval")
        data_dir = options.get("data_dir")
        if not data_dir:
            raise config_lib.ConfigError(
                "task 'retrieval' needs data.options['data_dir']: the folder with "
                "new_aan_pairs.{train,eval,test}.tsv (lra_release/tsv_data)"
            )
        text_format = options.get("text_format", "raw")
        if text_format not in lra_retrieval.TEXT_FORMATS:
            raise config_lib.ConfigError(
                f"data.options['text_format'] must be one of "
                f"{lra_retrieval.TEXT_FORMATS}, got {text_format!r}"
            )
        cache = _cache_dir(options) or str(sources.default_cache_dir())

        def split(name: str) -> grain.MapDataset:
            return lra_retrieval.lra_retrieval(
                data_dir,
                name,
                max_length=config.data.seq_len,
                text_format=text_format,
                cache_dir=cache,
            ).map(_nonempty_documents)

        train = _limit(split("train"), options, "train_examples")
        eval_split = options.get("eval_split", "validation")
        held_out = _limit(split(eval_split), options, "eval_examples")
        return train, held_out

    def datasets(self, config, process_index, process_count):
        train, held_out = self.records(config)
        return batched(config, train, held_out, process_index, process_count)

    def loss(self, model, batch):
        logits = model(
            batch["inputs1"],
            batch["inputs2"],
            lengths1=batch["lengths1"],
            lengths2=batch["lengths2"],
        )
        return classification_sums(logits, batch["targets"], batch["weights"])

    def summarize(self, sums):
        return summarize_sums(sums)

    def tokens(self, batch):
        real = np.asarray(batch["weights"]) > 0
        lengths = np.asarray(batch["lengths1"]) + np.asarray(batch["lengths2"])
        return int(lengths[real].sum())


def _retrieval_source(config: config_lib.Config) -> None:
    if config.data.source != "aan":
        raise config_lib.ConfigError(
            "task 'retrieval' reads the AAN pairs of the LRA release: set "
            f"data.source='aan' (got {config.data.source!r}) and "
            "data.options['data_dir']"
        )


def _nonempty_documents(record: dict) -> dict:
    out = dict(record)
    for key in ("lengths1", "lengths2"):
        out[key] = np.int32(max(int(record[key]), 1))
    return out


registry.register_task(Classification())
registry.register_task(Retrieval())
