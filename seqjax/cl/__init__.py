"""Continual learning on the trainer: task streams (``streams``), strategies as pure
functions with explicit state (``strategy``, ``strategies``), the stream
classification task (``task``), the accuracy matrix and its metrics (``metrics``,
``report``), and ``run``, which trains a model on a stream with a strategy
(``runner``; the ``seqjax cl`` command)."""

from seqjax.cl.metrics import (
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summary,
)
from seqjax.cl.runner import restore, run
from seqjax.cl.strategies import make_strategy, strategy_names
from seqjax.cl.strategy import Strategy, StreamSpec, TaskEnd
from seqjax.cl.streams import STREAMS, Experience, Stream, make_stream

__all__ = [
    "STREAMS",
    "Experience",
    "Strategy",
    "Stream",
    "StreamSpec",
    "TaskEnd",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "make_stream",
    "make_strategy",
    "restore",
    "run",
    "strategy_names",
    "summary",
]
