"""Flax NNX modules built on ``seqjax.scan``.

Every sequence layer maps ``[batch, time, features]`` to ``[batch, time, features_out]``
in parallel and also runs one step at a time for recurrent inference:

* ``layer(x, segment_ids=None)`` – the parallel form; ``segment_ids`` (``[batch,
  time]`` ints) restarts the state where a packed document starts;
* ``state = layer.init_state(batch_size)`` – the state before the first step;
* ``state, y_t = layer.step(state, x_t)`` – one step, ``x_t: [batch, features]``.

Stepping through a sequence gives the same outputs as the parallel call.

The chunked kernels behind the matrix-state mixers are pure functions in their own
modules: ``seqjax.nn.selective_scan.selective_scan`` (Mamba) and
``seqjax.nn.chunked_gla.chunked_gla`` (GLA, LightNet).
"""

from seqjax.nn.block import Backbone, Bidirectional, Block
from seqjax.nn.conv import CausalConv1d
from seqjax.nn.gla import GatedLinearAttention
from seqjax.nn.lightnet import LightNet
from seqjax.nn.lru import LRU
from seqjax.nn.mamba import Mamba
from seqjax.nn.mlp import GLU, MLP, SwiGLU
from seqjax.nn.models import (
    DualEncoder,
    LanguageModel,
    SequenceClassifier,
    SequenceEncoder,
)
from seqjax.nn.norms import BatchNorm, LayerNorm, RMSNorm
from seqjax.nn.parallel_rnn import ParallelRNN
from seqjax.nn.pararnn import ParaGRU, ParaGRUCell, ParaLSTM, ParaLSTMCell
from seqjax.nn.registry import make_mixer, mixer_names, register_mixer
from seqjax.nn.rglru import RGLRU, RGLRUState
from seqjax.nn.s4d import S4D
from seqjax.nn.s5 import S5

__all__ = [
    "Backbone",
    "BatchNorm",
    "Bidirectional",
    "Block",
    "DualEncoder",
    "GLU",
    "LanguageModel",
    "LayerNorm",
    "MLP",
    "RMSNorm",
    "SequenceClassifier",
    "SequenceEncoder",
    "SwiGLU",
    "make_mixer",
    "mixer_names",
    "register_mixer",
    "CausalConv1d",
    "GatedLinearAttention",
    "LightNet",
    "Mamba",
    "LRU",
    "RGLRU",
    "RGLRUState",
    "S4D",
    "S5",
    "ParaGRU",
    "ParaGRUCell",
    "ParaLSTM",
    "ParaLSTMCell",
    "ParallelRNN",
]
