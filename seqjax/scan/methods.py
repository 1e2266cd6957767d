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
      time; the parallel forms only add passes over the data (measured slower at every
      size and structure).
    * GPU: ``ASSOCIATIVE``. One parallel prefix of O(log T) fused kernels beat both a
      loop of T steps (35x to 1500x at T >= 16K on an H200) and the chunked form,
      whose loops inside chunks pay a kernel launch per step, for every length,
      width and structure measured (T from 1K to 128K; elementwise, complex, 2x2
      blocks, dense 16x16). It keeps O(T) extra memory for the tree's levels.
    * TPU: ``ASSOCIATIVE`` by analogy with GPUs (not yet measured).

    Args:
      method: the requested method.
      length: number of time steps ``T``.
      step_elements: elements of ``a`` touched per time step.
      matrix: whether transitions are matrices.
      backend: ``jax.default_backend()`` when ``None``.
    """
    del length, step_elements, matrix  # Part of the policy's signature.
    if method is not ScanMethod.AUTO:
        return method
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return ScanMethod.SEQUENTIAL
    return ScanMethod.ASSOCIATIVE
