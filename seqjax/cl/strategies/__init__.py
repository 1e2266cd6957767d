"""Continual-learning strategies by name: ``make_strategy(name, options, spec)``.

Each strategy is one file with its math and its paper; each builds a
``seqjax.cl.strategy.Strategy`` from the stream's ``StreamSpec`` and keyword
options (``cl.strategy`` and ``cl.strategy_options`` of the config):

==============  =====================================  ==============================
name            what                                   options (default)
==============  =====================================  ==============================
``naive``       fine-tuning, the lower bound           —
``joint``       all tasks' data from the start         —
``cumulative``  tasks ``0..k``'s data at task ``k``    —
``replay``      reservoir experience replay            ``buffer_size`` (500),
                                                       ``batch_share`` (0.5),
                                                       ``seed`` (0)
``ewc``         EWC, separate or online                ``lam`` (100), ``mode``
                                                       ("online"), ``gamma`` (1),
                                                       ``fisher_samples`` (256)
``si``          Synaptic Intelligence                  ``c`` (0.1), ``xi`` (1e-3)
``lwf``         Learning without Forgetting            ``alpha`` (1), ``temperature``
                                                       (2)
``agem``        A-GEM gradient projection              ``buffer_size`` (500),
                                                       ``memory_batch`` (batch size),
                                                       ``seed`` (0)
==============  =====================================  ==============================
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from seqjax import config as config_lib
from seqjax.cl import strategy as strategy_lib
from seqjax.cl.strategies import (
    agem,
    cumulative,
    ewc,
    joint,
    lwf,
    naive,
    replay,
    si,
)

Factory = Callable[..., strategy_lib.Strategy]

STRATEGIES: dict[str, Factory] = {
    "naive": naive.make,
    "joint": joint.make,
    "cumulative": cumulative.make,
    "replay": replay.make,
    "ewc": ewc.make,
    "si": si.make,
    "lwf": lwf.make,
    "agem": agem.make,
}
"""Strategy name -> ``factory(spec, **options) -> Strategy``."""


def strategy_names() -> tuple[str, ...]:
    """The registered strategy names, in registry order."""
    return tuple(STRATEGIES)


def strategy_options(name: str) -> dict[str, Any]:
    """A strategy's options and their defaults.

    Example:
      >>> strategy_options("si")
      {'c': 0.1, 'xi': 0.001}
    """
    factory = STRATEGIES[name]
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _type_ok(value: Any, annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if isinstance(value, bool):
        return annotation is bool
    if annotation is float:
        return isinstance(value, int | float)
    return isinstance(value, annotation)


def make_strategy(
    name: str, options: dict[str, Any], spec: strategy_lib.StreamSpec
) -> strategy_lib.Strategy:
    """Builds the strategy ``name`` with ``options`` for the stream ``spec``.

    Args:
      name: a key of ``STRATEGIES`` (``cl.strategy``).
      options: keyword options of that strategy (``cl.strategy_options``); ints are
        accepted where a float is expected.
      spec: the stream.

    Returns:
      The ``Strategy``.

    Raises:
      ConfigError: an unknown name, an unknown option, a value of the wrong type or
        out of range; one line naming ``cl.strategy`` or
        ``cl.strategy_options['key']``, the value, and what is valid.

    Example:
      >>> strategy = make_strategy("ewc", {"lam": 10.0, "mode": "separate"}, spec)
    """
    if name not in STRATEGIES:
        raise config_lib.ConfigError(
            f"cl.strategy must be one of {list(STRATEGIES)}, got {name!r}"
        )
    if not isinstance(options, dict):
        raise config_lib.ConfigError(
            f"cl.strategy_options must be a dict, got {type(options).__name__} "
            f"{options!r}"
        )
    factory = STRATEGIES[name]
    valid = strategy_options(name)
    hints = typing.get_type_hints(factory)
    converted = {}
    for key, value in options.items():
        if key not in valid:
            raise config_lib.ConfigError(
                f"cl.strategy_options[{key!r}] is not an option of strategy "
                f"{name!r} (valid: {sorted(valid) or 'none'}), got {value!r}"
            )
        annotation = hints[key]
        if not _type_ok(value, annotation):
            expected = getattr(annotation, "__name__", str(annotation))
            raise config_lib.ConfigError(
                f"cl.strategy_options[{key!r}] of strategy {name!r} expects "
                f"{expected}, got {type(value).__name__} {value!r}"
            )
        converted[key] = float(value) if annotation is float else value
    return factory(spec, **converted)
