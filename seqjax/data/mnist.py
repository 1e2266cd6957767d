"""Sequential MNIST (sMNIST) and permuted sequential MNIST (psMNIST).

Each 28x28 image becomes a sequence of its 784 pixels, read row by row (the scan
order), and is classified after the last pixel:

.. math:: x_t = \\mathrm{image}[\\lfloor t / 28 \\rfloor, t \\bmod 28],\\quad
   t = 0, \\dots, 783;\\qquad \\text{psMNIST: } x'_t = x_{\\pi(t)}

with one fixed permutation :math:`\\pi` drawn from a seed
(:func:`pixel_permutation`) and shared by every split and every image.

Records are ``{"inputs": int32[784]`` (pixel values 0-255),
``"lengths": int32`` (784), ``"targets": int32`` (the digit)``}``.

Two sources of images:

- TFDS ``mnist`` through ``tfds.data_source`` (``source="tfds"``, for users);
  ``"train"``/``"validation"`` are a seeded 55,000/5,000 split of the 60,000
  training images (:func:`seqjax.data.corpus.holdout_indices`), ``"test"`` the
  10,000 test images.
- The original idx files in a folder (``source="idx"``): ``train-images-idx3-ubyte``
  and ``train-labels-idx1-ubyte`` (``t10k-...`` for the test split), gzipped
  (``.gz``) or not, also accepted with a ``.`` before ``idx``. The folder is the
  ``directory`` argument or the ``SEQJAX_MNIST_DIR`` environment variable.

References:
  "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units"
  (Le, Jaitly and Hinton, 2015) introduced pixel-by-pixel and permuted MNIST;
  "Gradient-based learning applied to document recognition" (LeCun et al.,
  1998) for MNIST and its idx format.
"""

from __future__ import annotations

import functools
import gzip
import os
from typing import Any

import grain
import numpy as np

from seqjax.data import corpus

SEQ_LEN = 784
NUM_CLASSES = 10
ENV_VAR = "SEQJAX_MNIST_DIR"
VALIDATION_SIZE = 5000

# idx element-type codes (third byte of the magic number) -> big-endian dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_FILE_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one idx file (gzipped if its name ends in ``.gz``).

    The format: two zero bytes, a type code, the number of dimensions ``n``,
    ``n`` big-endian ``uint32`` sizes, then the data in C order.

    Args:
      path: the file.

    Returns:
      the array, in native byte order (``uint8`` for MNIST).

    Raises:
      ValueError: the file is not a well-formed idx file.
      FileNotFoundError: ``path`` does not exist.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (magic {data[:4]!r}).")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], ">u4"))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: shape {shape} needs {expected} bytes, the file has {len(data)}."
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def mnist_dir(directory: str | os.PathLike | None = None) -> str:
    """The idx folder: ``directory``, else ``$SEQJAX_MNIST_DIR``.

    Raises:
      ValueError: neither is set.
    """
    if directory is not None:
        return os.fspath(directory)
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    raise ValueError(
        f"directory is None and ${ENV_VAR} is unset; pass the folder holding the "
        "MNIST idx files, or use source='tfds'."
    )


def _find(directory: str, stem: str) -> str:
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for suffix in (".gz", ""):
            path = os.path.join(directory, name + suffix)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(
        f"no {stem}[.gz] in {directory!r} (also tried {names[1]}[.gz])."
    )


