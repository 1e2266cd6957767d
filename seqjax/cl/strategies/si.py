"""Synaptic Intelligence (SI): importance from each parameter's path integral.

Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic Intelligence".
During a task every optimizer step adds its contribution to the loss decrease,
per parameter:

.. math:: \\omega_i \\leftarrow \\omega_i - g_i\\,(\\theta'_i - \\theta_i)

with :math:`\\theta \\to \\theta'` the step's update and :math:`g` the gradient the
optimizer received, i.e. of the TOTAL loss (task loss plus this penalty), as
Mammoth does (implementations differ on whether the penalty's gradient belongs in
:math:`g`). For plain SGD, :math:`\\theta' - \\theta = -\\eta g`, so
:math:`\\omega_i \\mathrel{+}= \\eta g_i^2` (Mammoth's form); with momentum or
Adam the two differ and :math:`-g \\cdot \\Delta\\theta` is the path integral.
At the end of each task

.. math:: \\Omega_i \\leftarrow \\Omega_i + \\frac{\\omega_i}{(\\theta_i -
   \\theta^{prev}_i)^2 + \\xi},\\qquad \\theta^{prev} \\leftarrow \\theta,\\qquad
   \\omega \\leftarrow 0

and the loss gains the surrogate penalty

.. math:: \\mathcal{R}(\\theta) = c \\sum_i \\Omega_i (\\theta_i - \\theta^{prev}_i)^2

(no ½: :math:`c` is the paper's and Mammoth's). :math:`\\theta^{prev}` starts as the
initial parameters, so the first task's :math:`\\Delta` is measured from the
initialisation; :math:`\\Omega = 0` makes the penalty exactly 0 during task 0.

State layout: ``SIState(omega, importance, anchor)``, three pytrees shaped like the
parameters (float32): :math:`\\omega`, :math:`\\Omega` and :math:`\\theta^{prev}`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax import config as config_lib
from seqjax.cl import strategy as strategy_lib
from seqjax.train import extension as extension_lib


class SIState(NamedTuple):
    """SI's state (pytrees shaped like the params).

    Attributes:
      omega: :math:`\\omega`, the running path integral of the current task.
      importance: :math:`\\Omega`, the consolidated importance of past tasks.
      anchor: :math:`\\theta^{prev}`, the params at the last task end (initially the
        initial params).
    """

    omega: Any
    importance: Any
    anchor: Any


def _f32(tree):
    return jax.tree.map(lambda x: jnp.array(x, jnp.float32), tree)


def init_state(params) -> SIState:
    """:math:`\\omega = \\Omega = 0`, :math:`\\theta^{prev} = \\theta_0`."""

    # Distinct arrays (no aliasing), so the trainer may donate every leaf.
    def zeros():
        return jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)

    return SIState(zeros(), zeros(), _f32(params))


def accumulate(state: SIState, old_params, new_params, grads) -> SIState:
    """:math:`\\omega \\leftarrow \\omega - g \\odot (\\theta' - \\theta)`."""
    omega = jax.tree.map(
        lambda w, g, a, b: w - g.astype(jnp.float32) * (b - a).astype(jnp.float32),
        state.omega,
        grads,
        old_params,
        new_params,
    )
    return state._replace(omega=omega)


def consolidate(state: SIState, params, xi: float) -> SIState:
    """Task end: :math:`\\Omega \\mathrel{+}= \\omega / ((\\theta -
    \\theta^{prev})^2 + \\xi)`, :math:`\\theta^{prev} \\leftarrow \\theta`,
    :math:`\\omega \\leftarrow 0`."""
    params = _f32(params)
    importance = jax.tree.map(
        lambda big, w, p, a: big + w / (jnp.square(p - a) + xi),
        state.importance,
        state.omega,
        params,
        state.anchor,
    )
    omega = jax.tree.map(jnp.zeros_like, state.omega)
    return SIState(omega, importance, params)


def penalty(state: SIState, params, c: float) -> jax.Array:
    """:math:`c \\sum_i \\Omega_i (\\theta_i - \\theta^{prev}_i)^2`."""
    terms = jax.tree.map(
        lambda big, p, a: jnp.sum(big * jnp.square(p - a)),
        state.importance,
        params,
        state.anchor,
    )
    return c * sum(jax.tree.leaves(terms))


def make(
    spec: strategy_lib.StreamSpec, *, c: float = 0.1, xi: float = 1e-3
) -> strategy_lib.Strategy:
    """Synaptic Intelligence (see the module docstring).

    Args:
      spec: the stream (unused).
      c: the penalty's strength, :math:`c \\ge 0`.
      xi: the damping :math:`\\xi > 0`.

    Returns:
      ``Strategy("si")`` with ``extension.loss`` (the penalty), ``extension.update``
      (the path integral) and ``end_task`` (consolidation).

    Raises:
      ConfigError: a value out of range, naming ``cl.strategy_options[key]``.

    Example:
      >>> strategy = make(spec, c=0.5)
      >>> state = strategy.extension.init(params)
    """
    del spec
    if not c >= 0:
        raise config_lib.ConfigError(
            f"cl.strategy_options['c'] must be >= 0, got {c!r}"
        )
    if not xi > 0:
        raise config_lib.ConfigError(
            f"cl.strategy_options['xi'] must be > 0, got {xi!r}"
        )

    def loss(state, params, batch, ctx):
        del batch, ctx
        return penalty(state, params, c)

    def update(state, old_params, new_params, grads, batch):
        del batch
        return accumulate(state, old_params, new_params, grads)

    def end_task(end: strategy_lib.TaskEnd) -> SIState:
        return consolidate(end.state, end.params, xi)

    extension = extension_lib.Extension(
        init=init_state, loss=loss, update=update, name="si"
    )
    return strategy_lib.Strategy("si", extension=extension, end_task=end_task)
