"""Continual-learning metrics over the accuracy matrix.

Notation: a stream of ``T`` tasks, indexed from 0. ``R`` is a ``[T, T]`` float array
with ``R[i, j]`` the test accuracy on task ``j`` after training through task ``i``;
``b`` is a ``[T]`` float array with ``b[j]`` the test accuracy on task ``j`` of the
randomly initialised model. Accuracies are fractions (``0.875``, not ``87.5``), but
every metric is linear in ``R`` and ``b``, so any common scale gives the metric in
that scale.

A run in progress has trained only the first ``k`` tasks: its rows ``k..T-1`` are
all NaN. Every function here then computes the metric of the leading ``k x k``
block, i.e. as if the stream had ``k`` tasks, and ``T`` in the formulas below is
that ``k``. Inside the block every entry must be finite, the upper triangle
included (evaluate every task after every task; forward transfer needs it).

Accuracies are per-task means: each task's accuracy counts once, however large its
test set, so the averages below are means over tasks, not accuracies pooled over
the examples of all tasks.

Example:
  >>> import numpy as np
  >>> R = np.array([[0.9, 0.1], [0.8, 0.95]])
  >>> round(average_accuracy(R), 3), round(backward_transfer(R), 3)
  (0.875, -0.1)

References:
  D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual Learning",
  NeurIPS 2017 (ACC, BWT, FWT).
  S.-A. Rebuffi, A. Kolesnikov, G. Sperl and C. H. Lampert, "iCaRL: Incremental
  Classifier and Representation Learning", CVPR 2017 (average incremental accuracy).
  A. Chaudhry, P. K. Dokania, T. Ajanthan and P. H. S. Torr, "Riemannian Walk for
  Incremental Learning: Understanding Forgetting and Intransigence", ECCV 2018
  (forgetting).
"""

from __future__ import annotations

import numpy as np


def _trained_block(R) -> np.ndarray:
    """The leading ``k x k`` block of ``R`` over its ``k`` trained rows (float64).

    Raises:
      ValueError: when ``R`` is not a non-empty square matrix, when no row is
        trained, when a trained row follows an all-NaN one, or when the block holds
        a non-finite entry.
    """
    try:
        r = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"R must be a [T, T] array of accuracies, got {type(R).__name__} that "
            f"does not convert to a float array ({e})."
        ) from e
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise ValueError(f"R must be a square [T, T] matrix, got shape {r.shape}.")
    if r.shape[0] == 0:
        raise ValueError(f"R must hold at least one task, got shape {r.shape}.")
    untrained = np.all(np.isnan(r), axis=1)
    k = int(np.argmax(untrained)) if untrained.any() else r.shape[0]
    if k == 0:
        raise ValueError(
            f"R has no trained task: its row 0 is all NaN (shape {r.shape})."
        )
    if not untrained[k:].all():
        later = k + int(np.argmin(untrained[k:]))
        raise ValueError(
            f"R row {later} holds accuracies but row {k} before it is all NaN; the "
            "rows of tasks not yet trained must all come last."
        )
    block = r[:k, :k]
    bad = np.argwhere(~np.isfinite(block))
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise ValueError(
            f"R[{i}, {j}] is {block[i, j]}, inside the leading {k}x{k} block of "
            f"trained tasks (shape {r.shape}); every entry there must be finite."
        )
    return block


def _baseline(b, num_rows: int, k: int) -> np.ndarray:
    """The first ``k`` entries of ``b`` (float64), checked against ``R``'s rows."""
    try:
        v = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"b must be a [T] array of accuracies, got {type(b).__name__} that does "
            f"not convert to a float array ({e})."
        ) from e
    if v.shape != (num_rows,):
        raise ValueError(
            f"b must have shape ({num_rows},), one accuracy per task of R, got "
            f"shape {v.shape}."
        )
    head = v[:k]
    bad = np.flatnonzero(~np.isfinite(head))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"b[{j}] is {head[j]}, but the random-init accuracy of each of the {k} "
            "trained tasks must be finite."
        )
    return head


