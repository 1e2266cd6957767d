"""Fine-tuning ("naive"): train on each task in turn with nothing added.

Task ``k`` minimises its own loss only, starting from the parameters task ``k - 1``
left, :math:`\\theta_k = \\arg\\min_\\theta \\mathcal{L}_k(\\theta)` (approached from
:math:`\\theta_{k-1}`). It is the lower bound every continual-learning strategy is
measured against: what is forgotten here is catastrophic forgetting (McCloskey &
Cohen 1989, "Catastrophic Interference in Connectionist Networks"; Goodfellow et al.
2014, "An Empirical Investigation of Catastrophic Forgetting in Gradient-Based Neural
Networks").
"""

from __future__ import annotations

from seqjax.cl import strategy as strategy_lib


def make(spec: strategy_lib.StreamSpec) -> strategy_lib.Strategy:
    """Fine-tuning: no extension, no task-end work, each task's own data.

    Args:
      spec: the stream (unused).

    Returns:
      ``Strategy("naive")``.

    Example:
      >>> make(spec).data
      'current'
    """
    del spec
    return strategy_lib.Strategy("naive")
