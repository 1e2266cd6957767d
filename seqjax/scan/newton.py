"""``newton_scan``: a nonlinear recurrence solved in parallel over time by Newton.

The states of :math:`h_t = f(h_{t-1}, x_t)` (``t = 0..T-1``, :math:`h_{-1} = h_0`) are
the root of the residual :math:`F_t(h) = h_t - f(h_{t-1}, x_t)`. Newton's method on the
whole sequence linearises :math:`f` around the current iterate :math:`h^k`; the update
:math:`\\delta = h^{k+1} - h^k` then solves the *linear* recurrence

.. math:: \\delta_t = J_t \\, \\delta_{t-1} + r_t, \\qquad
   J_t = \\partial_h f(h^k_{t-1}, x_t), \\quad r_t = f(h^k_{t-1}, x_t) - h^k_t,
   \\quad \\delta_{-1} = 0,

which ``linear_scan`` evaluates in parallel. The Jacobians are diagonal, k x k
block-diagonal or dense, as the cell's structure allows.

Gradients use implicit differentiation at the solution: the adjoint
:math:`\\lambda_t = \\bar h_t + J_{t+1}^\\top \\lambda_{t+1}` is one reverse linear
scan, after which one vectorised VJP of ``f`` gives the gradients for the parameters
``f`` closes over, for ``xs`` and for ``h_0``. Newton is not differentiated through,
and only ``xs`` and the states are kept for the backward pass.

References:
  Danieli et al., "ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for Large
  Language Models" (2025); Lim et al., "Parallelizing non-linear sequential models over
  the sequence length" (DEER, ICLR 2024); Gonzalez et al., "Towards Scalable and Stable
  Parallelization of Nonlinear RNNs" (quasi-DEER / ELK, NeurIPS 2024).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from seqjax.scan import linear, methods, trust_region

PyTree = Any


class JacobianStructure(enum.StrEnum):
    """The structure of :math:`\\partial_h f` that ``newton_scan`` exploits.

    * ``DENSE``: full matrix over the flattened state (``jax.jacfwd``); any cell.
    * ``DIAGONAL``: one JVP with a ones tangent; exact when the Jacobian is diagonal
      (e.g. ParaGRU), a quasi-Newton approximation otherwise (quasi-DEER).
    * ``BLOCK``: k JVPs for k x k blocks. With a state of k arrays of equal shape,
      block ``i`` couples element ``i`` of every array (ParaLSTM's ``(c, h)``); with a
      single array, blocks run along its last axis (size k).
    * ``AUTO``: the structure the cell declares (its ``jacobian_structure``
      attribute, on the step function or the object of a bound method), else dense.
    """

    AUTO = "auto"
    DENSE = "dense"
    DIAGONAL = "diagonal"
    BLOCK = "block"


class OnFailure(enum.StrEnum):
    """What ``newton_scan`` does when Newton fails (no convergence, non-finite values).

    * ``FALLBACK``: recompute the failed sequences with ``jax.lax.scan`` (exact).
    * ``RAISE``: raise ``NewtonConvergenceError`` (eager calls), or fail a
      ``checkify`` check (under ``jit``, wrap the caller in ``checkify.checkify``).
    * ``IGNORE``: return the last iterate; ``info.converged`` says it failed.
    """

    FALLBACK = "fallback"
    RAISE = "raise"
    IGNORE = "ignore"


class LevenbergMarquardt(NamedTuple):
    """Levenberg–Marquardt damping for ``newton_scan`` (the ELK step).

    Each iteration takes the step :math:`\\delta` that minimises
    :math:`\\sum_t \\|\\delta_t - J_t \\delta_{t-1} - r_t\\|^2
    + \\lambda \\|\\delta_t\\|^2`, solved exactly by a parallel Kalman filter and
    smoother (``trust_region.trust_region_step``): the Newton step for
    :math:`\\lambda = 0`, a short gradient-descent step on the squared residual for
    large :math:`\\lambda`. Each iteration costs a filter scan and a smoother scan where
    plain Newton needs one scan.

    What it buys (``experiments/bench_damping.py``): iterates stay
    finite where products of Jacobians with norm above 1 overflow plain Newton's
    steps, and near the edge of stability it can take fewer iterations. It does
    not make chaotic recurrences converge quickly: there every parallel method
    needs about T iterations, and ``on_failure`` decides what happens.

    Attributes:
      lam: the initial :math:`\\lambda > 0` (one per sequence).
      adaptive: Marquardt's rule, per sequence: a step that lowers
        :math:`\\sum_t \\|r_t\\|^2` is taken and :math:`\\lambda` multiplied by
        ``shrink``; any other step (including one with non-finite values) is
        rejected and :math:`\\lambda` multiplied by ``grow``. A rejected step
        still counts as an iteration. ``False`` keeps :math:`\\lambda` fixed and
        takes every step, as ELK does.
      shrink: factor in (0, 1] applied to :math:`\\lambda` after a good step.
      grow: factor >= 1 applied after a rejected step.

    References: Gonzalez et al., "Towards Scalable and Stable Parallelization of
    Nonlinear RNNs" (ELK, NeurIPS 2024); Marquardt, "An Algorithm for Least-Squares
    Estimation of Nonlinear Parameters" (1963).
    """

    lam: float = 0.01
    adaptive: bool = True
    shrink: float = 0.3
    grow: float = 3.0


class NewtonInfo(NamedTuple):
    """How the solve went, one entry per sequence (shape ``[*batch]``).

    Attributes:
      iterations: Newton iterations used (summed over windows).
      residual: final :math:`\\max_t \\|h_t - f(h_{t-1}, x_t)\\|_\\infty` of the Newton
        iterate (before any fallback).
      converged: whether every residual met ``atol + rtol * |f|``.
      fell_back: whether the result was recomputed sequentially.
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    fell_back: jax.Array


class NewtonConvergenceError(RuntimeError):
    """Raised by ``newton_scan(..., on_failure="raise")`` when a sequence fails."""


def newton_scan(
    step: Callable[[PyTree, PyTree], PyTree],
    h0: PyTree,
    xs: PyTree,
    *,
    jacobian: str | JacobianStructure = "auto",
    max_iters: int = 10,
    atol: float | None = None,
    rtol: float | None = None,
    init: str | PyTree = "step",
    method: str | methods.ScanMethod = "auto",
    damping: float | LevenbergMarquardt | str | None = None,
    on_failure: str | OnFailure = "fallback",
    axis: int = 0,
    batch_ndim: int = 0,
    window: int | None = None,
    check_structure: bool = False,
    adjoint_jacobian: str | JacobianStructure | None = None,
) -> tuple[PyTree, NewtonInfo]:
    """Solves ``hs[t] = step(hs[t-1], xs[t])`` (``hs[-1] = h0``) for all t at once.

    .. math:: h^{k+1} = h^k + \\delta, \\quad
       \\delta_t = J_t\\,\\delta_{t-1} + \\big(f(h^k_{t-1}, x_t) - h^k_t\\big)

    Iterates until every residual :math:`|h_t - f(h_{t-1}, x_t)|` is at most
    ``atol + rtol * |f(h_{t-1}, x_t)|``, per sequence, or ``max_iters`` is reached.

    Args:
      step: ``step(h, x) -> h`` for one time step of one sequence, any JAX function;
        arrays it closes over (parameters) get gradients, as with ``jax.lax.scan``.
      h0: initial state, a pytree of real floating arrays, with ``batch_ndim`` leading
        batch axes.
      xs: inputs, a pytree whose leaves have the time axis at ``axis`` (counted among
        all axes) and the same leading batch axes as ``h0``.
      jacobian: ``"dense"``, ``"diagonal"``, ``"block"`` or ``"auto"``
        (``JacobianStructure``).
      max_iters: most Newton iterations (per window).
      atol: absolute tolerance; default 1e-6 (float32) or 1e-12 (float64). The error
        of the states is about the residual times ``1 / (1 - |J|)``, so the default
        sits a decade below what float32 outputs are usually checked to.
      rtol: relative tolerance; default 1e-6 (float32) or 1e-12 (float64).
      init: initial guess: ``"step"`` (``step(0, x_t)`` for every t, fully parallel, as
        ParaRNN does), ``"zeros"``, or a pytree shaped like the result.
      method: ``linear_scan`` method for the linear solves (``"auto"`` by default).
      damping: ``None`` (plain Newton), a step size in (0, 1] that scales every
        Newton update, or ``LevenbergMarquardt(...)`` (``"levenberg-marquardt"``
        for its defaults): trust-region steps by Kalman smoothing, as ELK does.
      on_failure: ``"fallback"`` (default), ``"raise"`` or ``"ignore"``
        (``OnFailure``). A wrong result is never returned silently: it is recomputed,
        raised, or flagged in ``info``.
      axis: time axis of the leaves of ``xs`` (and of the returned states).
      batch_ndim: number of leading batch axes of ``h0`` (and of ``xs``, besides
        time); each sequence converges, and is flagged, on its own.
      window: solve windows of this many steps one after another, each seeded with
        the previous window's last state (bounds memory and iterations for very long
        sequences); ``None`` solves the whole sequence at once.
      check_structure: debug option: compare the structured Jacobian with the dense
        one at the initial guess and raise (or fail a ``checkify`` check) if the
        declared structure is wrong.
      adjoint_jacobian: structure of the Jacobians in the backward pass; defaults to
        ``jacobian``. Use ``"dense"`` when ``jacobian`` is a quasi-Newton
        approximation, since the gradients are exact only with the exact Jacobian.

    Returns:
      ``(hs, info)``: ``hs`` has the structure of ``h0`` with a time axis inserted at
      ``axis`` (the states :math:`h_0..h_{T-1}` after ``h0``), and ``info`` is a
      ``NewtonInfo`` with one entry per sequence.

    Raises:
      TypeError: non-floating or complex states, or a ``step`` whose output does not
        match its state.
      ValueError: bad options or shapes that do not fit.
      NewtonConvergenceError: ``on_failure="raise"`` and a sequence did not converge
        (eager calls; under ``jit`` a ``checkify`` check fails instead).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from seqjax.scan import newton_scan
      >>> w = 0.5 * jnp.ones(4)
      >>> step = lambda h, x: jnp.tanh(w * h + x)  # diagonal Jacobian
      >>> xs = jax.random.normal(jax.random.key(0), (100, 4))
      >>> hs, info = newton_scan(step, jnp.zeros(4), xs, jacobian="diagonal")
      >>> hs.shape, bool(info.converged)
      ((100, 4), True)
    """
    config = _config(
        step, h0, xs, jacobian, max_iters, atol, rtol, init, method, damping,
        on_failure, axis, batch_ndim, window, check_structure, adjoint_jacobian,
    )  # fmt: skip
    h0 = jax.tree.map(jnp.asarray, h0)
    xs = jax.tree.map(jnp.asarray, xs)
    init_hs = None
    if not isinstance(init, str):
        init_hs = jax.tree.map(
            lambda x: jnp.moveaxis(jnp.asarray(x), config.axis, batch_ndim), init
        )
    # Time next to the batch axes: leaves become [*batch, T, ...].
    xs = jax.tree.map(lambda x: jnp.moveaxis(x, config.axis, batch_ndim), xs)
    batch_shape = jax.tree.leaves(h0)[0].shape[:batch_ndim]
    flat_batch = int(np.prod(batch_shape, dtype=int))
    h0_flat = jax.tree.map(
        lambda x: x.reshape((flat_batch,) + x.shape[batch_ndim:]), h0
    )
    xs_flat = jax.tree.map(
        lambda x: x.reshape((flat_batch,) + x.shape[batch_ndim:]), xs
    )
    if init_hs is not None:
        init_hs = jax.tree.map(
            lambda x: x.reshape((flat_batch,) + x.shape[batch_ndim:]), init_hs
        )

    one_h = jax.tree.map(lambda x: x[0], h0_flat)
    one_x = jax.tree.map(lambda x: x[0, 0], xs_flat)
    converted, consts = jax.closure_convert(step, one_h, one_x)
    layout = _Layout.build(one_h, config.structure)
    _check_step_output(step, one_h, one_x)
    if config.check_structure:
        _verify_structure(converted, consts, layout, h0_flat, xs_flat, config)

    hs, info = _solve(converted, config, layout, consts, xs_flat, h0_flat, init_hs)

    _report_failure(info, config)
    hs = jax.tree.map(
        lambda x: jnp.moveaxis(
            x.reshape(batch_shape + x.shape[1:]), batch_ndim, config.axis
        ),
        hs,
    )
    info = jax.tree.map(lambda x: x.reshape(batch_shape), info)
    return hs, info


# --- configuration and validation ---------------------------------------------------


class _Config(NamedTuple):
    structure: JacobianStructure
    adjoint_structure: JacobianStructure
    max_iters: int
    atol: float
    rtol: float
    init: str
    method: methods.ScanMethod
    step_size: float
    levenberg_marquardt: LevenbergMarquardt | None
    on_failure: OnFailure
    axis: int
    window: int | None
    check_structure: bool


def _parse_enum(kind, value, name):
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in kind)
        raise ValueError(
            f"newton_scan: unknown {name}={value!r}; expected one of {valid}."
        ) from None