def average_accuracy(R) -> float:
    """Average accuracy: the mean over tasks of the last row of ``R``.

    .. math:: \\mathrm{ACC} = \\frac{1}{T} \\sum_{j=0}^{T-1} R_{T-1,j}

    Each task counts once (a per-task mean, not accuracy pooled over the examples
    of all tasks).

    Args:
      R: ``[T, T]`` accuracy matrix; trailing all-NaN rows (tasks not yet trained)
        restrict the metric to the leading trained block.

    Returns:
      ACC as a Python float, in the scale of ``R``.

    Raises:
      ValueError: when ``R`` is not square, is empty, or has a non-finite entry in
        its trained block.

    Example:
      >>> average_accuracy([[0.9, 0.1], [0.8, 0.95]])
      0.875

    References:
      Lopez-Paz and Ranzato, "Gradient Episodic Memory for Continual Learning",
      NeurIPS 2017, Eq. (2).
    """
    r = _trained_block(R)
    return float(np.mean(r[-1]))


def average_incremental_accuracy(R) -> float:
    """Average incremental accuracy: the mean over the stream of the accuracy on
    the tasks seen so far.

    .. math:: \\bar{A} = \\frac{1}{T} \\sum_{i=0}^{T-1} A_i, \\qquad
              A_i = \\frac{1}{i+1} \\sum_{j=0}^{i} R_{i,j}

    ``A_i`` is the per-task mean over tasks ``0..i`` (iCaRL measures the accuracy
    pooled over all classes seen so far; with equal-sized tasks the two agree).

    Args:
      R: ``[T, T]`` accuracy matrix; trailing all-NaN rows (tasks not yet trained)
        restrict the metric to the leading trained block.

    Returns:
      The average incremental accuracy as a Python float, in the scale of ``R``.

    Raises:
      ValueError: when ``R`` is not square, is empty, or has a non-finite entry in
        its trained block.

    Example:
      >>> average_incremental_accuracy([[0.9, 0.1], [0.8, 1.0]])
      0.9

    References:
      Rebuffi, Kolesnikov, Sperl and Lampert, "iCaRL: Incremental Classifier and
      Representation Learning", CVPR 2017, Sec. 4.
    """
    r = _trained_block(R)
    t = r.shape[0]
    seen = np.tril(np.ones((t, t), dtype=bool))
    per_step = np.sum(np.where(seen, r, 0.0), axis=1) / np.arange(1, t + 1)
    return float(np.mean(per_step))


def backward_transfer(R) -> float:
    """Backward transfer: how training on later tasks changed the accuracy on
    earlier ones (negative: forgetting).

    .. math:: \\mathrm{BWT} = \\frac{1}{T-1} \\sum_{j=0}^{T-2}
              \\left(R_{T-1,j} - R_{j,j}\\right)

    With a single task (``T = 1``) there is no earlier task and BWT is ``0.0``.

    Args:
      R: ``[T, T]`` accuracy matrix; trailing all-NaN rows (tasks not yet trained)
        restrict the metric to the leading trained block.

    Returns:
      BWT as a Python float, in the scale of ``R``.

    Raises:
      ValueError: when ``R`` is not square, is empty, or has a non-finite entry in
        its trained block.

    Example:
      >>> round(backward_transfer([[0.9, 0.1], [0.8, 0.95]]), 3)
      -0.1

    References:
      Lopez-Paz and Ranzato, "Gradient Episodic Memory for Continual Learning",
      NeurIPS 2017, Eq. (3).
    """
    r = _trained_block(R)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean(r[-1, :-1] - np.diag(r)[:-1]))


