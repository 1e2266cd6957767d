"""Joint training: the upper bound of a continual-learning stream.

Every task of the stream trains on the union of all tasks' training data, from the
first task on, :math:`\\min_\\theta \\sum_{t=1}^{T} \\mathcal{L}_t(\\theta)`, so
nothing can be forgotten: the accuracy matrix's rows are (up to training noise) those
of a single multi-task model. It is the reference "joint" / "multi-task" upper bound
of the continual-learning surveys (e.g. De Lange et al. 2021, "A Continual Learning
Survey: Defying Forgetting in Classification Tasks").
"""

from __future__ import annotations

from seqjax.cl import strategy as strategy_lib


def make(spec: strategy_lib.StreamSpec) -> strategy_lib.Strategy:
    """Joint training: ``data="joint"``, no extension.

    Args:
      spec: the stream (unused).

    Returns:
      ``Strategy("joint", data="joint")``.

    Example:
      >>> make(spec).data
      'joint'
    """
    del spec
    return strategy_lib.Strategy("joint", data="joint")