def declared_structure(step: Callable) -> JacobianStructure | None:
    """The ``jacobian_structure`` a step function (or its bound object) declares."""
    for owner in (step, getattr(step, "__self__", None)):
        declared = getattr(owner, "jacobian_structure", None)
        if declared is not None:
            return _parse_enum(JacobianStructure, declared, "jacobian_structure")
    return None


def _config(
    step, h0, xs, jacobian, max_iters, atol, rtol, init, method, damping,
    on_failure, axis, batch_ndim, window, check_structure, adjoint_jacobian,
) -> _Config:  # fmt: skip
    if not callable(step):
        raise TypeError(
            f"newton_scan: step must be callable, got {type(step).__name__}."
        )
    structure = _parse_enum(JacobianStructure, jacobian, "jacobian")
    if structure is JacobianStructure.AUTO:
        structure = declared_structure(step) or JacobianStructure.DENSE
        if structure is JacobianStructure.AUTO:
            structure = JacobianStructure.DENSE
    adjoint = structure
    if adjoint_jacobian is not None:
        adjoint = _parse_enum(JacobianStructure, adjoint_jacobian, "adjoint_jacobian")
        if adjoint is JacobianStructure.AUTO:
            adjoint = structure
    if not isinstance(max_iters, (int, np.integer)) or max_iters < 0:
        raise ValueError(
            f"newton_scan: max_iters must be an int >= 0, got {max_iters!r}."
        )
    step_size, lm = _parse_damping(damping)
    if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f"newton_scan: window must be a positive int, got {window!r}.")
    if isinstance(init, str) and init not in ("step", "zeros"):
        raise ValueError(
            f"newton_scan: init must be 'step', 'zeros' or a pytree of states, got "
            f"{init!r}."
        )
    if not isinstance(batch_ndim, (int, np.integer)) or batch_ndim < 0:
        raise ValueError(
            f"newton_scan: batch_ndim must be an int >= 0, got {batch_ndim!r}."
        )

    h_leaves = jax.tree.leaves(h0)
    x_leaves = jax.tree.leaves(xs)
    if not h_leaves:
        raise ValueError("newton_scan: h0 has no arrays.")
    if not x_leaves:
        raise ValueError("newton_scan: xs has no arrays; it must carry the time axis.")
    dtypes = set()
    for leaf in h_leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"newton_scan: h0 leaves must be real floating arrays, got {dtype}."
            )
        dtypes.add(jnp.promote_types(dtype, jnp.float32))
        if np.ndim(leaf) < batch_ndim:
            raise ValueError(
                f"newton_scan: batch_ndim={batch_ndim} but an h0 leaf has shape "
                f"{np.shape(leaf)}."
            )
    batch_shape = np.shape(h_leaves[0])[:batch_ndim]
    if any(np.shape(leaf)[:batch_ndim] != batch_shape for leaf in h_leaves):
        raise ValueError(
            f"newton_scan: h0 leaves disagree on their {batch_ndim} batch axes: "
            f"{[np.shape(leaf) for leaf in h_leaves]}."
        )
    ndim = np.ndim(x_leaves[0])
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"newton_scan: axis={axis} is out of range for xs leaves of rank {ndim}."
        )
    axis = int(axis) % ndim
    lengths = set()
    for leaf in x_leaves:
        shape = np.shape(leaf)
        if len(shape) <= max(axis, batch_ndim - 1):
            raise ValueError(
                f"newton_scan: an xs leaf of shape {shape} has no time axis {axis}."
            )
        lengths.add(shape[axis])
        rest = shape[:axis] + shape[axis + 1 :]
        if rest[:batch_ndim] != batch_shape:
            raise ValueError(
                f"newton_scan: xs leaf of shape {shape} (time axis {axis}) does not "
                f"have h0's batch shape {batch_shape} on its leading axes."
            )
    if len(lengths) != 1:
        raise ValueError(
            f"newton_scan: xs leaves disagree on the time length: {lengths}."
        )
    if lengths.pop() == 0:
        raise ValueError("newton_scan: xs has a time length of 0.")
    if batch_ndim and axis < batch_ndim:
        raise ValueError(
            f"newton_scan: the time axis ({axis}) must come after the {batch_ndim} "
            "batch axes."
        )

    wide = jnp.float64 in dtypes
    default_tol = 1e-12 if wide else 1e-6
    return _Config(
        structure=structure,
        adjoint_structure=adjoint,
        max_iters=int(max_iters),
        atol=default_tol if atol is None else float(atol),
        rtol=default_tol if rtol is None else float(rtol),
        init=init if isinstance(init, str) else "given",
        method=methods.parse(method),
        step_size=step_size,
        levenberg_marquardt=lm,
        on_failure=_parse_enum(OnFailure, on_failure, "on_failure"),
        axis=axis,
        window=None if window is None else int(window),
        check_structure=bool(check_structure),
    )


