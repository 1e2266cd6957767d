"""Normalisation layers for residual blocks: RMSNorm, LayerNorm, BatchNorm, Identity.

All four share one interface so a block can swap them by name (``make_norm``):

* ``norm(x, *, mask=None)`` on ``[..., features]`` (the parallel form; ``mask`` is
  ``x.shape[:-1]`` booleans marking real, unpadded positions and matters only for
  BatchNorm's statistics);
* ``norm.step(x_t)`` on one time step ``[batch, features]`` (the recurrent form).

RMSNorm and LayerNorm are Flax's ``nnx.RMSNorm``/``nnx.LayerNorm`` (statistics over
the feature axis, computed in at least float32) with the ``mask`` keyword and ``step``
added: they act on each position alone, so ``step`` is the same function. BatchNorm
normalises each feature by statistics over batch *and* time, as in the Long Range
Arena models of S4/S5/LRU; a time step cannot see the rest of its sequence, so its
``step`` always uses the running statistics (as in evaluation mode).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

NORM_NAMES = ("rmsnorm", "layernorm", "batchnorm", "none")


def _check_features(name: str, x: jax.Array, features: int) -> None:
    if x.ndim < 1 or x.shape[-1] != features:
        raise ValueError(
            f"{name}: expected inputs with {features} features on the last axis, "
            f"got shape {x.shape}."
        )


class RMSNorm(nnx.RMSNorm):
    """Root-mean-square normalisation over the feature axis, with a learned scale.

    .. math:: y = \\frac{x}{\\sqrt{\\mathrm{mean}(x^2) + \\epsilon}} \\odot g

    A thin subclass of ``nnx.RMSNorm`` (same parameters and numerics, statistics in
    at least float32) that adds the block interface: a ``mask`` keyword (ignored:
    every position is normalised by itself) and ``step``.

    Args:
      num_features: ``features``, the size of the last axis.
      epsilon: added to the mean square.
      dtype: compute and output dtype; ``param_dtype`` holds the scale.
      rngs: unused, kept for a uniform constructor.

    Example:
      >>> norm = RMSNorm(8, rngs=nnx.Rngs(0))
      >>> norm(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    References:
      Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019).
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            num_features,
            epsilon=epsilon,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        """Normalises ``x: [..., features]``; ``mask`` is accepted and ignored."""
        del mask
        _check_features("RMSNorm", x, self.num_features)
        return super().__call__(x)

    def step(self, x_t: jax.Array) -> jax.Array:
        """Normalises one time step ``x_t: [batch, features]``."""
        return self(x_t)


