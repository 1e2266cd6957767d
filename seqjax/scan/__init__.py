"""The recurrence engine: pure functions on arrays, no Flax.

* ``linear_scan``: every state of ``h_t = a_t ∘ h_{t-1} + b_t``, in parallel over time.
* ``newton_scan``: every state of ``h_t = f(h_{t-1}, x_t)``, by Newton's method over the
  whole sequence, each iteration one ``linear_scan`` (or, with
  ``LevenbergMarquardt`` damping, one Kalman smoother: ``trust_region``).
"""

from seqjax.scan.linear import linear_scan
from seqjax.scan.methods import ScanMethod
from seqjax.scan.newton import (
    JacobianStructure,
    LevenbergMarquardt,
    NewtonConvergenceError,
    NewtonInfo,
    OnFailure,
    newton_scan,
)

__all__ = [
    "JacobianStructure",
    "LevenbergMarquardt",
    "NewtonConvergenceError",
    "NewtonInfo",
    "OnFailure",
    "ScanMethod",
    "linear_scan",
    "newton_scan",
]
