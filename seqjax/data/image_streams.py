"""Image transforms for continual-learning task streams (numpy in, numpy out).

The tasks of permuted, rotated and split image streams are one image set seen
through a per-task transform or class subset; these are those transforms:

- :func:`permute_pixels`: reorder the pixels by a fixed permutation (permuted
  MNIST), :math:`x'_t = x_{\\pi(t)}` over the flattened pixel positions;
- :func:`rotate`: rotate about the image centre with bilinear interpolation
  (rotated MNIST), angles from :func:`rotation_angles`;
- :func:`class_subset_indices`: the examples of a few classes (split MNIST/CIFAR);
- :func:`to_sequence`: an image as a float sequence ``[T, F]``, row by row or
  pixel by pixel.

Images are ``[H, W]`` (gray) or ``[H, W, C]`` (channels last), ``uint8`` as TFDS
and the MNIST idx files give them.

References:
  Goodfellow et al., "An Empirical Investigation of Catastrophic Forgetting in
  Gradient-Based Neural Networks" (2013) and Kirkpatrick et al., "Overcoming
  catastrophic forgetting in neural networks" (2017) for permuted MNIST;
  Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning" (2017)
  for rotated MNIST; Zenke, Poole & Ganguli, "Continual Learning Through
  Synaptic Intelligence" (2017) for split MNIST; van de Ven & Tolias, "Three
  scenarios for continual learning" (2019) for the task/domain/class settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ORDERS = ("rows", "pixels")
_SNAP = 1e-9  # source coordinates this close to a grid point are taken as on it


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(
            f"{name} must be a non-empty [H, W] or [H, W, C] array, got shape "
            f"{image.shape}."
        )
    if not (
        np.issubdtype(image.dtype, np.integer)
        or np.issubdtype(image.dtype, np.floating)
    ):
        raise ValueError(f"{name} must have a real numeric dtype, got {image.dtype}.")
    return image


def permute_pixels(image: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Reorders the pixels of an image by a permutation of its positions.

    With :math:`p = \\mathrm{flat}(\\mathrm{image})` the ``H * W`` pixels in scan
    (row-major) order, each a vector of the ``C`` channels:

    .. math:: \\mathrm{flat}(\\mathrm{out})_t = p_{\\pi(t)},
       \\qquad t = 0, \\dots, HW - 1

    (the convention of :func:`seqjax.data.mnist.to_sequences`), so
    ``permute_pixels(permute_pixels(x, pi), np.argsort(pi))`` is ``x``.

    Args:
      image: ``[H, W]`` or ``[H, W, C]``.
      permutation: integer ``[H * W]``, a permutation of ``range(H * W)``.

    Returns:
      the permuted image, the shape and dtype of ``image``.

    Raises:
      ValueError: a bad ``image`` shape, or ``permutation`` of the wrong shape or
        dtype or not a permutation.

    Example:
      >>> permute_pixels(np.array([[1, 2], [3, 4]], np.uint8), [3, 2, 1, 0])
      array([[4, 3],
             [2, 1]], dtype=uint8)
    """
    image = _check_image(image)
    size = image.shape[0] * image.shape[1]
    permutation = np.asarray(permutation)
    if permutation.shape != (size,) or not np.issubdtype(permutation.dtype, np.integer):
        raise ValueError(
            f"permutation must be an integer array of shape ({size},) for an image "
            f"of shape {image.shape}, got {permutation.dtype} {permutation.shape}."
        )
    if (
        permutation.min() < 0
        or permutation.max() >= size
        or not np.all(np.bincount(permutation, minlength=size) == 1)
    ):
        raise ValueError(
            f"permutation must be a permutation of range({size}) (every position "
            "exactly once)."
        )
    flat = image.reshape(size, -1)
    return flat[permutation].reshape(image.shape)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotates an image about its centre, counter-clockwise as displayed.

    Inverse mapping with bilinear interpolation: output pixel ``(r, c)`` reads the
    input at

    .. math:: r' = r_0 + \\sin\\theta\\,(c - c_0) + \\cos\\theta\\,(r - r_0),
       \\quad c' = c_0 + \\cos\\theta\\,(c - c_0) - \\sin\\theta\\,(r - r_0)

    with :math:`(r_0, c_0) = ((H - 1)/2, (W - 1)/2)` (rows grow downwards), and
    interpolates the four pixels around :math:`(r', c')`, pixels outside the image
    counting as 0 (so positions more than one pixel outside read 0). The output
    keeps the input's shape (corners are cut off), like
    ``scipy.ndimage.rotate(image, degrees, reshape=False, order=1,
    mode="grid-constant")``; a rotation by a multiple of 90° of a square image is
    exactly ``np.rot90``. Integer images are rounded to the nearest value and
    clipped to their dtype's range.

    Args:
      image: ``[H, W]`` or ``[H, W, C]`` (channels are rotated alike).
      degrees: the angle :math:`\\theta` in degrees; positive turns the content
        counter-clockwise (as ``np.rot90``).

    Returns:
      the rotated image, the shape and dtype of ``image``.

    Raises:
      ValueError: a bad ``image`` shape or dtype, or a non-finite ``degrees``.

    Example:
      >>> rotate(np.array([[1, 2], [3, 4]], np.uint8), 90)
      array([[2, 4],
             [1, 3]], dtype=uint8)
    """
    image = _check_image(image)
    if isinstance(degrees, bool) or not np.isfinite(degrees):
        raise ValueError(f"degrees must be a finite number, got {degrees!r}.")
    height, width = image.shape[:2]
    theta = np.deg2rad(float(degrees))
    cos, sin = np.cos(theta), np.sin(theta)
    dr = np.arange(height, dtype=np.float64)[:, None] - (height - 1) / 2.0
    dc = np.arange(width, dtype=np.float64)[None, :] - (width - 1) / 2.0
    rows = (height - 1) / 2.0 + sin * dc + cos * dr
    cols = (width - 1) / 2.0 + cos * dc - sin * dr
    rows = np.where(np.abs(rows - np.rint(rows)) < _SNAP, np.rint(rows), rows)
    cols = np.where(np.abs(cols - np.rint(cols)) < _SNAP, np.rint(cols), cols)
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = rows - r0, cols - c0
    values = image.reshape(height, width, -1).astype(np.float64)
    out = np.zeros(values.shape, np.float64)
    for dy, wy in ((0, 1.0 - fr), (1, fr)):
        for dx, wx in ((0, 1.0 - fc), (1, fc)):
            r, c = r0.astype(np.int64) + dy, c0.astype(np.int64) + dx
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            picked = values[np.clip(r, 0, height - 1), np.clip(c, 0, width - 1)]
            out += (wy * wx * inside)[..., None] * picked
    out = out.reshape(image.shape)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def to_sequence(image: np.ndarray, order: str = "rows") -> np.ndarray:
    """A ``uint8`` image as a float32 sequence in ``[0, 1]``.

    .. math:: \\text{rows: } x_t = \\mathrm{image}[t, :, :] / 255 \\in
       \\mathbb{R}^{WC},\\; T = H; \\qquad \\text{pixels: } x_t =
       \\mathrm{image}[\\lfloor t / W \\rfloor, t \\bmod W, :] / 255 \\in
       \\mathbb{R}^{C},\\; T = HW

    (a gray ``[H, W]`` image has ``C = 1``; in ``"rows"`` a row's pixels are
    pixel-major, channel-minor: ``R, G, B, R, G, B, ...``).

    Args:
      image: ``uint8 [H, W]`` or ``uint8 [H, W, C]``.
      order: ``"rows"`` (``T = H`` steps of ``F = W * C``) or ``"pixels"``
        (``T = H * W`` steps of ``F = C``).

    Returns:
      ``float32 [T, F]``.

    Raises:
      ValueError: a bad ``image`` shape or dtype (not ``uint8``), or an unknown
        ``order``.

    Example:
      >>> to_sequence(np.full((28, 28), 255, np.uint8), "pixels").shape
      (784, 1)
    """
    image = _check_image(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got {image.dtype}.")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}.")
    height, width = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    shape = (height, width * channels) if order == "rows" else (height * width, -1)
    return image.reshape(shape).astype(np.float32) / np.float32(255.0)


def class_subset_indices(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """The positions of the examples whose label is one of ``classes``.

    .. math:: \\{\\, i : y_i \\in \\mathcal{C} \\,\\}, \\text{ increasing}

    Args:
      labels: integer ``[n]``.
      classes: the class ids :math:`\\mathcal{C}` (distinct ints, at least one).

    Returns:
      ``int64 [m]``, increasing (file order kept).

    Raises:
      ValueError: ``labels`` not a 1-D integer array, or ``classes`` empty, not
        ints or repeated.

    Example:
      >>> class_subset_indices(np.array([3, 1, 2, 1, 0]), [1, 0]).tolist()
      [1, 3, 4]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (
        labels.size == 0 or np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(
            f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}."
        )
    classes = tuple(classes)
    if not classes or any(
        isinstance(c, bool) or not isinstance(c, int | np.integer) for c in classes
    ):
        raise ValueError(f"classes must be one or more ints, got {classes!r}.")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes!r}.")
    keep = np.isin(labels, np.asarray(classes, np.int64))
    return np.flatnonzero(keep).astype(np.int64)


def rotation_angles(num_tasks: int) -> np.ndarray:
    """Evenly spaced rotation angles in ``[0, 180)`` degrees, one per task.

    .. math:: \\theta_k = 180\\, k / K, \\qquad k = 0, \\dots, K - 1

    Task 0 is unrotated.

    Args:
      num_tasks: :math:`K \\ge 1`.

    Returns:
      ``float64 [K]``.

    Raises:
      ValueError: ``num_tasks`` is not an int ``>= 1``.

    Example:
      >>> rotation_angles(4).tolist()
      [0.0, 45.0, 90.0, 135.0]
    """
    if (
        isinstance(num_tasks, bool)
        or not isinstance(num_tasks, int | np.integer)
        or num_tasks < 1
    ):
        raise ValueError(f"num_tasks must be an int >= 1, got {num_tasks!r}.")
    return 180.0 * np.arange(int(num_tasks), dtype=np.float64) / int(num_tasks)