class LayerNorm(nnx.LayerNorm):
    """Layer normalisation over the feature axis, with learned scale and bias.

    .. math:: y = \\frac{x - \\mathrm{mean}(x)}{\\sqrt{\\mathrm{var}(x) + \\epsilon}}
        \\odot g + b

    A thin subclass of ``nnx.LayerNorm`` that adds the block interface (``mask``
    keyword, ignored; ``step``).

    Args:
      num_features: ``features``, the size of the last axis.
      epsilon: added to the variance.
      use_bias: learn the bias ``b``.
      dtype: compute and output dtype; ``param_dtype`` holds the parameters.
      rngs: unused, kept for a uniform constructor.

    Example:
      >>> LayerNorm(8, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    References:
      Ba, Kiros & Hinton, "Layer Normalization" (2016).
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        use_bias: bool = True,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            num_features,
            epsilon=epsilon,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        """Normalises ``x: [..., features]``; ``mask`` is accepted and ignored."""
        del mask
        _check_features("LayerNorm", x, self.num_features)
        return super().__call__(x)

    def step(self, x_t: jax.Array) -> jax.Array:
        """Normalises one time step ``x_t: [batch, features]``."""
        return self(x_t)


class BatchNorm(nnx.BatchNorm):
    """Batch normalisation of each feature over batch and time, masked by padding.

    .. math:: y = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} \\odot g + b,
        \\quad \\mu, \\sigma^2 \\text{ over every real (batch, time) position}

    In training mode (``model.train()``, or ``use_running_average=False``) the
    statistics come from the batch, over every axis but the last, counting only
    positions where ``mask`` is true, and the running averages are updated:
    ``running = momentum * running + (1 - momentum) * batch_stat``. In evaluation
    mode (``model.eval()``) the running averages are used and nothing is updated.
    ``step`` always uses the running averages, whatever the mode: one time step
    cannot see the statistics of its whole sequence.

    A thin subclass of ``nnx.BatchNorm`` with ``axis=-1``, the padding ``mask``
    given per position (``x.shape[:-1]``) and ``step`` added. The default momentum
    0.9 is the one the S5 reference code uses (PyTorch's default, 0.1 in its
    convention); Flax's own default is 0.99.

    Args:
      num_features: ``features``, the size of the last axis.
      momentum: decay of the running averages.
      epsilon: added to the variance.
      use_running_average: initial mode; ``model.train()``/``model.eval()`` set it.
      dtype: compute and output dtype (statistics are at least float32).
      param_dtype: dtype of scale, bias and running statistics.
      rngs: unused, kept for a uniform constructor.

    Example:
      >>> bn = BatchNorm(8, rngs=nnx.Rngs(0))
      >>> y = bn(jnp.ones((2, 5, 8)), mask=jnp.ones((2, 5), bool))  # updates stats
      >>> bn.eval(); y = bn(jnp.ones((2, 5, 8)))  # running statistics

    References:
      Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
      Reducing Internal Covariate Shift" (2015); used in the Long Range Arena models
      of "Simplified State Space Layers for Sequence Modeling" (Smith et al., 2023)
      and "Resurrecting Recurrent Neural Networks for Long Sequences" (Orvieto et
      al., 2023).
    """

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        use_running_average: bool = False,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1), got {momentum}.")
        super().__init__(
            num_features,
            use_running_average=use_running_average,
            axis=-1,
            momentum=momentum,
            epsilon=epsilon,
            dtype=dtype,
            param_dtype=param_dtype,
            use_fast_variance=False,
            rngs=rngs,
        )

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        use_running_average: bool | None = None,
    ) -> jax.Array:
        """Normalises ``x: [..., features]``.

        Args:
          x: inputs ``[batch, time, features]`` (any leading axes).
          mask: ``x.shape[:-1]`` booleans, true at real positions; only those enter
            the batch statistics. ``None``: every position is real.
          use_running_average: overrides the module's mode for this call.

        Returns:
          The normalised ``x``, of the compute dtype.

        Raises:
          ValueError: the feature size or the mask's shape does not fit.
        """
        _check_features("BatchNorm", x, self.num_features)
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.shape != x.shape[:-1]:
                raise ValueError(
                    f"BatchNorm: mask must have shape {x.shape[:-1]} (x without its "
                    f"feature axis), got {mask.shape}."
                )
            mask = jnp.broadcast_to(mask.astype(bool)[..., None], x.shape)
        return super().__call__(x, use_running_average, mask=mask)

    def step(self, x_t: jax.Array) -> jax.Array:
        """Normalises one time step ``x_t: [batch, features]`` by running stats."""
        return self(x_t, use_running_average=True)


class Identity(nnx.Module):
    """No normalisation (``norm="none"``): returns its input.

    Example:
      >>> Identity(8, rngs=nnx.Rngs(0))(jnp.ones((2, 8))).shape
      (2, 8)
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None, **_: Any):
        self.num_features = num_features

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        """Returns ``x`` after checking its feature size."""
        _check_features("Identity", x, self.num_features)
        return x

    def step(self, x_t: jax.Array) -> jax.Array:
        """Returns ``x_t``."""
        return self(x_t)


_NORMS = {
    "rmsnorm": RMSNorm,
    "layernorm": LayerNorm,
    "batchnorm": BatchNorm,
    "none": Identity,
}


def make_norm(
    kind: str | None,
    features: int,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
    **options: Any,
) -> nnx.Module:
    """Builds a normalisation layer by name.

    Args:
      kind: ``"rmsnorm"``, ``"layernorm"``, ``"batchnorm"`` or ``"none"``/``None``.
      features: size of the normalised (last) axis.
      dtype: compute dtype.
      param_dtype: parameter dtype.
      rngs: random streams (unused by these layers).
      **options: passed to the layer (e.g. ``epsilon``, ``momentum``).

    Returns:
      The layer.

    Raises:
      ValueError: unknown ``kind``.

    Example:
      >>> make_norm("layernorm", 8, rngs=nnx.Rngs(0))(jnp.ones((1, 8))).shape
      (1, 8)
    """
    key = "none" if kind is None else str(kind).lower()
    if key not in _NORMS:
        raise ValueError(f"norm must be one of {NORM_NAMES} or None, got {kind!r}.")
    if key == "none":
        return Identity(features)
    return _NORMS[key](
        features, dtype=dtype, param_dtype=param_dtype, rngs=rngs, **options
    )
