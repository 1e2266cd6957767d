"""LRA Image: CIFAR-10 in grayscale as sequences of 1024 pixels.

Each 32x32 RGB image is converted to grayscale as the Long Range Arena pipeline
did (``tf.image.rgb_to_grayscale`` on ``uint8`` images), then read row by row:

.. math:: g = \\mathrm{trunc}\\big(255.5\\,(0.2989\\,R + 0.5870\\,G + 0.1140\\,B)
   / 255\\big),\\qquad x_t = g[\\lfloor t/32 \\rfloor, t \\bmod 32]

(float32 arithmetic; TensorFlow scales ``uint8`` to ``[0, 1]`` by ``1/255``, takes
the ITU-R 601 luma weights, and converts back by multiplying by ``255.5`` and
truncating). Many PyTorch pipelines use torchvision's ``Grayscale`` instead
(PIL's ``convert("L")``: the same luma weights in fixed point, rounded); over all
2^24 colours the two differ by at most one grey level (for 26% of them, checked
against Pillow). The pixel values (0-255) are the tokens, as in LRA.

Splits are 45,000/5,000/10,000: ``"validation"`` is 5,000 training images held
out with a seed (:func:`seqjax.data.corpus.holdout_indices`), ``"test"`` is the
CIFAR-10 test set. (LRA took the last 10% of train, unshuffled.)

Records: ``{"inputs": int32[1024], "lengths": int32 (1024), "targets": int32}``
with 10 classes.

References:
  "Long Range Arena: A Benchmark for Efficient Transformers" (Tay et al., 2021);
  "Learning Multiple Layers of Features from Tiny Images" (Krizhevsky, 2009).
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from seqjax.data import corpus

SEQ_LEN = 1024
NUM_CLASSES = 10
VALIDATION_SIZE = 5000
_LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def lra_grayscale(images: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` to grayscale ``uint8`` as ``tf.image.rgb_to_grayscale``.

    .. math:: g = \\mathrm{trunc}(255.5 \\sum_c w_c\\, x_c / 255),
       \\quad w = (0.2989, 0.5870, 0.1140)

    Args:
      images: ``uint8 [..., 3]``.

    Returns:
      ``uint8 [...]`` (the channel axis removed).

    Raises:
      ValueError: the last axis is not 3.
      TypeError: ``images`` is not ``uint8``.

    Example:
      >>> lra_grayscale(np.array([[255, 255, 255], [10, 200, 30]], np.uint8))
      array([255, 124], dtype=uint8)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}.")
    if images.shape[-1:] != (3,):
        raise ValueError(f"images must be [..., 3] RGB, got shape {images.shape}.")
    unit = images.astype(np.float32) * np.float32(1.0 / 255.0)
    gray = unit @ _LUMA
    return (gray * np.float32(255.5)).astype(np.uint8)


def _record(example: dict[str, Any]) -> dict[str, np.ndarray]:
    gray = lra_grayscale(np.asarray(example["image"]))
    return {
        "inputs": gray.reshape(-1).astype(np.int32),
        "lengths": np.int32(gray.size),
        "targets": np.int32(example["label"]),
    }


def lra_image(
    split: str = "train",
    *,
    validation_size: int = VALIDATION_SIZE,
    seed: int = 0,
    data_dir: str | None = None,
    download: bool = False,
) -> grain.MapDataset:
    """LRA Image records of one split, from TFDS ``cifar10``.

    Args:
      split: ``"train"`` (45,000), ``"validation"`` (5,000) or ``"test"``
        (10,000).
      validation_size: training images held out for validation.
      seed: seed of the held-out split.
      data_dir: folder of the prepared TFDS dataset.
      download: let TFDS download and prepare ``cifar10``.

    Returns:
      a ``grain.MapDataset`` of ``{"inputs": int32[1024], "lengths": int32,
      "targets": int32}``.

    Raises:
      ValueError: unknown ``split`` or bad ``validation_size``.
      RuntimeError: the TFDS dataset cannot be opened.

    Example:
      >>> train = lra_image("train")  # doctest: +SKIP
      >>> len(train), train[0]["inputs"].shape  # doctest: +SKIP
      (45000, (1024,))
    """
    return corpus.tfds_examples(
        "cifar10",
        split,
        _record,
        validation_size=validation_size,
        seed=seed,
        data_dir=data_dir,
        download=download,
    )
