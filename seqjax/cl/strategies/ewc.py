"""Elastic Weight Consolidation (EWC), separate and online.

A quadratic penalty holds each parameter near its value at the end of earlier tasks,
in proportion to its importance there, the diagonal of the Fisher information:

* ``mode="separate"`` (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting
  in neural networks"): one Fisher :math:`F_t` and one anchor :math:`\\theta^*_t`
  per finished task,

  .. math:: \\mathcal{R}(\\theta) = \\frac{\\lambda}{2} \\sum_{t<k} \\sum_i F_{t,i}
     (\\theta_i - \\theta^*_{t,i})^2

* ``mode="online"`` (Schwarz et al. 2018, "Progress & Compress: A scalable framework
  for continual learning"): one running Fisher and the last anchor,

  .. math:: \\mathcal{R}(\\theta) = \\frac{\\lambda}{2} \\sum_i \\tilde F_i
     (\\theta_i - \\theta^*_i)^2,\\qquad \\tilde F \\leftarrow \\gamma \\tilde F +
     F_{new},\\quad \\theta^* \\leftarrow \\theta \\text{ at each task end.}

The Fisher is the **empirical Fisher, per-example, with ½ in the penalty**: at the
end of a task, over its first ``N = fisher_samples`` real training examples,

.. math:: F_i = \\frac{1}{N} \\sum_{n=1}^{N} \\Big(\\frac{\\partial \\log
   p_\\theta(y_n \\mid x_n)}{\\partial \\theta_i}\\Big)^2

with :math:`y_n` the TRUE label and :math:`p_\\theta` the task's own objective
(``StepContext.task_loss`` on a one-row batch, so the task-incremental mask applies),
from per-example gradients (``jax.vmap(jax.grad(...))``), not from the squared
gradient of a batch mean. Mammoth and Avalanche write the penalty without the ½
(:math:`\\lambda \\sum_i F_i (\\theta_i - \\theta^*_i)^2`), so their ``λ`` equals
our ``λ/2``.

State layout (pytrees shaped like the parameters, ``nnx.State`` of ``nnx.Param``):

* online: ``OnlineEWCState(fisher, anchor)``: :math:`\\tilde F` and
  :math:`\\theta^*` (zeros and the initial params before the first task end, so the
  penalty is exactly 0 then);
* separate: ``SeparateEWCState(fisher, anchor, filled)``: every leaf with a leading
  task axis ``[num_tasks, ...]`` and ``filled`` bool ``[num_tasks]``, the tasks
  whose slot holds a Fisher (memory: ``2 * num_tasks`` copies of the parameters).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config as config_lib
from seqjax.cl import strategy as strategy_lib
from seqjax.train import extension as extension_lib

MODES = ("separate", "online")
_CHUNK = 32  # examples per vmapped per-example-gradient call


class OnlineEWCState(NamedTuple):
    """Online EWC: the running Fisher :math:`\\tilde F` and the anchor
    :math:`\\theta^*` (pytrees shaped like the params)."""

    fisher: Any
    anchor: Any


class SeparateEWCState(NamedTuple):
    """Separate EWC: per task a Fisher and an anchor (leaves ``[num_tasks, ...]``)
    and ``filled`` (bool ``[num_tasks]``)."""

    fisher: Any
    anchor: Any
    filled: jax.Array


def _row_nll(ctx: extension_lib.StepContext, params, row: dict) -> jax.Array:
    """:math:`-\\log p(y|x)` of one row under the task's objective (weight 1)."""
    one = {name: value[None] for name, value in row.items()}
    one["weights"] = jnp.ones((1,), jnp.float32)
    return ctx.task_loss(params, one)


def _squared_grad_sum(ctx, params, rows, valid):
    """:math:`\\sum_n v_n (\\partial_\\theta \\log p(y_n|x_n))^2` over a chunk."""
    grads = jax.vmap(jax.grad(functools.partial(_row_nll, ctx)), in_axes=(None, 0))(
        params, rows
    )
    mask = valid.astype(jnp.float32)
    return jax.tree.map(
        lambda g: jnp.tensordot(mask, jnp.square(g.astype(jnp.float32)), axes=1),
        grads,
    )