def _parse_damping(damping) -> tuple[float, LevenbergMarquardt | None]:
    """``damping`` as ``(step_size, levenberg_marquardt)``."""
    if damping is None:
        return 1.0, None
    if isinstance(damping, str):
        if damping != "levenberg-marquardt":
            raise ValueError(
                f"newton_scan: unknown damping={damping!r}; expected a step size in "
                "(0, 1], 'levenberg-marquardt' or a LevenbergMarquardt(...)."
            )
        return 1.0, LevenbergMarquardt()
    if isinstance(damping, LevenbergMarquardt):
        lam, adaptive, shrink, grow = damping
        if not (np.isfinite(lam) and lam > 0):
            raise ValueError(
                f"newton_scan: LevenbergMarquardt.lam must be finite and > 0, got "
                f"{lam!r}."
            )
        if not 0 < shrink <= 1:
            raise ValueError(
                f"newton_scan: LevenbergMarquardt.shrink must be in (0, 1], got "
                f"{shrink!r}."
            )
        if not (np.isfinite(grow) and grow >= 1):
            raise ValueError(
                f"newton_scan: LevenbergMarquardt.grow must be finite and >= 1, got "
                f"{grow!r}."
            )
        return 1.0, LevenbergMarquardt(
            float(lam), bool(adaptive), float(shrink), float(grow)
        )
    if isinstance(damping, bool) or not isinstance(damping, (int, float, np.number)):
        raise TypeError(
            "newton_scan: damping must be None, a step size in (0, 1], "
            f"'levenberg-marquardt' or a LevenbergMarquardt(...); got "
            f"{type(damping).__name__}."
        )
    if not 0 < damping <= 1:
        raise ValueError(f"newton_scan: damping must be in (0, 1], got {damping!r}.")
    return float(damping), None


