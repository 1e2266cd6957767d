"""The mixer registry: build a sequence mixer from a name and keyword options.

A config says ``mixer="lru"`` and ``mixer_options={"state_size": 64}``; the model
calls ``make_mixer("lru", features, rngs=rngs, state_size=64)``. Built-in names map
to a module path and a class (``LazyMixer``), imported only when first used, so a
mixer whose module is missing (or fails to import) does not break the others. Users
add their own with ``register_mixer``.

Built-in names: ``lru`` (``seqjax.nn.lru.LRU``), ``s4d`` (``S4D``), ``s5`` (``S5``),
``rglru`` (``RGLRU``), ``mamba`` (``Mamba``), ``gla`` (``GatedLinearAttention``),
``lightnet`` (``LightNet``), ``conv`` (``CausalConv1d``), ``paragru`` / ``paralstm``
(``seqjax.nn.pararnn.ParaGRU`` / ``ParaLSTM``, whose ``hidden_features`` option
defaults to ``features`` so they map ``features`` to ``features``). Names are
case-insensitive and ignore ``-`` and ``_`` (``"RG-LRU"`` is ``"rglru"``).

Options are checked against the factory's signature before anything is built: an
unknown option is a ``TypeError`` naming it and listing the valid ones.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from flax import nnx

MixerFactory = Callable[..., nnx.Module]


class LazyMixer:
    """A mixer class named by module path, imported on first use.

    Calling it builds ``Class(features, rngs=rngs, **options)``. With
    ``in_and_hidden=True`` the class takes ``(in_features, hidden_features)``
    positionally (the ParaRNN cells): the factory then exposes a
    ``hidden_features`` option that defaults to ``features``, so the mixer maps
    ``features`` to ``features`` as a residual block needs. Its ``__signature__``
    is the class's, adapted, so options are checked without building anything.

    Args:
      module: dotted module path, e.g. ``"seqjax.nn.lru"``.
      attr: the class (or factory) in it, e.g. ``"LRU"``.
      in_and_hidden: see above.
      name: the registry name, for error messages.
    """

    def __init__(
        self,
        module: str,
        attr: str,
        *,
        in_and_hidden: bool = False,
        name: str | None = None,
    ):
        self.name = name
        self.module = module
        self.attr = attr
        self.in_and_hidden = in_and_hidden

    def __repr__(self) -> str:
        return f"LazyMixer({self.module}:{self.attr})"

    def load(self) -> MixerFactory:
        """Imports the module and returns the class.

        Raises:
          ImportError: the module is missing, fails to import, or lacks ``attr``.
        """
        what = f"mixer {self.name or self.attr!r} ({self.module}:{self.attr})"
        try:
            module = importlib.import_module(self.module)
        except ImportError as err:
            raise ImportError(f"{what} could not be imported: {err}") from err
        try:
            return getattr(module, self.attr)
        except AttributeError as err:
            raise ImportError(
                f"{what}: module {self.module!r} has no attribute {self.attr!r}."
            ) from err

    @property
    def __signature__(self) -> inspect.Signature:
        signature = _signature(self.load())
        if not self.in_and_hidden:
            return signature
        kept = [
            p
            for p in signature.parameters.values()
            if p.name not in ("self", "in_features", "hidden_features")
        ]
        head = [
            inspect.Parameter("features", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter(
                "hidden_features", inspect.Parameter.KEYWORD_ONLY, default=None
            ),
        ]
        return signature.replace(parameters=head + kept)

    def __call__(self, features: int, *, rngs: nnx.Rngs, **options: Any) -> nnx.Module:
        cls = self.load()
        if self.in_and_hidden:
            hidden = options.pop("hidden_features", None)
            return cls(
                features, features if hidden is None else hidden, rngs=rngs, **options
            )
        return cls(features, rngs=rngs, **options)


_REGISTRY: dict[str, MixerFactory] = {
    "lru": LazyMixer("seqjax.nn.lru", "LRU", name="lru"),
    "s4d": LazyMixer("seqjax.nn.s4d", "S4D", name="s4d"),
    "s5": LazyMixer("seqjax.nn.s5", "S5", name="s5"),
    "rglru": LazyMixer("seqjax.nn.rglru", "RGLRU", name="rglru"),
    "mamba": LazyMixer("seqjax.nn.mamba", "Mamba", name="mamba"),
    "gla": LazyMixer("seqjax.nn.gla", "GatedLinearAttention", name="gla"),
    "lightnet": LazyMixer("seqjax.nn.lightnet", "LightNet", name="lightnet"),
    "conv": LazyMixer("seqjax.nn.conv", "CausalConv1d", name="conv"),
    "paragru": LazyMixer(
        "seqjax.nn.pararnn", "ParaGRU", in_and_hidden=True, name="paragru"
    ),
    "paralstm": LazyMixer(
        "seqjax.nn.pararnn", "ParaLSTM", in_and_hidden=True, name="paralstm"
    ),
}

# Arguments every factory receives from ``make_mixer`` itself, never as options.
_RESERVED = ("features", "rngs")


def _key(name: str) -> str:
    """Canonical spelling: case-insensitive, ``-`` and ``_`` ignored."""
    if not isinstance(name, str):
        raise TypeError(f"mixer name must be a str, got {type(name).__name__}.")
    return name.lower().replace("-", "").replace("_", "")


def mixer_names() -> tuple[str, ...]:
    """Every registered mixer name, sorted (including ones whose module is absent)."""
    return tuple(sorted(_REGISTRY))


def mixer_module(name: str) -> str | None:
    """The module a lazily imported mixer lives in, or ``None`` for other factories.

    Raises:
      ValueError: unknown ``name``.
    """
    entry = _entry(name)
    return entry.module if isinstance(entry, LazyMixer) else None


def register_mixer(
    name: str, factory: str | MixerFactory, *, overwrite: bool = False
) -> None:
    """Adds a mixer under ``name``.

    Args:
      name: the config name (case-insensitive; ``-`` and ``_`` are ignored).
      factory: a callable ``factory(features, *, rngs, **options) -> nnx.Module``
        (a module class works), or a ``"package.module:Attribute"`` string imported
        on first use (a ``LazyMixer``).
      overwrite: replace an existing entry instead of raising.

    Raises:
      ValueError: ``name`` is already registered and ``overwrite`` is false, or a
        string ``factory`` is not of the form ``"module:attribute"``.
      TypeError: ``factory`` is neither callable nor a string.

    Example:
      >>> register_mixer("my_conv", "seqjax.nn.conv:CausalConv1d")
      >>> "myconv" in mixer_names()
      True
      >>> unregister_mixer("my_conv")
    """
    key = _key(name)
    if not key:
        raise ValueError("mixer name must not be empty.")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        if not module or not attr:
            raise ValueError(
                f"register_mixer: a string factory must be 'module:attribute', got "
                f"{factory!r}."
            )
    elif not callable(factory):
        raise TypeError(
            f"register_mixer: factory must be callable or a 'module:attribute' "
            f"string, got {type(factory).__name__}."
        )
    if key in _REGISTRY and not overwrite:
        raise ValueError(
            f"mixer {key!r} is already registered; pass overwrite=True to replace it."
        )
    if isinstance(factory, str):
        factory = LazyMixer(module, attr, name=key)
    _REGISTRY[key] = factory


def unregister_mixer(name: str) -> None:
    """Removes ``name`` from the registry.

    Raises:
      ValueError: unknown ``name``.
    """
    _entry(name)
    del _REGISTRY[_key(name)]


def _entry(name: str) -> MixerFactory:
    key = _key(name)
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown mixer {name!r}; valid names: {', '.join(mixer_names())}."
        )
    return _REGISTRY[key]


def get_mixer(name: str) -> MixerFactory:
    """The factory registered under ``name`` (a module class, usually).

    Imports the mixer's module on first use.

    Raises:
      ValueError: unknown ``name``.
      ImportError: the mixer's module is missing or fails to import (the message
        names the mixer and the module).
    """
    entry = _entry(name)
    if isinstance(entry, LazyMixer) and not entry.in_and_hidden:
        return entry.load()
    return entry


def mixer_options(name: str) -> tuple[str, ...] | None:
    """The keyword options the mixer ``name`` accepts, or ``None`` if it takes any.

    ``features`` and ``rngs`` are excluded: ``make_mixer`` passes them itself.

    Raises:
      ValueError: unknown ``name``.
      ImportError: its module cannot be imported.
    """
    return _options(get_mixer(name))


def _signature(factory: MixerFactory) -> inspect.Signature:
    """The constructor's signature for classes (NNX's metaclass hides it)."""
    if isinstance(factory, type):
        return inspect.signature(factory.__init__)
    return inspect.signature(factory)


def _options(factory: MixerFactory) -> tuple[str, ...] | None:
    try:
        signature = _signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: cannot check
        return None
    names = []
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if param.name in _RESERVED or param.name == "self":
            continue
        names.append(param.name)
    return tuple(names)


def make_mixer(
    name: str, features: int, *, rngs: nnx.Rngs, **options: Any
) -> nnx.Module:
    """Builds the mixer registered as ``name``.

    .. math:: \\text{mixer} = \\text{factory}(\\text{features}, \\text{rngs}=\\ldots,
        **\\text{options})

    Args:
      name: a registered name (``mixer_names()``), e.g. ``"lru"``, ``"s5"``,
        ``"mamba"``, ``"paragru"``; case-insensitive, ``-``/``_`` ignored.
      features: the model width (the mixer's input size).
      rngs: random streams for its initialisers.
      **options: the mixer's keyword hyperparameters (``dtype``, ``state_size``...).

    Returns:
      The ``nnx.Module``.

    Raises:
      ValueError: unknown ``name`` (the message lists the valid names).
      TypeError: an option the mixer does not accept (the message names it and
        lists the valid options).
      ImportError: the mixer's module is missing.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = make_mixer("lru", 8, rngs=nnx.Rngs(0), state_size=16)
      >>> layer(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)
    """
    factory = get_mixer(name)
    valid = _options(factory)
    if valid is not None:
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise TypeError(
                f"mixer {_key(name)!r} got unknown option(s) "
                f"{', '.join(repr(u) for u in unknown)}; valid options: "
                f"{', '.join(valid) if valid else '(none)'}."
            )
    return factory(features, rngs=rngs, **options)
