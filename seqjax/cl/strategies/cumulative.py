"""Cumulative training: task ``k`` trains on the union of tasks ``0..k``.

:math:`\\min_\\theta \\sum_{t \\le k} \\mathcal{L}_t(\\theta)` at task ``k``: an
unbounded replay memory that keeps every example seen so far, the usual "cumulative"
reference of continual-learning benchmarks (e.g. Lomonaco et al. 2021, "Avalanche:
an End-to-End Library for Continual Learning"). Unlike joint training it never sees
a future task early, so it measures the cost of the task order alone.
"""

from __future__ import annotations

from seqjax.cl import strategy as strategy_lib


def make(spec: strategy_lib.StreamSpec) -> strategy_lib.Strategy:
    """Cumulative training: ``data="cumulative"``, no extension.

    Args:
      spec: the stream (unused).

    Returns:
      ``Strategy("cumulative", data="cumulative")``.

    Example:
      >>> make(spec).data
      'cumulative'
    """
    del spec
    return strategy_lib.Strategy("cumulative", data="cumulative")
