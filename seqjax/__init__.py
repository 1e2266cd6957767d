"""seqjax: parallel recurrence for JAX and Flax.

Subpackages: ``seqjax.scan`` (the recurrence engine) and, as they land, ``seqjax.nn``
(Flax NNX modules), ``seqjax.data``, ``seqjax.train`` and ``seqjax.cl``.
"""

from seqjax import scan

__version__ = "0.1.0"

__all__ = ["scan"]
