"""Flax NNX modules built on ``seqjax.scan``.

Every sequence layer maps ``[batch, time, features]`` to ``[batch, time, features_out]``
in parallel and also runs one step at a time for recurrent inference:

* ``layer(x, segment_ids=None)`` – the parallel form; ``segment_ids`` (``[batch,
  time]`` ints) restarts the state where a packed document starts;
* ``state = layer.init_state(batch_size)`` – the state before the first step;
* ``state, y_t = layer.step(state, x_t)`` – one step, ``x_t: [batch, features]``.

Stepping through a sequence gives the same outputs as the parallel call.
"""

from seqjax.nn.lru import LRU
from seqjax.nn.parallel_rnn import ParallelRNN
from seqjax.nn.pararnn import ParaGRU, ParaGRUCell, ParaLSTM, ParaLSTMCell
from seqjax.nn.rglru import RGLRU, RGLRUState
from seqjax.nn.s4d import S4D
from seqjax.nn.s5 import S5

__all__ = [
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