def load_idx(
    split: str = "test", directory: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads MNIST images and labels of one original split from idx files.

    Args:
      split: ``"train"`` (60,000 images) or ``"test"`` (the 10,000 ``t10k``).
      directory: the folder; ``None`` uses ``$SEQJAX_MNIST_DIR``.

    Returns:
      ``(images uint8 [n, 28, 28], labels uint8 [n])``.

    Raises:
      ValueError: unknown ``split``, no folder given, malformed files, or image
        and label counts that differ.
      FileNotFoundError: a file is missing.
    """
    if split not in _FILE_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    folder = mnist_dir(directory)
    prefix = _FILE_PREFIX[split]
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"images {images.shape} and labels {labels.shape} in {folder!r} do not "
            "match: expected [n, 28, 28] and [n]."
        )
    return images, labels


def pixel_permutation(seed: int, length: int = SEQ_LEN) -> np.ndarray:
    """The psMNIST permutation: ``np.random.default_rng(seed).permutation(length)``.

    Args:
      seed: the permutation's seed.
      length: sequence length (784 for MNIST).

    Returns:
      ``int64 [length]``, a permutation of ``range(length)``.
    """
    return np.random.default_rng(seed).permutation(length)


def to_sequences(
    images: np.ndarray, permutation: np.ndarray | None = None
) -> np.ndarray:
    """Flattens images in scan order, then applies ``permutation`` if given.

    .. math:: \\mathrm{out}[n, t] = \\mathrm{flat}(\\mathrm{images}[n])[\\pi(t)]

    Args:
      images: ``[n, H, W]`` or ``[n, H, W, 1]``.
      permutation: ``[H * W]`` permutation, or ``None`` for scan order.

    Returns:
      ``[n, H * W]`` with the dtype of ``images``.

    Raises:
      ValueError: bad image or permutation shape, or ``permutation`` is not a
        permutation.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(
            f"images must be [n, H, W] or [n, H, W, 1], got shape {images.shape}."
        )
    flat = images.reshape(len(images), -1)
    if permutation is None:
        return flat
    permutation = np.asarray(permutation)
    if permutation.shape != (flat.shape[1],) or not np.array_equal(
        np.sort(permutation), np.arange(flat.shape[1])
    ):
        raise ValueError(
            f"permutation must be a permutation of range({flat.shape[1]}), got "
            f"shape {permutation.shape}."
        )
    return flat[:, permutation]


def _record(
    example: dict[str, Any], permutation: np.ndarray | None
) -> dict[str, np.ndarray]:
    seq = to_sequences(np.asarray(example["image"])[None], permutation)[0]
    return {
        "inputs": seq.astype(np.int32),
        "lengths": np.int32(seq.shape[0]),
        "targets": np.int32(example["label"]),
    }


class _IdxExamples:
    """Images and labels as ``[i] -> {"image", "label"}`` (a grain data source)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        self.images, self.labels, self.indices = images, labels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = int(self.indices[index])
        return {"image": self.images[i], "label": self.labels[i]}

    def __repr__(self) -> str:
        return f"_IdxExamples({len(self)} of {len(self.images)} images)"


def smnist(
    split: str = "train",
    *,
    permuted: bool = False,
    permutation_seed: int = 0,
    source: str = "tfds",
    directory: str | os.PathLike | None = None,
    data_dir: str | None = None,
    validation_size: int = VALIDATION_SIZE,
    seed: int = 0,
    download: bool = False,
) -> grain.MapDataset:
    """sMNIST / psMNIST records of one split.

    Args:
      split: ``"train"``, ``"validation"`` (``validation_size`` images held out
        of the training images with ``seed``) or ``"test"``.
      permuted: psMNIST; the pixels are reordered by
        ``pixel_permutation(permutation_seed)``.
      permutation_seed: seed of the psMNIST permutation.
      source: ``"tfds"`` (``tfds.data_source("mnist")``) or ``"idx"`` (files in
        ``directory`` / ``$SEQJAX_MNIST_DIR``).
      directory: the idx folder (``source="idx"``).
      data_dir: the TFDS data folder (``source="tfds"``).
      validation_size: images held out of the 60,000 training images.
      seed: seed of the held-out split.
      download: let TFDS download and prepare ``mnist``.

    Returns:
      a ``grain.MapDataset`` of ``{"inputs": int32[784], "lengths": int32,
      "targets": int32}``.

    Raises:
      ValueError: unknown ``split``/``source``, or bad sizes.
      FileNotFoundError: an idx file is missing.
      RuntimeError: the TFDS dataset cannot be opened.

    Example:
      >>> test = smnist("test", source="idx", directory="../shared/data/mnist")
      ... # doctest: +SKIP
      >>> test[0]["inputs"].shape, int(test[0]["targets"])  # doctest: +SKIP
      ((784,), 7)
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(
            f"split must be 'train', 'validation' or 'test', got {split!r}."
        )
    permutation = pixel_permutation(permutation_seed) if permuted else None
    transform = functools.partial(_record, permutation=permutation)
    if source == "tfds":
        return corpus.tfds_examples(
            "mnist",
            split,
            transform,
            validation_size=validation_size,
            seed=seed,
            data_dir=data_dir,
            download=download,
        )
    if source != "idx":
        raise ValueError(f"source must be 'tfds' or 'idx', got {source!r}.")
    if split == "validation" and validation_size == 0:
        raise ValueError("split='validation' needs validation_size > 0, got 0.")
    images, labels = load_idx("test" if split == "test" else "train", directory)
    if split == "test":
        indices = np.arange(len(images))
    else:
        train, validation = corpus.holdout_indices(len(images), validation_size, seed)
        indices = train if split == "train" else validation
    examples = _IdxExamples(images, labels, indices)
    return grain.MapDataset.source(examples).map(transform)
