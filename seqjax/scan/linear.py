"""``linear_scan``: every state of a linear recurrence, evaluated in parallel over time.

.. math:: h_t = a_t \\circ h_{t-1} + b_t, \\qquad h_{-1} = h_0

with ``a_t ∘ h`` elementwise (diagonal transition) or a matrix-vector product on the
last axis (block-diagonal or dense transition). Gradients come from the adjoint
recurrence, run backwards with the same method:

.. math::
   \\lambda_t = g_t + a_{t+1}^\\top \\lambda_{t+1}, \\quad
   \\bar b_t = \\lambda_t, \\quad
   \\bar a_t = \\lambda_t \\otimes h_{t-1}, \\quad
   \\bar h_0 = a_0^\\top \\lambda_0,

so the backward pass keeps only ``a``, the states ``h`` and ``h_0``: O(T x state)
memory for every method, where autodiff through ``associative_scan`` keeps
O(T log T) intermediates.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.scan import associative, chunked, methods, sequential, transitions

ScanMethod = methods.ScanMethod


def linear_scan(
    a: jax.typing.ArrayLike,
    b: jax.typing.ArrayLike,
    h0: jax.typing.ArrayLike | None = None,
    *,
    axis: int = 0,
    reverse: bool = False,
    method: str | ScanMethod = "auto",
    chunk_size: int | None = None,
) -> jax.Array:
    """Computes every state of ``h_t = a_t ∘ h_{t-1} + b_t`` along ``axis``.

    .. math:: h_t = a_t \\circ h_{t-1} + b_t \\quad (h_{-1} = h_0)

    With ``reverse=True``: :math:`h_t = a_t \\circ h_{t+1} + b_t`, :math:`h_T = h_0`.

    Structure is read from the ranks:

    * ``a.ndim == b.ndim``: elementwise (diagonal) transition, ``a_t * h``; ``a`` is
      broadcast to ``b`` (a time length of 1 makes it time-invariant).
    * ``a.ndim == b.ndim + 1``: a matrix acting on the last axis of ``b``,
      ``a_t @ h``. With ``b: [..., n_blocks, k]`` and ``a: [..., n_blocks, k, k]`` it is
      block-diagonal; with ``b: [..., d]`` and ``a: [..., d, d]`` it is dense.

    Real and complex dtypes work. Computation is in at least float32 (bfloat16 and
    float16 inputs accumulate in float32); the result has the promoted input dtype.

    Args:
      a: transitions, broadcastable to ``b.shape`` (elementwise) or to
        ``b.shape + (k,)`` with ``k = b.shape[-1]`` (matrix).
      b: inputs, any shape with time along ``axis``.
      h0: initial state, broadcastable to ``b``'s shape without ``axis``; zeros if
        ``None``.
      axis: the time axis of ``b`` (and of ``a``).
      reverse: run from the end of the sequence.
      method: ``"sequential"``, ``"associative"``, ``"chunked"`` or ``"auto"`` (see
        ``ScanMethod`` and ``methods.resolve`` for the policy).
      chunk_size: steps per chunk for ``"chunked"``; default about ``sqrt(2T)``.

    Returns:
      Every state ``h_t``, with the shape of ``b``.

    Raises:
      TypeError: integer or boolean inputs.
      ValueError: ranks, shapes, ``axis`` or ``method`` that do not fit.

    Example:
      >>> import jax.numpy as jnp
      >>> from seqjax.scan import linear_scan
      >>> linear_scan(jnp.full((4,), 0.5), jnp.ones((4,)))
      Array([1.    , 1.5   , 1.75  , 1.875 ], dtype=float32)

    References:
      Blelloch, "Prefix sums and their applications" (1990); Martin & Cundy,
      "Parallelizing linear recurrent neural nets over sequence length" (2018).
    """
    method = methods.parse(method)
    a, b, h0 = _as_arrays(a, b, h0)
    matrix = _structure(a, b)
    axis = _normalize_axis(axis, b, matrix)
    length = b.shape[axis]
    a, h0 = _broadcast(a, b, h0, axis, matrix, length)

    out_dtype = jnp.result_type(a.dtype, b.dtype, h0.dtype)
    compute = jnp.promote_types(out_dtype, jnp.float32)
    if length == 0:
        return b.astype(out_dtype)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(
            f"linear_scan: chunk_size must be a positive int, got {chunk_size!r}."
        )

    a = jnp.moveaxis(a, axis, 0).astype(compute)
    b = jnp.moveaxis(b, axis, 0).astype(compute)
    h0 = h0.astype(compute)
    resolved = methods.resolve(
        method, length=length, step_elements=a[0].size, matrix=matrix
    )
    hs = _scan_jit(a, b, h0, reverse, matrix, resolved, chunk_size)
    return jnp.moveaxis(hs, 0, axis).astype(out_dtype)


# --- differentiable core ----------------------------------------------------------


def _evaluate(a, b, h0, reverse, matrix, method, chunk_size):
    """Runs one concrete method on time-leading, broadcast, same-dtype arrays."""
    if method is ScanMethod.SEQUENTIAL:
        return sequential.scan(a, b, h0, reverse=reverse, matrix=matrix)
    if method is ScanMethod.ASSOCIATIVE:
        return associative.scan(a, b, h0, reverse=reverse, matrix=matrix)
    if method is ScanMethod.CHUNKED:
        return chunked.scan(
            a, b, h0, reverse=reverse, matrix=matrix, chunk_size=chunk_size
        )
    raise AssertionError(f"unresolved method {method}")  # resolve() maps AUTO.


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _scan(a, b, h0, reverse, matrix, method, chunk_size):
    return _evaluate(a, b, h0, reverse, matrix, method, chunk_size)


def _scan_fwd(a, b, h0, reverse, matrix, method, chunk_size):
    hs = _evaluate(a, b, h0, reverse, matrix, method, chunk_size)
    return hs, (a, hs, h0)


def _shift(x, toward_start: bool, fill):
    """Shifts ``x`` by one step along time, filling the vacated end with ``fill``."""
    fill = jnp.broadcast_to(fill, x[:1].shape).astype(x.dtype)
    if toward_start:  # out[t] = x[t + 1]
        return jnp.concatenate([x[1:], fill], axis=0)
    return jnp.concatenate([fill, x[:-1]], axis=0)  # out[t] = x[t - 1]


def _scan_bwd(reverse, matrix, method, chunk_size, residuals, g):
    a, hs, h0 = residuals
    g = jnp.asarray(g, hs.dtype)
    a_t = transitions.transpose(a, matrix)
    # Forward: lambda_t = g_t + a_{t+1}^T lambda_{t+1}, run from the end. The adjoint
    # starts from zero, so the transition at its first step is never used: fill 0.
    a_adj = _shift(a_t, toward_start=not reverse, fill=0)
    lam = _evaluate(
        a_adj, g, jnp.zeros_like(h0), not reverse, matrix, method, chunk_size
    )
    h_prev = _shift(hs, toward_start=reverse, fill=h0[None])
    if matrix:
        grad_a = lam[..., :, None] * h_prev[..., None, :]
    else:
        grad_a = lam * h_prev
    first = -1 if reverse else 0
    grad_h0 = transitions.apply(a_t[first], lam[first], matrix)
    return grad_a, lam, grad_h0


_scan.defvjp(_scan_fwd, _scan_bwd)
# Compiled once per shape and method, so eager calls do not dispatch op by op.
_scan_jit = jax.jit(_scan, static_argnums=(3, 4, 5, 6))


# --- validation -------------------------------------------------------------------


def _as_arrays(a, b, h0):
    arrays = []
    for name, x in (("a", a), ("b", b), ("h0", h0)):
        if x is None:
            arrays.append(None)
            continue
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            raise TypeError(
                f"linear_scan: {name} must have a floating or complex dtype, got "
                f"{x.dtype}; cast it first, e.g. {name}.astype(jnp.float32)."
            )
        arrays.append(x)
    return tuple(arrays)


def _structure(a, b) -> bool:
    """Returns whether the transition is a matrix, from the ranks of ``a`` and ``b``."""
    if b.ndim == 0:
        raise ValueError(
            "linear_scan: b must have a time axis, got a scalar (shape ())."
        )
    if a.ndim == b.ndim:
        return False
    if a.ndim == b.ndim + 1:
        return True
    raise ValueError(
        f"linear_scan: a has shape {a.shape} (rank {a.ndim}) but b has shape "
        f"{b.shape} (rank {b.ndim}); expected a of rank {b.ndim} (elementwise "
        f"transition) or {b.ndim + 1} (matrix on b's last axis)."
    )


def _normalize_axis(axis, b, matrix) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"linear_scan: axis must be an int, got {axis!r}.")
    if not -b.ndim <= axis < b.ndim:
        raise ValueError(
            f"linear_scan: axis={axis} is out of range for b of shape {b.shape} "
            f"(rank {b.ndim}); expected {-b.ndim} <= axis < {b.ndim}."
        )
    axis = int(axis) % b.ndim
    if matrix and axis == b.ndim - 1:
        raise ValueError(
            f"linear_scan: with a matrix transition, b's last axis is the state that "
            f"a acts on, so it cannot be the time axis (axis={axis}, b of shape "
            f"{b.shape}); put time on another axis."
        )
    return axis


def _broadcast(a, b, h0, axis, matrix, length):
    """Broadcasts ``a`` to ``b`` (plus the matrix axis) and ``h0`` to one step."""
    if a.shape[axis] not in (1, length):
        raise ValueError(
            f"linear_scan: time lengths differ along axis {axis}: a has "
            f"{a.shape[axis]} steps (shape {a.shape}), b has {length} (shape "
            f"{b.shape}); a's time length must equal b's or be 1."
        )
    if matrix:
        k = b.shape[-1]
        target = b.shape + (k,)
        if a.shape[-2:] != (k, k):
            raise ValueError(
                f"linear_scan: a matrix transition must end in ({k}, {k}) to act on "
                f"b's last axis of size {k}; got a of shape {a.shape} for b of shape "
                f"{b.shape}."
            )
    else:
        target = b.shape
    try:
        broadcast = np.broadcast_shapes(a.shape, target)
    except ValueError:
        broadcast = None
    if broadcast != target:
        raise ValueError(
            f"linear_scan: a of shape {a.shape} does not broadcast to {target}, "
            f"which b of shape {b.shape} requires"
            + (" (a matrix transition)." if matrix else " (an elementwise transition).")
        )
    a = jnp.broadcast_to(a, target)

    step_shape = b.shape[:axis] + b.shape[axis + 1 :]
    if h0 is None:
        return a, jnp.zeros(step_shape, b.dtype)
    try:
        ok = np.broadcast_shapes(h0.shape, step_shape) == step_shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"linear_scan: h0 of shape {h0.shape} does not broadcast to {step_shape}, "
            f"the shape of one step of b (shape {b.shape} without axis {axis})."
        )
    return a, jnp.broadcast_to(h0, step_shape)
