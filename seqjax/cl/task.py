"""The task a continual-learning run trains: sequence classification over a stream.

One ``seqjax.nn.models.SequenceClassifier`` with ``stream.num_classes`` output units
is trained on every task of the stream. The setting decides which units a task's
loss and prediction use:

* task-incremental (``"task"``): the task id is given, so the logits of a row of
  task ``k`` are masked to task ``k``'s classes (a head per task, sharing one output
  layer): :math:`\\ell_c \\leftarrow -10^9` for :math:`c \\notin C_k`;
* class-incremental (``"class"``) and domain-incremental (``"domain"``): all units,
  no task id.

Batches are those of ``seqjax.tasks.classification.batched``: ``inputs``
``[B, T, F]`` float32, ``lengths``, ``targets`` (global labels), ``weights`` and
``task`` ``[B]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.cl import streams as streams_lib
from seqjax.nn import models
from seqjax.tasks import classification, registry

MASKED = -1e9
"""The logit given to a class outside a task's classes (task-incremental)."""


def class_masks(stream: streams_lib.Stream) -> np.ndarray:
    """``bool [num_tasks, num_classes]``: which output units each task uses."""
    masks = np.zeros((len(stream.experiences), stream.num_classes), bool)
    for k, experience in enumerate(stream.experiences):
        masks[k, list(experience.classes)] = True
    return masks


class StreamClassification:
    """Sequence classification on the tasks of ``stream`` (see the module docstring).

    Implements the ``seqjax.tasks.Task`` protocol (its data come from the phases
    that ``seqjax.cl.runner`` gives the trainer) plus ``outputs(model, batch)``,
    the raw logits, for strategies that distil or inspect them, and
    ``loss_from_outputs(logits, batch)``.
    """

    name = "continual"

    def __init__(self, stream: streams_lib.Stream):
        self.stream = stream
        self.masks = class_masks(stream) if stream.setting == "task" else None

    def build_model(self, config, rngs):
        m = config.model
        return models.SequenceClassifier(
            self.stream.num_classes,
            m.features,
            m.depth,
            m.mixer,
            input_features=self.stream.input_features,
            pooling=m.pooling,
            bidirectional=m.bidirectional,
            rngs=rngs,
            **registry.backbone_options(m),
        )

    def datasets(self, config, process_index, process_count):
        raise NotImplementedError(
            "a continual-learning run takes its data from the stream's tasks "
            "(seqjax.cl.runner), not from one dataset"
        )

    def outputs(self, model, batch) -> jax.Array:
        """Raw logits ``[B, num_classes]``."""
        return model(batch["inputs"], lengths=batch["lengths"])

    def masked(self, logits: jax.Array, task: jax.Array) -> jax.Array:
        """The logits a row's loss and prediction use (masked in the task setting)."""
        if self.masks is None:
            return logits
        allowed = jnp.asarray(self.masks)[task]
        return jnp.where(allowed, logits, MASKED)

    def loss_from_outputs(self, logits: jax.Array, batch):
        """The loss and sums of raw ``logits`` (lets the trainer run the model once
        when an extension also needs the outputs)."""
        return classification.classification_sums(
            self.masked(logits, batch["task"]), batch["targets"], batch["weights"]
        )

    def loss(self, model, batch):
        return self.loss_from_outputs(self.outputs(model, batch), batch)

    def summarize(self, sums):
        return classification.summarize_sums(sums)

    def tokens(self, batch):
        real = np.asarray(batch["weights"]) > 0
        return int(np.asarray(batch["lengths"])[real].sum())