def _first_real_rows(
    batches: Iterable[dict[str, Any]], limit: int
) -> dict[str, np.ndarray]:
    """The first ``limit`` rows with ``weights > 0``, stacked (host side)."""
    parts: dict[str, list[np.ndarray]] = {}
    count = 0
    for batch in batches:
        real = np.asarray(batch["weights"]) > 0
        take = np.flatnonzero(real)[: limit - count]
        for name, value in batch.items():
            parts.setdefault(name, []).append(np.asarray(value)[take])
        count += len(take)
        if count >= limit:
            break
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def empirical_fisher(
    ctx: extension_lib.StepContext,
    params,
    batches: Iterable[dict[str, Any]],
    num_samples: int,
    chunk: int = _CHUNK,
):
    """Diagonal empirical Fisher from per-example gradients of the true label.

    .. math:: F_i = \\frac{1}{N} \\sum_{n=1}^{N}
       \\big(\\partial_{\\theta_i} \\log p_\\theta(y_n \\mid x_n)\\big)^2

    over the first ``N = min(num_samples, real rows)`` real rows of ``batches``.
    Per-example gradients are taken ``chunk`` rows at a time with
    ``jax.vmap(jax.grad(...))`` in one jitted function (the last chunk is padded
    and masked, so it compiles once per ``ctx``).

    Args:
      ctx: the model as pure functions; ``ctx.task_loss`` gives ``-log p(y|x)`` of
        a one-row batch with weight 1.
      params: the parameters (pytree).
      batches: dicts of ``[B, ...]`` arrays with ``weights`` (0 = padding).
      num_samples: the most examples used.
      chunk: examples per vmapped call.

    Returns:
      A pytree like ``params`` (float32); zeros if there is no real row.
    """
    rows = _first_real_rows(batches, num_samples)
    total = len(rows["weights"]) if rows else 0
    fisher = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    if total == 0:
        return fisher
    chunk = min(chunk, total)
    # Jitted per call (one compile per task end): no global cache holding ``ctx``.
    squared_grad_sum = jax.jit(functools.partial(_squared_grad_sum, ctx))
    for start in range(0, total, chunk):
        part = {name: value[start : start + chunk] for name, value in rows.items()}
        used = len(part["weights"])
        if used < chunk:  # pad with copies of the first row, masked out
            part = {
                name: np.concatenate([value, np.repeat(value[:1], chunk - used, 0)])
                for name, value in part.items()
            }
        valid = np.arange(chunk) < used
        sums = squared_grad_sum(params, part, valid)
        fisher = jax.tree.map(jnp.add, fisher, sums)
    return jax.tree.map(lambda f: f / total, fisher)


def online_penalty(state: OnlineEWCState, params, lam: float) -> jax.Array:
    """:math:`\\frac{\\lambda}{2} \\sum_i \\tilde F_i (\\theta_i - \\theta^*_i)^2`."""
    terms = jax.tree.map(
        lambda f, p, a: jnp.sum(f * jnp.square(p - a)),
        state.fisher,
        params,
        state.anchor,
    )
    return 0.5 * lam * sum(jax.tree.leaves(terms))


def separate_penalty(state: SeparateEWCState, params, lam: float) -> jax.Array:
    """:math:`\\frac{\\lambda}{2} \\sum_{t \\text{ filled}} \\sum_i F_{t,i}
    (\\theta_i - \\theta^*_{t,i})^2`."""

    def leaf(f, p, a):
        mask = state.filled.reshape((-1,) + (1,) * p.ndim)
        return jnp.sum(jnp.where(mask, f * jnp.square(p[None] - a), 0.0))

    terms = jax.tree.map(leaf, state.fisher, params, state.anchor)
    return 0.5 * lam * sum(jax.tree.leaves(terms))