def _check_step_output(step, h, x):
    out = jax.eval_shape(step, h, x)
    want = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), h)
    same_tree = jax.tree.structure(out) == jax.tree.structure(want)
    if not same_tree or any(
        o.shape != w.shape
        for o, w in zip(jax.tree.leaves(out), jax.tree.leaves(want), strict=True)
    ):
        raise TypeError(
            "newton_scan: step(h, x) must return a state shaped like h; got "
            f"{jax.tree.map(lambda a: a.shape, out)} for h of "
            f"{jax.tree.map(lambda a: a.shape, want)}."
        )


# --- state layouts ------------------------------------------------------------------


class _Layout(NamedTuple):
    """Maps one sequence's state pytree to the array ``linear_scan`` works on.

    ``diagonal``/``dense``: a vector ``[n]`` (leaves raveled and concatenated).
    ``block``: ``[m, k]``, with k the number of leaves (stacked) or, for a single
    leaf, its last axis.
    """

    structure: JacobianStructure
    treedef: Any
    shapes: tuple
    dtypes: tuple
    solve_dtype: Any
    stacked: bool  # block layout from k leaves

    @staticmethod
    def build(h, structure) -> _Layout:
        leaves, treedef = jax.tree.flatten(h)
        shapes = tuple(x.shape for x in leaves)
        dtypes = tuple(x.dtype for x in leaves)
        solve = jnp.result_type(*[jnp.promote_types(d, jnp.float32) for d in dtypes])
        stacked = False
        if structure is JacobianStructure.BLOCK:
            if len(leaves) > 1:
                if len(set(shapes)) != 1:
                    raise ValueError(
                        "newton_scan: jacobian='block' with a state of several arrays "
                        "needs them all the same shape (block i couples element i of "
                        f"each); got shapes {list(shapes)}."
                    )
                stacked = True
            elif len(shapes[0]) == 0:
                raise ValueError(
                    "newton_scan: jacobian='block' with a single array needs its last "
                    "axis as the block; got a scalar state."
                )
        return _Layout(structure, treedef, shapes, dtypes, solve, stacked)

    @property
    def block(self) -> int:
        if self.structure is not JacobianStructure.BLOCK:
            return 1
        return len(self.shapes) if self.stacked else self.shapes[0][-1]

    def flatten(self, h) -> jax.Array:
        leaves = [x.astype(self.solve_dtype) for x in jax.tree.leaves(h)]
        if self.structure is JacobianStructure.BLOCK:
            if self.stacked:
                return jnp.stack([x.reshape(-1) for x in leaves], axis=-1)
            return leaves[0].reshape(-1, self.block)
        return jnp.concatenate([x.reshape(-1) for x in leaves])

    def unflatten(self, v: jax.Array):
        if self.structure is JacobianStructure.BLOCK:
            if self.stacked:
                leaves = [v[:, i].reshape(self.shapes[i]) for i in range(self.block)]
            else:
                leaves = [v.reshape(self.shapes[0])]
        else:
            sizes = np.cumsum([int(np.prod(s, dtype=int)) for s in self.shapes])[:-1]
            parts = jnp.split(v, sizes)
            leaves = [p.reshape(s) for p, s in zip(parts, self.shapes, strict=True)]
        return jax.tree.unflatten(self.treedef, leaves)

    def with_structure(self, structure) -> _Layout:
        return _Layout.build(self.unflatten(self.zeros()), structure)

    def zeros(self) -> jax.Array:
        n = sum(int(np.prod(s, dtype=int)) for s in self.shapes)
        shape = (
            (n // self.block, self.block)
            if self.structure is JacobianStructure.BLOCK
            else (n,)
        )
        return jnp.zeros(shape, self.solve_dtype)


def _flat_step(converted, layout: _Layout, consts):
    """``step`` on the flat layout: ``v, x -> flatten(step(unflatten(v), x))``."""

    def f(v, x):
        return layout.flatten(converted(layout.unflatten(v), x, *consts))

    return f


def _value_and_jacobian(f, layout: _Layout, structure: JacobianStructure):
    """``(v, x) -> (f(v, x), J)`` with J in the layout ``linear_scan`` expects.

    diagonal: ``[n]``; block: ``[m, k, k]`` (``J[i, r, c] = d out[i, r] / d v[i, c]``);
    dense: ``[n, n]``.
    """
    if structure is JacobianStructure.DIAGONAL:

        def diag(v, x):
            return jax.jvp(lambda v: f(v, x), (v,), (jnp.ones_like(v),))

        return diag
    if structure is JacobianStructure.BLOCK:

        def block(v, x):
            fv, lin = jax.linearize(lambda v: f(v, x), v)
            eye = jnp.eye(v.shape[-1], dtype=v.dtype)
            # Broadcast one-hot tangents (a scatter into zeros would be constant-
            # folded into a [batch, T, m, k] array by XLA).
            columns = [lin(jnp.broadcast_to(row, v.shape)) for row in eye]
            return fv, jnp.stack(columns, axis=-1)

        return block

    def dense(v, x):
        def twice(v):
            out = f(v, x)
            return out, out

        jac, fv = jax.jacfwd(twice, has_aux=True)(v)
        return fv, jac

    return dense


# --- the solve ------------------------------------------------------------------------


def _shift_in(v0, hs):
    """``[T, ...] -> [T, ...]``: the previous state of every step (``h0`` first)."""
    return jnp.concatenate([v0[None], hs[:-1]], axis=0)


def _newton_window(f, layout: _Layout, config: _Config, v0, xs, guess):
    """Newton on one window for a batch: ``v0 [B, *L]``, ``xs [B, T, ...]``.

    Returns the states ``[B, T, *L]`` and per-sequence (iterations, residual,
    converged) after at most ``config.max_iters`` iterations.
    """
    value_and_jac = jax.vmap(jax.vmap(_value_and_jacobian(f, layout, config.structure)))

    def reduce_axes(x):
        return tuple(range(1, x.ndim))

    def evaluate(hs):
        prev = jax.vmap(_shift_in)(v0, hs)
        fv, jac = value_and_jac(prev, xs)
        r = fv - hs
        err = jnp.max(jnp.abs(r), axis=reduce_axes(r))
        ok = jnp.all(
            jnp.abs(r) <= config.atol + config.rtol * jnp.abs(fv), axis=reduce_axes(r)
        )
        finite = jnp.all(jnp.isfinite(r), axis=reduce_axes(r))
        return jac, r, err, ok & finite, finite

    def solve_linear(jac, r):
        # delta_t = J_t delta_{t-1} + r_t with delta_{-1} = 0, time on axis 1.
        return linear.linear_scan(jac, r, axis=1, method=config.method)

    def merit(r):
        # Non-finite residuals compare as worse than any finite one.
        total = jnp.sum(jnp.square(r), axis=reduce_axes(r))
        return jnp.where(jnp.isnan(total), jnp.inf, total)

    lm = config.levenberg_marquardt
    jac, r, err, ok, finite = evaluate(guess)
    lam = jnp.full(ok.shape, 0.0 if lm is None else lm.lam, r.dtype)
    carry = _Iterate(
        guess, jac, r, err, ok, finite, lam, jnp.zeros(ok.shape, jnp.int32)
    )

    def active(it: _Iterate):
        return ~it.ok & it.finite

    def cond(state):
        it, k = state
        return jnp.any(active(it)) & (k < config.max_iters)

    def body(state):
        it, k = state
        live = active(it)
        if lm is None:
            new_hs = it.hs + config.step_size * solve_linear(it.jac, it.r)
        else:
            new_hs = it.hs + trust_region.trust_region_step(
                it.jac, it.r, it.lam, axis=1, method=config.method
            )
        jac, r, err, ok, finite = evaluate(new_hs)
        take, lam = live, it.lam
        if lm is not None and lm.adaptive:
            better = merit(r) < merit(it.r)
            take = live & better
            lam = jnp.where(better, lam * lm.shrink, lam * lm.grow)
            lam = jnp.where(live, jnp.minimum(lam, _MAX_LAMBDA), it.lam)

        def keep(new, old):
            return jnp.where(take.reshape(take.shape + (1,) * (new.ndim - 1)), new, old)

        new = _Iterate(new_hs, jac, r, err, ok, finite, it.lam, it.iters)
        kept = jax.tree.map(keep, new, it)
        return kept._replace(lam=lam, iters=it.iters + live), k + 1

    it, _ = jax.lax.while_loop(cond, body, (carry, jnp.int32(0)))
    return it.hs, it.iters, it.err, it.ok


# Beyond this the Levenberg–Marquardt step is zero in float32 anyway.
_MAX_LAMBDA = 1e15


class _Iterate(NamedTuple):
    """One Newton iterate of a batch, with what was evaluated at it."""

    hs: jax.Array  # [B, T, *L]
    jac: jax.Array  # [B, T, *L(, k)]
    r: jax.Array  # residuals f(h_{t-1}) - h_t, [B, T, *L]
    err: jax.Array  # [B]: max |r|
    ok: jax.Array  # [B]: converged
    finite: jax.Array  # [B]
    lam: jax.Array  # [B]: Levenberg–Marquardt lambda (0 without it)
    iters: jax.Array  # [B]: iterations used


def _sequential(f, v0, xs):
    """The reference solve: ``jax.lax.scan`` of the flat step, batched."""

    def one(v0, xs):
        def body(h, x):
            h = f(h, x)
            return h, h

        return jax.lax.scan(body, v0, xs)[1]

    return jax.vmap(one)(v0, xs)


def _initial_guess(f, layout, config, v0, xs, given):
    if given is not None:
        return given
    length = jax.tree.leaves(xs)[0].shape[1]
    zero = jnp.zeros_like(v0)
    if config.init == "zeros":
        return jnp.broadcast_to(zero[:, None], (zero.shape[0], length) + zero.shape[1:])
    # step(0, x_t) for every t: fully parallel.
    return jax.vmap(jax.vmap(f, in_axes=(None, 0)), in_axes=(None, 0))(zero[0], xs)


def _forward(converted, config: _Config, layout: _Layout, consts, xs, h0, init_hs):
    """The Newton solve with windows and the fallback; flat layout in and out."""
    f = _flat_step(converted, layout, consts)
    v0 = jax.vmap(layout.flatten)(h0)
    given = None if init_hs is None else jax.vmap(jax.vmap(layout.flatten))(init_hs)

    def solve(v0, xs, given):
        guess = _initial_guess(f, layout, config, v0, xs, given)
        hs, iters, err, ok = _newton_window(f, layout, config, v0, xs, guess)
        fell_back = jnp.zeros_like(ok)
        if config.on_failure is OnFailure.FALLBACK:
            failed = ~ok
            hs = jax.lax.cond(
                jnp.any(failed),
                lambda: jnp.where(
                    failed.reshape(failed.shape + (1,) * (hs.ndim - 1)),
                    _sequential(f, v0, xs),
                    hs,
                ),
                lambda: hs,
            )
            fell_back = failed
        return hs, NewtonInfo(iters, err, ok, fell_back)

    length = jax.tree.leaves(xs)[0].shape[1]
    if config.window is None or config.window >= length:
        return solve(v0, xs, given)

    size = config.window
    n = -(-length // size)
    pad = n * size - length

    def windows(x):
        # [B, T, ...] -> [n, B, size, ...], repeating the last input as padding.
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[:, -1:], pad, axis=1)], axis=1)
        x = x.reshape((x.shape[0], n, size) + x.shape[2:])
        return jnp.moveaxis(x, 1, 0)

    xw = jax.tree.map(windows, xs)
    gw = None if given is None else windows(given)

    def body(v, inputs):
        x, g = inputs
        hs, info = solve(v, x, g)
        return hs[:, -1], (hs, info)

    _, (hs, info) = jax.lax.scan(body, v0, (xw, gw))
    hs = jnp.moveaxis(hs, 0, 1)
    hs = hs.reshape((hs.shape[0], n * size) + hs.shape[3:])[:, :length]
    info = NewtonInfo(
        iterations=info.iterations.sum(0),
        residual=info.residual.max(0),
        converged=info.converged.all(0),
        fell_back=info.fell_back.any(0),
    )
    return hs, info


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _solve_flat(converted, config, layout, consts, xs, h0, init_hs):
    return _forward(converted, config, layout, consts, xs, h0, init_hs)


