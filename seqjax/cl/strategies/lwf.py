"""Learning without Forgetting (LwF): distil the previous model on the new data.

Li & Hoiem 2017, "Learning without Forgetting", in the knowledge-distillation form of
Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network". At the
end of each task the parameters are frozen into a snapshot :math:`\\theta^{old}`;
while later tasks train, the current batch's logits :math:`z = f_\\theta(x)` are
pulled towards the snapshot's :math:`z^{old} = f_{\\theta^{old}}(x)` (no gradient)
on the classes of the finished tasks, :math:`\\mathcal{C}_{old}`, only:

.. math:: \\mathcal{R}(\\theta) = \\alpha T^2 \\frac{\\sum_b w_b\\,
   \\mathrm{KL}\\big(\\mathrm{softmax}(z^{old}_b/T)\\,\\|\\,
   \\mathrm{softmax}(z_b/T)\\big)}{\\max(\\sum_b w_b, 1)}

with both softmaxes over :math:`\\mathcal{C}_{old}` (the other logits set to
:math:`-10^9`), :math:`w_b` the batch weights (0 on padding rows; the divisor is the
task loss's) and :math:`T` the temperature; :math:`T^2` keeps the gradient's scale
independent of :math:`T` (Hinton et al.). KL and the papers' cross-entropy
:math:`-\\sum_c q_c \\log p_c` differ by the entropy of :math:`q`, a constant in
:math:`\\theta`, so the gradients are the same; KL makes the term 0 at
:math:`\\theta = \\theta^{old}`. Before the first task end the term is exactly 0.

Mammoth's ``lwf`` uses ``softmax_temp=2`` and ``alpha=0.5``; our defaults are
``temperature=2`` and ``alpha=1``.

State layout: ``LwFState(snapshot, finished, old_classes)``: the frozen parameters
(a pytree like the params, float32; the initial params until the first task end),
int32 ``[]`` the number of finished tasks, and bool ``[num_classes]`` the classes
(``StreamSpec.task_classes``) of the finished tasks.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config as config_lib
from seqjax.cl import strategy as strategy_lib
from seqjax.train import extension as extension_lib

MASKED_LOGIT = -1e9
"""The logit given to classes outside :math:`\\mathcal{C}_{old}`."""


class LwFState(NamedTuple):
    """LwF's state.

    Attributes:
      snapshot: the params frozen at the last task end (pytree like the params).
      finished: int32 ``[]``, finished tasks.
      old_classes: bool ``[num_classes]``, the classes of the finished tasks.
    """

    snapshot: Any
    finished: jax.Array
    old_classes: jax.Array


def _f32(tree):
    return jax.tree.map(lambda x: jnp.array(x, jnp.float32), tree)


def distillation(
    state: LwFState,
    params,
    batch: extension_lib.Batch,
    ctx: extension_lib.StepContext,
    alpha: float,
    temperature: float,
) -> jax.Array:
    """The LwF term of the module docstring (0 before the first task end).

    Args:
      state: the snapshot, the finished-task count and the old classes.
      params: the current params.
      batch: the batch (``weights`` ``[B]``).
      ctx: ``ctx.outputs(params, batch)`` gives raw logits ``[B, num_classes]``.
      alpha: :math:`\\alpha`.
      temperature: :math:`T`.

    Returns:
      A float32 scalar.
    """
    mask = state.old_classes
    z = ctx.outputs(params, batch).astype(jnp.float32) / temperature
    z_old = jax.lax.stop_gradient(
        ctx.outputs(state.snapshot, batch).astype(jnp.float32) / temperature
    )
    log_p = jax.nn.log_softmax(jnp.where(mask, z, MASKED_LOGIT), axis=-1)
    log_q = jax.nn.log_softmax(jnp.where(mask, z_old, MASKED_LOGIT), axis=-1)
    kl = jnp.sum(jnp.where(mask, jnp.exp(log_q) * (log_q - log_p), 0.0), axis=-1)
    weights = batch["weights"].astype(jnp.float32)
    mean = jnp.sum(weights * kl) / jnp.maximum(jnp.sum(weights), 1.0)
    term = alpha * temperature**2 * mean
    return jnp.where(state.finished > 0, term, 0.0)


def make(
    spec: strategy_lib.StreamSpec, *, alpha: float = 1.0, temperature: float = 2.0
) -> strategy_lib.Strategy:
    """Learning without Forgetting (see the module docstring).

    Args:
      spec: the stream (``task_classes`` and ``num_classes`` give the old-class
        mask).
      alpha: :math:`\\alpha \\ge 0`.
      temperature: :math:`T > 0`.

    Returns:
      ``Strategy("lwf")`` with ``extension.loss`` and ``end_task`` (the snapshot).

    Raises:
      ConfigError: a value out of range, naming ``cl.strategy_options[key]``.

    Example:
      >>> strategy = make(spec, alpha=0.5)
      >>> state = strategy.extension.init(params)
    """
    if not alpha >= 0:
        raise config_lib.ConfigError(
            f"cl.strategy_options['alpha'] must be >= 0, got {alpha!r}"
        )
    if not temperature > 0:
        raise config_lib.ConfigError(
            f"cl.strategy_options['temperature'] must be > 0, got {temperature!r}"
        )
    task_classes = tuple(tuple(classes) for classes in spec.task_classes)
    num_classes = spec.num_classes

    def init(params):
        return LwFState(
            _f32(params),
            jnp.zeros((), jnp.int32),
            jnp.zeros((num_classes,), bool),
        )

    def loss(state, params, batch, ctx):
        return distillation(state, params, batch, ctx, alpha, temperature)

    def end_task(end: strategy_lib.TaskEnd) -> LwFState:
        if not 0 <= end.index < len(task_classes):
            raise ValueError(
                f"lwf: TaskEnd.index must be in [0, {len(task_classes)}), got "
                f"{end.index}"
            )
        old = np.array(end.state.old_classes, bool)
        old[list(task_classes[end.index])] = True
        return LwFState(
            _f32(end.params),
            jnp.asarray(end.state.finished, jnp.int32) + 1,
            jnp.asarray(old),
        )

    extension = extension_lib.Extension(init=init, loss=loss, name="lwf")
    return strategy_lib.Strategy("lwf", extension=extension, end_task=end_task)