def _copy(params):
    return jax.tree.map(lambda p: jnp.array(p, jnp.float32), params)


def make(
    spec: strategy_lib.StreamSpec,
    *,
    lam: float = 100.0,
    mode: str = "online",
    gamma: float = 1.0,
    fisher_samples: int = 256,
) -> strategy_lib.Strategy:
    """EWC (see the module docstring for the penalty and the Fisher).

    Args:
      spec: the stream (``num_tasks`` sizes the separate mode's task axis).
      lam: :math:`\\lambda \\ge 0`, with the ½ kept in the penalty.
      mode: ``"separate"`` (one Fisher per task) or ``"online"`` (one decayed
        Fisher).
      gamma: online decay :math:`\\gamma \\in [0, 1]`; only for ``mode="online"``.
      fisher_samples: real training examples of each task used for its Fisher.

    Returns:
      ``Strategy("ewc")`` with ``extension.loss`` (the penalty) and ``end_task``
      (Fisher and anchor).

    Raises:
      ConfigError: a value out of range, naming ``cl.strategy_options[key]``.

    Example:
      >>> strategy = make(spec, lam=10.0, mode="separate")
      >>> state = strategy.extension.init(params)
    """
    key = "cl.strategy_options"
    if not lam >= 0:
        raise config_lib.ConfigError(f"{key}['lam'] must be >= 0, got {lam!r}")
    if mode not in MODES:
        raise config_lib.ConfigError(
            f"{key}['mode'] must be one of {MODES}, got {mode!r}"
        )
    if not 0.0 <= gamma <= 1.0:
        raise config_lib.ConfigError(f"{key}['gamma'] must be in [0, 1], got {gamma!r}")
    if mode == "separate" and gamma != 1.0:
        raise config_lib.ConfigError(
            f"{key}['gamma'] applies to mode='online' only, got {gamma!r} with "
            "mode='separate'"
        )
    if not fisher_samples >= 1:
        raise config_lib.ConfigError(
            f"{key}['fisher_samples'] must be >= 1, got {fisher_samples!r}"
        )
    num_tasks = spec.num_tasks

    def fisher_of(end: strategy_lib.TaskEnd):
        return empirical_fisher(end.ctx, end.params, end.batches(), fisher_samples)

    if mode == "online":

        def init(params):
            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            return OnlineEWCState(zeros, _copy(params))

        def loss(state, params, batch, ctx):
            del batch, ctx
            return online_penalty(state, params, lam)

        def end_task(end: strategy_lib.TaskEnd) -> OnlineEWCState:
            new = fisher_of(end)
            fisher = jax.tree.map(lambda f, n: gamma * f + n, end.state.fisher, new)
            return OnlineEWCState(fisher, _copy(end.params))

    else:

        def init(params):
            def stacked(p):
                return jnp.zeros((num_tasks, *p.shape), jnp.float32)

            return SeparateEWCState(
                jax.tree.map(stacked, params),
                jax.tree.map(stacked, params),
                jnp.zeros((num_tasks,), bool),
            )

        def loss(state, params, batch, ctx):
            del batch, ctx
            return separate_penalty(state, params, lam)

        def end_task(end: strategy_lib.TaskEnd) -> SeparateEWCState:
            if not 0 <= end.index < num_tasks:
                raise ValueError(
                    f"ewc: TaskEnd.index must be in [0, {num_tasks}), got {end.index}"
                )
            new = fisher_of(end)
            state = end.state
            k = end.index
            return SeparateEWCState(
                jax.tree.map(
                    lambda f, n: jnp.asarray(f).at[k].set(n), state.fisher, new
                ),
                jax.tree.map(
                    lambda a, p: jnp.asarray(a).at[k].set(jnp.asarray(p, a.dtype)),
                    state.anchor,
                    end.params,
                ),
                jnp.asarray(state.filled).at[k].set(True),
            )

    extension = extension_lib.Extension(init=init, loss=loss, name=f"ewc-{mode}")
    return strategy_lib.Strategy("ewc", extension=extension, end_task=end_task)