def _solve_flat_fwd(converted, config, layout, consts, xs, h0, init_hs):
    hs, info = _forward(converted, config, layout, consts, xs, h0, init_hs)
    return (hs, info), (consts, xs, h0, hs, init_hs)


def _solve_flat_bwd(converted, config, layout, residuals, cotangents):
    consts, xs, h0, hs, init_hs = residuals
    g_hs = jnp.asarray(cotangents[0], hs.dtype)
    adj_layout = layout.with_structure(config.adjoint_structure)
    f = _flat_step(converted, adj_layout, consts)
    to_adj = jax.vmap(jax.vmap(lambda v: adj_layout.flatten(layout.unflatten(v))))
    hs_adj, g_adj = to_adj(hs), to_adj(g_hs)
    v0 = jax.vmap(adj_layout.flatten)(h0)
    prev = jax.vmap(_shift_in)(v0, hs_adj)
    value_and_jac = jax.vmap(
        jax.vmap(_value_and_jacobian(f, adj_layout, config.adjoint_structure))
    )
    _, jac = value_and_jac(prev, xs)
    # lambda = adjoint of delta = linear_scan(J, r) applied to the cotangent: the
    # reverse recurrence lambda_t = g_t + J_{t+1}^T lambda_{t+1}.
    _, pullback = jax.vjp(
        lambda r: linear.linear_scan(jac, r, axis=1, method=config.method), g_adj
    )
    (lam,) = pullback(g_adj)

    def all_steps(prev, xs, *consts):
        one = lambda v, x: adj_layout.flatten(
            converted(adj_layout.unflatten(v), x, *consts)
        )
        return jax.vmap(jax.vmap(one))(prev, xs)

    _, vjp = jax.vjp(all_steps, prev, xs, *consts)
    g_prev, g_xs, *g_consts = vjp(lam)
    g_h0 = jax.vmap(adj_layout.unflatten)(g_prev[:, 0])
    g_h0 = jax.tree.map(lambda g, h: g.astype(h.dtype), g_h0, h0)
    return tuple(g_consts), g_xs, g_h0, jax.tree.map(jnp.zeros_like, init_hs)


