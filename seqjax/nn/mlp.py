"""Channel mixers: the position-wise MLP and gated linear units (GLU, SwiGLU).

They act on the last axis of ``[..., features]`` inputs, one position at a time, so
the same call serves the parallel form ``[batch, time, features]`` and one decoding
step ``[batch, features]`` (``step`` is provided for symmetry with the sequence
layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}


def get_activation(fn: str | Callable[[jax.Array], jax.Array]) -> Callable:
    """Returns the activation named ``fn`` (see ``ACTIVATIONS``) or ``fn`` itself.

    Raises:
      ValueError: an unknown name.
    """
    if callable(fn):
        return fn
    if fn not in ACTIVATIONS:
        raise ValueError(
            f"activation must be a callable or one of {sorted(ACTIVATIONS)}, "
            f"got {fn!r}."
        )
    return ACTIVATIONS[fn]


def _check_input(name: str, x: jax.Array, features: int) -> None:
    if x.ndim < 1 or x.shape[-1] != features:
        raise ValueError(
            f"{name}: expected inputs [..., {features}], got shape {x.shape}."
        )


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


class MLP(nnx.Module):
    """Two-layer position-wise MLP.

    .. math:: y = W_2\\,\\phi(W_1 x + b_1) + b_2

    Args:
      features: input size.
      hidden_features: hidden size; default ``4 * features``.
      out_features: output size; default ``features``.
      activation: ``"gelu"`` (default, exact), ``"gelu_tanh"``, ``"relu"``,
        ``"silu"``, ... or a callable.
      use_bias: learn ``b_1`` and ``b_2``.
      dtype: compute dtype; ``param_dtype`` stores the weights.
      rngs: random streams for the initialisers.

    Example:
      >>> mlp = MLP(8, rngs=nnx.Rngs(0))
      >>> mlp(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    References:
      Vaswani et al., "Attention Is All You Need" (2017) (the position-wise
      feed-forward layer); Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)"
      (2016).
    """

    def __init__(
        self,
        features: int,
        *,
        hidden_features: int | None = None,
        out_features: int | None = None,
        activation: str | Callable = "gelu",
        use_bias: bool = True,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.features = _positive("features", features)
        hidden = _positive(
            "hidden_features",
            4 * features if hidden_features is None else hidden_features,
        )
        out = _positive(
            "out_features", features if out_features is None else out_features
        )
        self.activation = get_activation(activation)
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.up = nnx.Linear(features, hidden, **kw)
        self.down = nnx.Linear(hidden, out, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``x: [..., features]`` to ``[..., out_features]``.

        Raises:
          ValueError: the last axis is not ``features``.
        """
        _check_input("MLP", x, self.features)
        return self.down(self.activation(self.up(x)))

    def step(self, x_t: jax.Array) -> jax.Array:
        """The same map on one time step ``[batch, features]``."""
        return self(x_t)


class GLU(nnx.Module):
    """Gated linear unit channel mixer.

    .. math:: y = W_o\\,\\big(\\phi(W_g x + b_g) \\odot (W_v x + b_v)\\big) + b_o

    With ``activation="sigmoid"`` this is the GLU of Dauphin et al.; ``"silu"`` gives
    SwiGLU, ``"gelu"`` GeGLU. With ``use_out_proj=False`` the output projection is
    dropped (``y = \\phi(W_g x) \\odot W_v x``, ``hidden_features`` must equal
    ``out_features``), the lighter form used after the mixer in some LRA models.

    Args:
      features: input size.
      hidden_features: size of the gated hidden layer; default ``features``.
      out_features: output size; default ``features``.
      activation: gate nonlinearity name or callable; default ``"sigmoid"``.
      use_bias: learn the biases.
      use_out_proj: apply ``W_o``.
      dtype: compute dtype; ``param_dtype`` stores the weights.
      rngs: random streams for the initialisers.

    Raises:
      ValueError: sizes that do not fit (``use_out_proj=False`` with
        ``hidden_features != out_features``).

    Example:
      >>> GLU(8, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    References:
      Dauphin et al., "Language Modeling with Gated Convolutional Networks" (2017);
      Shazeer, "GLU Variants Improve Transformer" (2020).
    """

    def __init__(
        self,
        features: int,
        *,
        hidden_features: int | None = None,
        out_features: int | None = None,
        activation: str | Callable = "sigmoid",
        use_bias: bool = True,
        use_out_proj: bool = True,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.features = _positive("features", features)
        hidden = _positive(
            "hidden_features",
            self._default_hidden(features)
            if hidden_features is None
            else hidden_features,
        )
        out = _positive(
            "out_features", features if out_features is None else out_features
        )
        if not use_out_proj and hidden != out:
            raise ValueError(
                "GLU: use_out_proj=False needs hidden_features == out_features, got "
                f"hidden_features={hidden}, out_features={out}."
            )
        self.activation = get_activation(activation)
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate = nnx.Linear(features, hidden, **kw)
        self.value = nnx.Linear(features, hidden, **kw)
        self.out = nnx.Linear(hidden, out, **kw) if use_out_proj else None

    @staticmethod
    def _default_hidden(features: int) -> int:
        return features

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``x: [..., features]`` to ``[..., out_features]``.

        Raises:
          ValueError: the last axis is not ``features``.
        """
        _check_input(type(self).__name__, x, self.features)
        h = self.activation(self.gate(x)) * self.value(x)
        return h if self.out is None else self.out(h)

    def step(self, x_t: jax.Array) -> jax.Array:
        """The same map on one time step ``[batch, features]``."""
        return self(x_t)


class SwiGLU(GLU):
    """GLU with a SiLU (swish) gate, the LLaMA-style feed-forward layer.

    .. math:: y = W_o\\,\\big(\\mathrm{SiLU}(W_g x) \\odot W_v x\\big)

    Same arguments as ``GLU`` with ``activation="silu"``; the default hidden size is
    ``8/3 * features`` rounded up to a multiple of 8 (about the parameter count of a
    ``4 * features`` MLP).

    Example:
      >>> SwiGLU(12, rngs=nnx.Rngs(0)).gate.out_features
      32

    References:
      Shazeer, "GLU Variants Improve Transformer" (2020).
    """

    def __init__(self, features: int, *, activation: str | Callable = "silu", **kw):
        super().__init__(features, activation=activation, **kw)

    @staticmethod
    def _default_hidden(features: int) -> int:
        return 8 * math.ceil(8 * features / 3 / 8)


CHANNEL_MIXERS = {"mlp": MLP, "glu": GLU, "swiglu": SwiGLU}


def make_channel_mixer(
    kind: str | None, features: int, *, rngs: nnx.Rngs, **options: Any
) -> nnx.Module | None:
    """Builds ``"mlp"``, ``"glu"`` or ``"swiglu"`` by name; ``None``/``"none"``: none.

    Args:
      kind: the channel mixer's name.
      features: its input (and default output) size.
      rngs: random streams.
      **options: constructor options (``hidden_features``, ``activation``, ...).

    Returns:
      The module, or ``None``.

    Raises:
      ValueError: unknown ``kind``.
    """
    if kind is None or kind == "none":
        return None
    if kind not in CHANNEL_MIXERS:
        raise ValueError(
            f"mlp must be one of {sorted(CHANNEL_MIXERS)} or None, got {kind!r}."
        )
    return CHANNEL_MIXERS[kind](features, rngs=rngs, **options)
