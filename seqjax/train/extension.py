"""Extension points of the trainer: pure functions a strategy plugs into the step.

The trainer runs any task and names no strategy. What a continual-learning strategy
(or a regulariser, or a data-mixing scheme) needs from it is a way to add a loss term,
transform the batch and the gradients, and carry state of its own. An ``Extension``
supplies these as pure functions of an explicit state pytree, in the shape of an
optax ``GradientTransformation``: ``init`` builds the state from the parameters, the
other functions read it and return a new one. The state lives in the train state
beside the model and optimizer (``TrainState.extension``), is sharded over the mesh
by the parameters' rules (a leaf shaped like a parameter is placed like it), donated
with the rest, and saved and restored by every checkpoint, so a run
with an extension resumes exactly like one without.

Inside the jitted train step, for a batch ``x``:

.. math::
   (\\tilde x, s) = \\mathrm{batch}(s, x);\\quad
   \\mathcal{L}(\\theta) = \\mathcal{L}_{task}(\\theta; \\tilde x)
     + \\mathrm{loss}(s, \\theta, \\tilde x);\\quad
   g = \\mathrm{grads}(s, \\nabla_\\theta \\mathcal{L}, \\theta, \\tilde x);\\quad
   \\theta' = \\mathrm{optimizer}(\\theta, g);\\quad
   s' = \\mathrm{update}(s, \\theta, \\theta', g, x)

Every function but ``init`` is optional. When the task also has
``loss_from_outputs(outputs, batch)``, the model runs once per micro-batch:
``ctx.outputs(params, batch)`` called by ``loss`` with the very ``params`` and
``batch`` it received returns the outputs the task loss used.

Host-side work between stretches of training (a Fisher estimate at the end of a
task, say) is a ``Phase`` callback of ``seqjax.train.trainer.train``, which may
replace the extension state through ``Run.with_extension``.

Why the batch transform runs inside the step: replay draws rows from a buffer that
is part of the extension state, so drawing them in the step keeps the buffer on the
devices, sharded like the rest of the state, saved by the checkpoint, and the draw
reproducible bit for bit on resume (the random key is in the state too); a host-side
mix would need a second, separately checkpointed copy of the buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any
"""The model's ``nnx.Param`` variables as a pytree (``nnx.State``)."""
Batch = dict[str, jax.Array]
State = Any
"""An extension's state: a pytree of arrays."""


class StepContext(NamedTuple):
    """The model as pure functions of its parameters, for an extension's use.

    Attributes:
      outputs: ``outputs(params, batch) -> array``: the task's model outputs (e.g.
        logits ``[B, classes]``) with ``params`` in place of the model's own; needs a
        task with an ``outputs(model, batch)`` method.
      task_loss: ``task_loss(params, batch) -> scalar``: the task's mean loss with
        ``params``.
    """

    outputs: Callable[[Params, Batch], jax.Array]
    task_loss: Callable[[Params, Batch], jax.Array]


class Extension(NamedTuple):
    """What a strategy supplies to the trainer (every function pure and jit-safe).

    Attributes:
      init: ``init(params) -> state``: the initial state, from the initial params.
      batch: ``batch(state, batch) -> (batch, state)``: the batch the loss sees
        (e.g. with replayed rows); it must keep every array's shape.
      loss: ``loss(state, params, batch, ctx) -> scalar``: a term added to the
        task's loss and differentiated with it (EWC, SI, LwF).
      grads: ``grads(state, grads, params, batch, ctx) -> grads``: replaces the
        (accumulated) gradient before the optimizer (A-GEM's projection).
      update: ``update(state, old_params, new_params, grads, batch) -> state``: after
        the optimizer; ``batch`` is the step's original batch (SI's path integral,
        reservoir sampling).
      name: for messages.
    """

    init: Callable[[Params], State]
    batch: Callable[[State, Batch], tuple[Batch, State]] | None = None
    loss: Callable[[State, Params, Batch, StepContext], jax.Array] | None = None
    grads: Callable[[State, Any, Params, Batch, StepContext], Any] | None = None
    update: Callable[[State, Params, Params, Any, Batch], State] | None = None
    name: str = "extension"


class TrainState(NamedTuple):
    """The train state of a run with an extension: the model and optimizer
    (``nnx.State``) and the extension's state."""

    model: Any
    extension: State
