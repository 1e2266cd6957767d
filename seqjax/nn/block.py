"""Residual blocks, their stack (``Backbone``) and the ``Bidirectional`` wrapper.

A block is pre-norm and residual, with an optional short causal convolution before
the sequence mixer and an optional channel mixer (MLP/GLU):

.. math::
   u = x + \\mathrm{drop}(\\mathrm{mixer}(\\mathrm{conv}(\\mathrm{norm}_1(x)))),
   \\qquad y = u + \\mathrm{drop}(\\mathrm{mlp}(\\mathrm{norm}_2(u)))

Every piece follows the sequence-layer protocol of ``seqjax.nn``: the parallel form
``block(x, *, segment_ids=None, mask=None)`` on ``[batch, time, features]``, and the
recurrent form ``state = block.init_state(batch)``, ``state, y_t = block.step(state,
x_t)``. Stepping equals the parallel form (in evaluation mode: ``step`` never applies
dropout, and a BatchNorm ``step`` uses its running statistics).

Padding. ``mask`` (``[batch, time]`` booleans, true at real tokens) serves two
purposes: BatchNorm statistics count only real positions, and the mask is folded into
the segment labels (``pad_segments``) so that every maximal run of padding is a
segment of its own. The mixers therefore restart their state after padding: with
left padding the real tokens never see the pad tokens, and a ``Bidirectional``
mixer reverses only the real tokens. Outputs at padded positions are meaningless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import mlp as mlp_lib
from seqjax.nn import norms, registry, segments

MixerSpec = str | Callable[..., nnx.Module] | nnx.Module


# --- padding and segment reversal ---------------------------------------------------


def _check_ids(name: str, ids: Any, shape: tuple[int, ...]) -> jax.Array:
    ids = jnp.asarray(ids)
    if ids.shape != shape:
        raise ValueError(f"{name} must be [batch, time] = {shape}, got {ids.shape}.")
    return ids


def pad_segments(
    segment_ids: jax.Array | None, mask: jax.Array | None
) -> jax.Array | None:
    """Folds a padding mask into segment labels: padding becomes its own segment.

    .. math:: s'_t = s_t \\text{ if } m_t \\text{ else } \\min_t s_t - 1

    Real positions keep their label (``0`` when ``segment_ids`` is ``None``); padded
    positions get a label smaller than every real one, so each run of padding starts
    and ends a segment (``segments.segment_starts`` sees the change).

    Args:
      segment_ids: ``[batch, time]`` ints, or ``None``.
      mask: ``[batch, time]`` booleans, true at real tokens, or ``None``.

    Returns:
      ``[batch, time]`` int32 labels, or ``segment_ids`` when ``mask`` is ``None``.

    Raises:
      ValueError: ``mask`` and ``segment_ids`` of different shapes.

    Example:
      >>> pad_segments(None, jnp.array([[True, True, False]]))
      Array([[ 0,  0, -1]], dtype=int32)
    """
    if mask is None:
        return segment_ids
    mask = jnp.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [batch, time], got shape {mask.shape}.")
    if segment_ids is None:
        ids = jnp.zeros(mask.shape, jnp.int32)
    else:
        ids = _check_ids("segment_ids", segment_ids, mask.shape).astype(jnp.int32)
    return jnp.where(mask, ids, jnp.min(ids) - 1)


def segment_reverse_indices(segment_ids: jax.Array) -> jax.Array:
    """Indices that reverse time inside every segment, leaving segments in place.

    .. math:: r_t = \\mathrm{start}(t) + \\mathrm{end}(t) - t

    where ``start(t)``/``end(t)`` are the first and last positions of ``t``'s segment.
    ``take_along_axis(x, r, axis=1)`` reverses each segment; applying it twice is the
    identity (``r`` is an involution).

    Args:
      segment_ids: ``[batch, time]`` ints.

    Returns:
      ``[batch, time]`` int32 indices into the time axis.

    Example:
      >>> segment_reverse_indices(jnp.array([[0, 0, 0, 1, 1]]))
      Array([[2, 1, 0, 4, 3]], dtype=int32)
    """
    starts = segments.segment_starts(segment_ids)
    length = starts.shape[1]
    t = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), starts.shape)
    ends = jnp.concatenate([starts[:, 1:], jnp.ones_like(starts[:, :1])], axis=1)
    start = jax.lax.cummax(jnp.where(starts, t, 0), axis=1)
    end = jax.lax.cummin(jnp.where(ends, t, length - 1), axis=1, reverse=True)
    return start + end - t


def _reverse(x: jax.Array, index: jax.Array | None) -> jax.Array:
    if index is None:
        return jnp.flip(x, axis=1)
    return jnp.take_along_axis(x, index[:, :, None], axis=1)


# --- building sub-layers --------------------------------------------------------------


def _build_mixer(
    mixer: MixerSpec,
    features: int,
    options: dict[str, Any] | None,
    dtype: Any,
    param_dtype: Any,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """A mixer from a registry name or a factory (``dtype``s passed if accepted)."""
    options = dict(options or {})
    if isinstance(mixer, str):
        valid = registry.mixer_options(mixer)
        for key, value in (("dtype", dtype), ("param_dtype", param_dtype)):
            if key not in options and (valid is None or key in valid):
                options[key] = value
        return registry.make_mixer(mixer, features, rngs=rngs, **options)
    if callable(mixer):
        return mixer(features, rngs=rngs, **options)
    raise TypeError(
        "mixer must be a registry name, a factory(features, *, rngs, **options) or "
        f"an nnx.Module, got {type(mixer).__name__}."
    )


_NO_STEP = (
    "Bidirectional mixers see the future, so they have no recurrent step; use a "
    "causal mixer for decoding."
)


class Bidirectional(nnx.Module):
    """A non-causal mixer: a forward mixer plus a mixer run on the reversed sequence.

    .. math:: y = f(x) + R\\,g(R\\,x) \\quad\\text{or}\\quad
        y = W [f(x);\\ R\\,g(R\\,x)] + b

    where ``R`` reverses time. Reversal respects packing and padding: with
    ``segment_ids`` (and/or a padding ``mask``, folded in by ``pad_segments``) ``R``
    reverses each segment in place (``segment_reverse_indices``), and the backward
    mixer restarts its state at every segment start of the reversed sequence, so no
    information crosses a document or reaches real tokens from padding. Without them
    ``R`` flips the whole time axis.

    Output at any position depends on the whole segment, so there is no ``step``:
    ``init_state`` and ``step`` raise ``NotImplementedError``.

    Args:
      features: the model width; the mixers must map ``features`` to ``features``.
      forward: the forward mixer (any protocol mixer).
      backward: the backward mixer (its own parameters).
      combine: ``"sum"`` or ``"concat"`` (concatenation then a ``Linear`` from
        ``2 * features`` to ``features``).
      dtype: compute dtype of the ``concat`` projection.
      param_dtype: parameter dtype.
      rngs: random streams (for the ``concat`` projection).

    Raises:
      ValueError: unknown ``combine``.

    Example:
      >>> from flax import nnx
      >>> from seqjax.nn import registry
      >>> rngs = nnx.Rngs(0)
      >>> fwd, bwd = (registry.make_mixer("lru", 8, rngs=rngs) for _ in range(2))
      >>> layer = Bidirectional(8, fwd, bwd, rngs=rngs)
      >>> layer(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    References:
      Schuster & Paliwal, "Bidirectional Recurrent Neural Networks" (1997); the
      bidirectional SSM layers of "Simplified State Space Layers for Sequence
      Modeling" (Smith et al., 2023).
    """

    def __init__(
        self,
        features: int,
        forward: nnx.Module,
        backward: nnx.Module,
        *,
        combine: str = "sum",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if combine not in ("sum", "concat"):
            raise ValueError(f"combine must be 'sum' or 'concat', got {combine!r}.")
        self.features = features
        self.forward = forward
        self.backward = backward
        self.combine = combine
        self.proj = (
            nnx.Linear(
                2 * features,
                features,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
            if combine == "concat"
            else None
        )

    def __call__(
        self,
        x: jax.Array,
        *,
        segment_ids: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Runs both directions over ``x: [batch, time, features]``.

        Args:
          x: ``[batch, time, features]``.
          segment_ids: optional ``[batch, time]`` packed-document labels.
          mask: optional ``[batch, time]`` booleans, true at real tokens.

        Returns:
          ``[batch, time, features]``.

        Raises:
          ValueError: bad shapes, or mixers whose output is not ``features`` wide.
        """
        x = jnp.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.features:
            raise ValueError(
                f"Bidirectional: x must be [batch, time, {self.features}], got "
                f"shape {x.shape}."
            )
        if segment_ids is not None:
            segment_ids = _check_ids("segment_ids", segment_ids, x.shape[:2])
        ids = pad_segments(segment_ids, mask)
        index = None if ids is None else segment_reverse_indices(ids)
        # ids are constant within a segment, so they are their own reversal.
        y_f = self.forward(x, segment_ids=ids)
        y_b = _reverse(self.backward(_reverse(x, index), segment_ids=ids), index)
        for name, y in (("forward", y_f), ("backward", y_b)):
            if y.shape != x.shape:
                raise ValueError(
                    f"Bidirectional: the {name} mixer returned shape {y.shape}; "
                    f"expected {x.shape}."
                )
        if self.proj is None:
            return y_f + y_b
        return self.proj(jnp.concatenate([y_f, y_b], axis=-1))

    def init_state(self, batch_size: int):
        """Not available: a bidirectional layer cannot run one step at a time."""
        raise NotImplementedError(_NO_STEP)

    def step(self, state, x_t):
        """Not available: a bidirectional layer cannot run one step at a time."""
        raise NotImplementedError(_NO_STEP)


# --- the block ------------------------------------------------------------------------


class Block(nnx.Module):
    """Pre-norm residual block: (conv →) mixer, then channel mixer, each residual.

    .. math::
       u = x + \\mathrm{drop}(\\mathrm{mixer}(\\mathrm{conv}(\\mathrm{norm}_1(x)))),
       \\quad y = u + \\mathrm{drop}(\\mathrm{mlp}(\\mathrm{norm}_2(u)))

    Args:
      features: the model width.
      mixer: a registry name (``"lru"``, ``"s5"``, ``"mamba"``, ...), a factory
        ``factory(features, *, rngs, **options)``, or an ``nnx.Module`` instance.
      mixer_options: keyword options for the mixer (with a name or a factory).
        ``dtype``/``param_dtype`` are passed to named mixers that accept them.
      norm: ``"rmsnorm"``, ``"layernorm"``, ``"batchnorm"`` or ``"none"``.
      mlp: ``"mlp"``, ``"glu"``, ``"swiglu"`` or ``None`` (no channel-mixer
        sub-block).
      mlp_options: keyword options for the channel mixer (``hidden_features``...).
      conv_width: kernel size of a causal depthwise convolution (the registry's
        ``"conv"`` mixer) applied before the mixer; ``None`` or 0: none.
      dropout: dropout rate on both residual branches (active in ``train()`` mode).
      bidirectional: ``None`` (causal), ``"sum"`` or ``"concat"``: wrap the mixer in
        ``Bidirectional`` (needs a name or a factory to build the second mixer).
      dtype: compute dtype; ``param_dtype``: parameter dtype.
      rngs: random streams (``params``; ``dropout`` for dropout).

    Raises:
      ValueError: bad names or rates. TypeError: bad mixer options.

    Example:
      >>> from flax import nnx
      >>> block = Block(8, "lru", mixer_options={"state_size": 16}, rngs=nnx.Rngs(0))
      >>> block(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    References:
      Xiong et al., "On Layer Normalization in the Transformer Architecture" (2020)
      (pre-norm); Gu et al., "Efficiently Modeling Long Sequences with Structured
      State Spaces" (2022) and Gu & Dao, "Mamba: Linear-Time Sequence Modeling with
      Selective State Spaces" (2023) for the mixer-plus-MLP block.
    """

    def __init__(
        self,
        features: int,
        mixer: MixerSpec = "lru",
        *,
        mixer_options: dict[str, Any] | None = None,
        norm: str | None = "rmsnorm",
        mlp: str | None = "mlp",
        mlp_options: dict[str, Any] | None = None,
        conv_width: int | None = None,
        dropout: float = 0.0,
        bidirectional: str | None = None,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        if bidirectional not in (None, "sum", "concat"):
            raise ValueError(
                f"bidirectional must be None, 'sum' or 'concat', got {bidirectional!r}."
            )
        self.features = features
        dt = dict(dtype=dtype, param_dtype=param_dtype)
        self.norm1 = norms.make_norm(norm, features, rngs=rngs, **dt)
        if conv_width:
            self.conv = _build_mixer(
                "conv", features, {"kernel_size": conv_width}, dtype, param_dtype, rngs
            )
        else:
            self.conv = None
        if isinstance(mixer, nnx.Module):
            if mixer_options:
                raise ValueError(
                    "mixer_options apply to a mixer name or factory, not to an "
                    "already built mixer."
                )
            if bidirectional is not None:
                raise ValueError(
                    "bidirectional needs a mixer name or factory (to build the "
                    "backward mixer); wrap built mixers in Bidirectional yourself."
                )
            self.mixer = mixer
        else:
            forward = _build_mixer(
                mixer, features, mixer_options, dtype, param_dtype, rngs
            )
            if bidirectional is None:
                self.mixer = forward
            else:
                backward = _build_mixer(
                    mixer, features, mixer_options, dtype, param_dtype, rngs
                )
                self.mixer = Bidirectional(
                    features, forward, backward, combine=bidirectional, rngs=rngs, **dt
                )
        self.mlp = mlp_lib.make_channel_mixer(
            mlp, features, rngs=rngs, **dt, **(mlp_options or {})
        )
        self.norm2 = (
            norms.make_norm(norm, features, rngs=rngs, **dt)
            if self.mlp is not None
            else None
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def _drop(self, h: jax.Array) -> jax.Array:
        return h if self.dropout is None else self.dropout(h)

    def __call__(
        self,
        x: jax.Array,
        *,
        segment_ids: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Parallel form.

        Args:
          x: ``[batch, time, features]``.
          segment_ids: optional ``[batch, time]`` ints; state restarts at each new
            segment (and the convolution does not see across it).
          mask: optional ``[batch, time]`` booleans, true at real (unpadded) tokens;
            see the module docstring.

        Returns:
          ``[batch, time, features]``.

        Raises:
          ValueError: bad shapes.
        """
        x = jnp.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.features:
            raise ValueError(
                f"Block: x must be [batch, time, {self.features}], got shape {x.shape}."
            )
        if mask is not None:
            mask = _check_ids("mask", mask, x.shape[:2]).astype(bool)
        ids = pad_segments(segment_ids, mask)
        h = self.norm1(x, mask=mask)
        if self.conv is not None:
            h = self.conv(h, segment_ids=ids)
        h = self.mixer(h, segment_ids=ids)
        if h.shape != x.shape:
            raise ValueError(
                f"Block: the mixer returned shape {h.shape}; the residual needs "
                f"{x.shape}."
            )
        x = x + self._drop(h)
        if self.mlp is not None:
            x = x + self._drop(self.mlp(self.norm2(x, mask=mask)))
        return x

    def init_state(self, batch_size: int) -> tuple[Any, Any]:
        """``(conv_state or None, mixer_state)`` before the first step."""
        conv_state = None if self.conv is None else self.conv.init_state(batch_size)
        return (conv_state, self.mixer.init_state(batch_size))

    def step(self, state: tuple[Any, Any], x_t: jax.Array) -> tuple[Any, jax.Array]:
        """One recurrent step (no dropout; BatchNorm uses running statistics).

        Args:
          state: from ``init_state`` or the previous ``step``.
          x_t: ``[batch, features]``.

        Returns:
          ``(state, y_t)`` with ``y_t: [batch, features]``.

        Raises:
          ValueError: ``x_t`` of the wrong shape.
        """
        x_t = jnp.asarray(x_t)
        if x_t.ndim != 2 or x_t.shape[-1] != self.features:
            raise ValueError(
                f"Block.step: x_t must be [batch, {self.features}], got shape "
                f"{x_t.shape}."
            )
        conv_state, mixer_state = state
        h = self.norm1.step(x_t)
        if self.conv is not None:
            conv_state, h = self.conv.step(conv_state, h)
        mixer_state, h = self.mixer.step(mixer_state, h)
        x_t = x_t + h
        if self.mlp is not None:
            x_t = x_t + self.mlp(self.norm2.step(x_t))
        return (conv_state, mixer_state), x_t


class Backbone(nnx.Module):
    """A stack of ``depth`` residual ``Block``s (no final norm: models add it).

    .. math:: y = B_{N} \\circ \\cdots \\circ B_1 (x)

    Args:
      features: the model width.
      depth: number of blocks.
      mixer: one mixer spec for every block (name or factory), or a sequence of
        ``depth`` specs (hybrid stacks, e.g. ``["rglru", "rglru", "gla"]``).
      mixer_options: options for the mixer(s): one dict, or a sequence of ``depth``
        dicts matching a sequence of mixers.
      **block_options: passed to every ``Block`` (``norm``, ``mlp``, ``mlp_options``,
        ``conv_width``, ``dropout``, ``bidirectional``, ``dtype``, ``param_dtype``).
      rngs: random streams.

    Raises:
      ValueError: bad ``depth`` or mismatched per-layer sequences.

    Example:
      >>> from flax import nnx
      >>> net = Backbone(8, 2, "lru", mixer_options={"state_size": 16},
      ...                rngs=nnx.Rngs(0))
      >>> net(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)
    """

    def __init__(
        self,
        features: int,
        depth: int,
        mixer: MixerSpec | Sequence[MixerSpec] = "lru",
        *,
        mixer_options: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        rngs: nnx.Rngs,
        **block_options: Any,
    ):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int, got {depth!r}.")
        mixers = _per_layer("mixer", mixer, depth, (str, nnx.Module))
        if isinstance(mixer, nnx.Module) and depth > 1:
            raise ValueError(
                "a built mixer instance cannot be shared by several blocks; pass a "
                "name, a factory or one instance per block."
            )
        options = _per_layer("mixer_options", mixer_options, depth, (dict, type(None)))
        self.features = features
        self.depth = depth
        self.blocks = nnx.List(
            [
                Block(features, m, mixer_options=o, rngs=rngs, **block_options)
                for m, o in zip(mixers, options, strict=True)
            ]
        )

    def __call__(
        self,
        x: jax.Array,
        *,
        segment_ids: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Runs every block in parallel form over ``x: [batch, time, features]``.

        ``segment_ids`` and ``mask`` are as in ``Block.__call__``.
        """
        for block in self.blocks:
            x = block(x, segment_ids=segment_ids, mask=mask)
        return x

    def init_state(self, batch_size: int) -> tuple[Any, ...]:
        """The tuple of the blocks' states."""
        return tuple(block.init_state(batch_size) for block in self.blocks)

    def step(
        self, state: tuple[Any, ...], x_t: jax.Array
    ) -> tuple[tuple[Any, ...], jax.Array]:
        """One step through every block: ``x_t: [batch, features]``."""
        if len(state) != len(self.blocks):
            raise ValueError(
                f"Backbone.step: state has {len(state)} entries for "
                f"{len(self.blocks)} blocks; use init_state."
            )
        new_state = []
        for block, s in zip(self.blocks, state, strict=True):
            s, x_t = block.step(s, x_t)
            new_state.append(s)
        return tuple(new_state), x_t


def _per_layer(name: str, value: Any, depth: int, single: tuple[type, ...]) -> list:
    """``value`` repeated ``depth`` times, or a sequence of ``depth`` values checked."""
    if isinstance(value, single) or callable(value):
        return [value] * depth
    if isinstance(value, Sequence):
        if len(value) != depth:
            raise ValueError(
                f"{name}: a sequence needs one entry per block ({depth}), got "
                f"{len(value)}."
            )
        return list(value)
    raise TypeError(f"{name}: unsupported value of type {type(value).__name__}.")