_solve_flat.defvjp(_solve_flat_fwd, _solve_flat_bwd)


def _solve(converted, config, layout, consts, xs, h0, init_hs):
    """Runs the differentiable solve; returns states as pytrees ``[B, T, ...]``."""
    hs, info = _solve_flat(converted, config, layout, tuple(consts), xs, h0, init_hs)
    hs = jax.vmap(jax.vmap(layout.unflatten))(hs)
    hs = jax.tree.map(
        lambda x, d: x.astype(d),
        hs,
        jax.tree.unflatten(layout.treedef, list(layout.dtypes)),
    )
    return hs, info


# --- checks ---------------------------------------------------------------------------


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _report_failure(info: NewtonInfo, config: _Config):
    if config.on_failure is not OnFailure.RAISE:
        return
    message = (
        "newton_scan did not converge within max_iters={max_iters} for {failed} of "
        "{total} sequences (largest residual {worst}); raise max_iters, add damping, "
        "or use on_failure='fallback'."
    )
    if _is_concrete(info.converged):
        failed = int(np.sum(~np.asarray(info.converged)))
        if failed:
            raise NewtonConvergenceError(
                message.format(
                    max_iters=config.max_iters,
                    failed=failed,
                    total=np.size(info.converged),
                    worst=float(np.max(np.asarray(info.residual))),
                )
            )
        return
    checkify.check(
        jnp.all(info.converged),
        message.format(
            max_iters=config.max_iters,
            failed="{failed}",
            total=int(np.size(info.converged)) if info.converged.shape else 1,
            worst="{worst}",
        ),
        failed=jnp.sum(~info.converged),
        worst=jnp.max(info.residual),
    )


