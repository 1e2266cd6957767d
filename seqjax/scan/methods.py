"""The evaluation methods of ``linear_scan`` and the policy behind ``"auto"``."""

from __future__ import annotations

import enum

import jax


class ScanMethod(enum.StrEnum):
    """How ``linear_scan`` evaluates a recurrence; all give the same result.

    * ``SEQUENTIAL``: ``jax.lax.scan``, one step at a time (``sequential.py``).
    * ``ASSOCIATIVE``: ``jax.lax.associative_scan`` (``associative.py``).
    * ``CHUNKED``: sequential inside chunks, parallel prefix across them
      (``chunked.py``).
    * ``AUTO``: the fastest of these for the backend and shape, by ``resolve``.
    """

    AUTO = "auto"
    SEQUENTIAL = "sequential"
    ASSOCIATIVE = "associative"
    CHUNKED = "chunked"


def parse(method: str | ScanMethod) -> ScanMethod:
    """Validates ``method``; raises ``ValueError`` listing the valid names."""
    try:
        return ScanMethod(method)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in ScanMethod)
        raise ValueError(
            f"linear_scan: unknown method={method!r}; expected one of {valid}."
        ) from None


def resolve(
    method: ScanMethod,
    *,
    length: int,
    step_elements: int,
    matrix: bool,
    backend: str | None = None,
) -> ScanMethod:
    """Maps ``AUTO`` to a concrete method; other methods are returned unchanged.

    Policy (measured by ``experiments/bench_linear_scan.py``; tables in
    ``experiments/results/``):

    * CPU: ``SEQUENTIAL``. A CPU runs the recurrence at memory speed one step at a
      time; the parallel forms only add passes over the data.
    * GPU/TPU: ``SEQUENTIAL`` for short sequences (``length < 256``), where a few
      loop iterations cost less than the parallel forms' extra passes; otherwise
      ``CHUNKED``, which cuts the loop to ``O(sqrt(T))`` steps at two reads and one
      write of the data.

    Args:
      method: the requested method.
      length: number of time steps ``T``.
      step_elements: elements of ``a`` touched per time step.
      matrix: whether transitions are matrices.
      backend: ``jax.default_backend()`` when ``None``.
    """
    del step_elements, matrix  # Part of the policy's signature; unused today.
    if method is not ScanMethod.AUTO:
        return method
    backend = backend or jax.default_backend()
    if backend == "cpu" or length < 256:
        return ScanMethod.SEQUENTIAL
    return ScanMethod.CHUNKED
