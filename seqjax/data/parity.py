"""N-parity and N-delayed-match-to-sample (N-DMS) streams, and their curricula.

A sequence is a stream of bits :math:`x_1, \\dots, x_M`; the labels are read once, at
the last step, one per trained ``N`` (one readout head per ``N``):

.. math:: \\text{N-parity: } y_N = \\Big(\\sum_{t=M-N+1}^{M} x_t\\Big) \\bmod 2,
   \\qquad \\text{N-DMS: } y_N = [x_{M-N+1} = x_M]

so parity includes the last bit, and DMS compares the bit ``N - 1`` steps before the
last one with the last one. Parity bits are ``Bernoulli(p)`` with ``p ~ U(0, 1)`` drawn
per sequence (deliberately unbalanced streams); DMS bits are ``Bernoulli(1/2)``.
The length is drawn once per batch, uniformly from
``{N_max + 2, ..., N_max + 1 + floor(length_factor * N_max)}`` with ``N_max`` the
largest trained ``N`` (``length_factor = 3``: up to ``4 N_max + 1``).

**Curricula.** Training starts at ``N = 2`` and advances when, on an evaluation after
an epoch, the mean accuracy over the trained heads *and* the accuracy of the
largest-``N`` head both exceed the threshold (98 %):

* ``"single"`` (single-head): one ``N`` at a time, ``[2] -> [3] -> [4] ...``;
* ``"multi"`` (multi-head, "cumulative" in the authors' code): all ``N`` so far are
  kept, ``[2] -> [2, 3] -> [2, 3, 4] ...`` (``add_heads`` new ``N`` per step);
* ``"sliding"``: a window of ``init_heads`` consecutive ``N`` moved by
  ``forget_heads``.

:class:`Curriculum` is a small pure object: ``state = c.init()``,
``state = c.update(state, accuracies)``, ``c.ns(state)``; the state is a NamedTuple of
ints, so it can live in a train state or a checkpoint.

Reference: Khajehabdollahi, Zeraati et al., "Emergent mechanisms for long timescales
depend on training curriculum and affect performance in memory tasks" (ICLR 2024);
task and curriculum details checked against the authors' code
(LevinaLab/rnn_timescale_public, ``src/tasks/tasks.py``, ``training/train.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

TASKS = ("parity", "dms")
KINDS = ("single", "multi", "sliding")


def _check_ns(ns: Sequence[int], task: str) -> tuple[int, ...]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    ns = tuple(ns)
    if not ns:
        raise ValueError("ns must contain at least one N, got an empty sequence")
    smallest = 1 if task == "parity" else 2
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise TypeError(f"ns must be ints, got {n!r}")
        if n < smallest:
            raise ValueError(f"every N must be >= {smallest} for {task}, got {ns}")
    return tuple(int(n) for n in ns)


def labels(bits: np.ndarray, ns: Sequence[int], task: str) -> np.ndarray:
    """The labels of the last step for every ``N`` in ``ns``.

    Args:
        bits: 0/1 array ``[batch, M]`` (or ``[batch, M, 1]``).
        ns: the ``N`` values, each ``<= M``.
        task: ``"parity"`` or ``"dms"``.

    Returns:
        int32 array ``[batch, len(ns)]``.

    Raises:
        ValueError: for an unknown task or an ``N`` larger than the sequence.

    Example:
        >>> labels(np.array([[1, 0, 1, 1]]), [2, 3], "parity").tolist()
        [[0, 0]]
    """
    ns = _check_ns(ns, task)
    x = np.asarray(bits)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"bits must be [batch, M] or [batch, M, 1], got {x.shape}")
    if max(ns) > x.shape[1]:
        raise ValueError(f"N={max(ns)} exceeds the sequence length {x.shape[1]}")
    x = x.astype(np.int32)
    if task == "parity":
        # suffix sums: s[:, j] = sum of the last j bits
        suffix = np.cumsum(x[:, ::-1], axis=1)
        cols = [suffix[:, n - 1] % 2 for n in ns]
    else:
        cols = [(x[:, -n] == x[:, -1]).astype(np.int32) for n in ns]
    return np.stack(cols, axis=1).astype(np.int32)


def make_batch(
    rng: np.random.Generator,
    ns: Sequence[int],
    batch_size: int,
    *,
    task: str = "parity",
    length: int | None = None,
    length_factor: float = 3.0,
) -> dict[str, np.ndarray]:
    """One batch of bit streams with a label per ``N``.

    Args:
        rng: numpy random generator (e.g. ``np.random.default_rng([seed, step])``).
        ns: the trained ``N`` values (the curriculum's current heads).
        batch_size: number of sequences ``B``.
        task: ``"parity"`` or ``"dms"``.
        length: fixed sequence length ``M >= max(ns)``; ``None`` draws it as in the
            paper's code (see the module docstring).
        length_factor: the length range is ``N_max + 2`` to
            ``N_max + 1 + floor(length_factor * N_max)``.

    Returns:
        ``{"inputs": float32[B, M, 1]`` (bits), ``"targets": int32[B, len(ns)]}``.

    Raises:
        ValueError: for an unknown task, bad ``ns`` or a too short ``length``.

    Example:
        >>> b = make_batch(np.random.default_rng(0), [2, 3], 4, task="dms", length=9)
        >>> b["inputs"].shape, b["targets"].shape
        ((4, 9, 1), (4, 2))
    """
    ns = _check_ns(ns, task)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_max = max(ns)
    if length is None:
        if length_factor <= 0:
            raise ValueError(f"length_factor must be > 0, got {length_factor}")
        low = n_max + 2
        high = low + max(1, int(np.floor(length_factor * n_max)))
        length = int(rng.integers(low, high))
    elif length < n_max:
        raise ValueError(f"length={length} is shorter than the largest N={n_max}")
    if task == "parity":
        p = rng.random((batch_size, 1))
    else:
        p = np.full((batch_size, 1), 0.5)
    bits = (rng.random((batch_size, length)) < p).astype(np.int32)
    return {
        "inputs": bits[..., None].astype(np.float32),
        "targets": labels(bits, ns, task),
    }


class CurriculumState(NamedTuple):
    """Curriculum progress: ``stage`` counts the advances made so far."""

    stage: int


@dataclasses.dataclass(frozen=True)
class Curriculum:
    """A schedule of trained ``N`` values that advances on accuracy.

    .. math:: \\text{advance} \\iff \\overline{\\mathrm{acc}} > \\theta \\wedge
       \\mathrm{acc}_{N_{\\max}} > \\theta

    Attributes:
        kind: ``"single"`` (single-head), ``"multi"`` (multi-head, cumulative) or
            ``"sliding"``.
        start: the first ``N`` (the paper: 2).
        init_heads: heads at stage 0 for ``"multi"``/``"sliding"`` (``"single"``
            always has one).
        add_heads: new ``N`` per advance for ``"multi"``.
        forget_heads: shift per advance for ``"sliding"`` (window of ``init_heads``,
            at least ``forget_heads``).
        threshold: accuracy threshold as a fraction (the paper: 0.98).
        max_n: largest ``N`` ever trained (the paper allocates 100 heads); the
            curriculum stops advancing once a step would exceed it.

    Example:
        >>> c = Curriculum("multi")
        >>> s = c.update(c.init(), [0.99])
        >>> c.ns(s)
        (2, 3)
    """

    kind: str = "multi"
    start: int = 2
    init_heads: int = 1
    add_heads: int = 1
    forget_heads: int = 1
    threshold: float = 0.98
    max_n: int | None = 100

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("start", "init_heads", "add_heads", "forget_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.max_n is not None and self.max_n < max(self.ns(self.init())):
            raise ValueError(
                f"max_n={self.max_n} is below the initial Ns {self.ns(self.init())}"
            )

    def init(self) -> CurriculumState:
        """The state at the start of training (stage 0)."""
        return CurriculumState(stage=0)

    def ns(self, state: CurriculumState) -> tuple[int, ...]:
        """The ``N`` values trained at ``state``, increasing."""
        stage = int(state.stage)
        if self.kind == "single":
            return (self.start + stage,)
        if self.kind == "multi":
            count = self.init_heads + stage * self.add_heads
            return tuple(range(self.start, self.start + count))
        width = max(self.init_heads, self.forget_heads)
        first = self.start + stage * self.forget_heads
        return tuple(range(first, first + width))

    def update(
        self, state: CurriculumState, accuracies: Sequence[float]
    ) -> CurriculumState:
        """Advances one stage if the accuracies pass the threshold.

        Args:
            state: current state.
            accuracies: accuracy of each trained head, as fractions in ``[0, 1]``,
                in the order of :meth:`ns` (the last one is the largest ``N``).

        Returns:
            The next state (the same state if not advancing, or at ``max_n``).

        Raises:
            ValueError: if the number of accuracies differs from the number of heads.
        """
        ns = self.ns(state)
        acc = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if acc.size != len(ns):
            raise ValueError(
                f"expected {len(ns)} accuracies for Ns {ns}, got {acc.size}"
            )
        if not (acc.mean() > self.threshold and acc[-1] > self.threshold):
            return state
        advanced = CurriculumState(stage=int(state.stage) + 1)
        if self.max_n is not None and max(self.ns(advanced)) > self.max_n:
            return state
        return advanced
