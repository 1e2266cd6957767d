"""The recurrence engine: pure functions on arrays, no Flax.

* ``linear_scan``: every state of ``h_t = a_t ∘ h_{t-1} + b_t``, in parallel over time.
* ``ScanMethod``: the evaluation methods of ``linear_scan``.
"""

from seqjax.scan.linear import linear_scan
from seqjax.scan.methods import ScanMethod

__all__ = ["ScanMethod", "linear_scan"]