def _verify_structure(converted, consts, layout, h0, xs, config):
    """Compares the declared structure's Jacobian with the dense one at the guess."""
    if layout.structure is JacobianStructure.DENSE:
        return
    dense_layout = layout.with_structure(JacobianStructure.DENSE)
    f_dense = _flat_step(converted, dense_layout, consts)
    f_struct = _flat_step(converted, layout, consts)
    v0d = jax.vmap(dense_layout.flatten)(h0)
    guess = _initial_guess(f_dense, dense_layout, config, v0d, xs, None)
    prev = jax.vmap(_shift_in)(v0d, guess)
    _, dense = jax.vmap(
        jax.vmap(_value_and_jacobian(f_dense, dense_layout, JacobianStructure.DENSE))
    )(prev, xs)
    to_struct = jax.vmap(jax.vmap(lambda v: layout.flatten(dense_layout.unflatten(v))))
    _, declared = jax.vmap(
        jax.vmap(_value_and_jacobian(f_struct, layout, layout.structure))
    )(to_struct(prev), xs)
    embedded = _embed(declared, layout, dense_layout)
    error = jnp.max(jnp.abs(dense - embedded))
    scale = jnp.max(jnp.abs(dense))
    bad = error > 1e-4 * scale + 1e-6
    name = layout.structure.value
    message = (
        f"newton_scan: the Jacobian is not {name} as declared: the dense Jacobian "
        f"differs from the {name} one by up to {{error}} (largest entry {{scale}}); "
        "declare jacobian='dense' or fix the cell's jacobian_structure."
    )
    if _is_concrete(bad):
        if bool(bad):
            raise ValueError(message.format(error=float(error), scale=float(scale)))
        return
    checkify.check(~bad, message, error=error, scale=scale)


def _embed(declared, layout: _Layout, dense_layout: _Layout):
    """Writes structured Jacobians ``[B, T, ...]`` into dense ``[B, T, n, n]`` ones."""
    n = dense_layout.zeros().shape[0]
    if layout.structure is JacobianStructure.DIAGONAL:
        return declared[..., :, None] * jnp.eye(n, dtype=declared.dtype)
    # Block: column c of block i maps state (i, c) -> (i, r); flat index of (i, c)
    # in the dense layout follows the block layout's unflatten.
    k = layout.block
    m = n // k
    index = (
        jnp.arange(n).reshape(m, k)
        if not layout.stacked
        else jnp.arange(n).reshape(k, m).T
    )
    rows = jnp.broadcast_to(index[:, :, None], (m, k, k))
    cols = jnp.broadcast_to(index[:, None, :], (m, k, k))
    out = jnp.zeros(declared.shape[:2] + (n, n), declared.dtype)
    return out.at[:, :, rows, cols].set(declared)