def forward_transfer(R, b) -> float:
    """Forward transfer: how training on earlier tasks changed the accuracy on a
    task before it is trained, relative to the randomly initialised model.

    .. math:: \\mathrm{FWT} = \\frac{1}{T-1} \\sum_{j=1}^{T-1}
              \\left(R_{j-1,j} - b_j\\right)

    With a single task (``T = 1``) there is no later task and FWT is ``0.0``.

    Args:
      R: ``[T, T]`` accuracy matrix; trailing all-NaN rows (tasks not yet trained)
        restrict the metric to the leading trained block.
      b: ``[T]`` accuracy of the randomly initialised model on each task (same
        ``T`` as ``R``; only the entries of trained tasks are read).

    Returns:
      FWT as a Python float, in the scale of ``R``.

    Raises:
      ValueError: when ``R`` is not square, is empty, or has a non-finite entry in
        its trained block; when ``b`` is not ``[T]`` or has a non-finite entry for
        a trained task.

    Example:
      >>> round(forward_transfer([[0.9, 0.3], [0.8, 0.95]], [0.1, 0.1]), 3)
      0.2

    References:
      Lopez-Paz and Ranzato, "Gradient Episodic Memory for Continual Learning",
      NeurIPS 2017, Eq. (4).
    """
    r = _trained_block(R)
    t = r.shape[0]
    base = _baseline(b, np.shape(R)[0], t)
    if t == 1:
        return 0.0
    return float(np.mean(np.diag(r, k=1) - base[1:]))


def forgetting(R) -> float:
    """Average forgetting: how far each earlier task's final accuracy fell below
    the best accuracy it had before the last task was trained.

    .. math:: F = \\frac{1}{T-1} \\sum_{j=0}^{T-2}
              \\left(\\max_{0 \\le l \\le T-2} R_{l,j} - R_{T-1,j}\\right)

    The maximum runs over the rows before the last one, as in Chaudhry et al., so
    a task whose accuracy rose while training the last task counts negatively and
    ``F`` can be negative. Mammoth's ``forgetting`` takes the maximum over every
    row, the last included, which clips each term (and so ``F``) at 0; we do not.
    With a single task (``T = 1``) nothing can be forgotten and ``F`` is ``0.0``.

    Args:
      R: ``[T, T]`` accuracy matrix; trailing all-NaN rows (tasks not yet trained)
        restrict the metric to the leading trained block.

    Returns:
      F as a Python float, in the scale of ``R``.

    Raises:
      ValueError: when ``R`` is not square, is empty, or has a non-finite entry in
        its trained block.

    Example:
      >>> round(forgetting([[0.6, 0.1], [0.7, 0.9]]), 3)
      -0.1

    References:
      Chaudhry, Dokania, Ajanthan and Torr, "Riemannian Walk for Incremental
      Learning: Understanding Forgetting and Intransigence", ECCV 2018, Eq. (5)-(6).
    """
    r = _trained_block(R)
    t = r.shape[0]
    if t == 1:
        return 0.0
    best = np.max(r[:-1, :-1], axis=0)
    return float(np.mean(best - r[-1, :-1]))


def summary(R, b=None) -> dict[str, float]:
    """Every metric of this module for one accuracy matrix.

    Args:
      R: ``[T, T]`` accuracy matrix; trailing all-NaN rows (tasks not yet trained)
        restrict the metrics to the leading trained block.
      b: optional ``[T]`` accuracy of the randomly initialised model on each task;
        without it there is no forward transfer.

    Returns:
      ``{"acc", "avg_incremental_acc", "bwt", "fwt", "forgetting"}`` as Python
      floats, in this order, ``"fwt"`` only when ``b`` is given; see
      ``average_accuracy``, ``average_incremental_accuracy``,
      ``backward_transfer``, ``forward_transfer`` and ``forgetting``.

    Raises:
      ValueError: as the functions above, for ``R`` and ``b``.

    Example:
      >>> sorted(summary([[0.9]]))
      ['acc', 'avg_incremental_acc', 'bwt', 'forgetting']
    """
    out = {
        "acc": average_accuracy(R),
        "avg_incremental_acc": average_incremental_accuracy(R),
        "bwt": backward_transfer(R),
    }
    if b is not None:
        out["fwt"] = forward_transfer(R, b)
    out["forgetting"] = forgetting(R)
    return out
