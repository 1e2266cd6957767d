"""``CausalConv1d``: a causal depthwise 1-D convolution over time.

.. math:: y_t[c] = b[c] + \\sum_{j=0}^{k-1} w[j, c]\\, x_{t-k+1+j}[c]

Each channel has its own length-``k`` filter (depthwise), and the output at ``t``
sees only ``x_{t-k+1}, ..., x_t`` (causal; earlier positions are zeros). In a packed
batch (``segment_ids``) the window also stops at the start of the current document,
so nothing leaks across a boundary. This is the short convolution that Mamba ("Mamba:
Linear-Time Sequence Modeling with Selective State Spaces", Gu & Dao 2023), H3 and the
ParaRNN language-model block put before their recurrences.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import sequence_checks

Initializer = Any


def _symmetric_uniform(bound: float) -> Initializer:
    """``U(-bound, bound)`` initializer."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class CausalConv1d(nnx.Module):
    """Causal depthwise convolution over ``[batch, time, features]``.

    .. math:: y_t[c] = b[c] + \\sum_{j=0}^{k-1} w[j, c]\\, x_{t-k+1+j}[c]

    ``w[k - 1]`` multiplies the current input. With ``segment_ids`` a position only
    sees inputs of its own document (those from ``t - k + 1`` back to the document's
    first position), exactly as if each document were convolved separately.

    The recurrent form keeps the last ``k - 1`` inputs: ``init_state`` returns zeros
    of shape ``[batch, k - 1, features]`` and ``step`` slides the window.

    The default initialisation is ``U(±1/sqrt(k))`` for ``w`` and ``b`` (the fan-in
    of one depthwise filter is ``k``), as in the Mamba reference code.

    Args:
      features: number of channels ``C``.
      kernel_size: filter length ``k`` (at least 1).
      use_bias: add the per-channel bias ``b``.
      kernel_init: initializer for ``w`` (shape ``[k, C]``); default ``U(±1/sqrt(k))``.
      bias_init: initializer for ``b`` (shape ``[C]``); default ``U(±1/sqrt(k))``.
      dtype: compute dtype (the output has this dtype).
      param_dtype: parameter dtype.
      rngs: random streams (``params`` is used).

    Raises:
      ValueError: ``features`` or ``kernel_size`` not positive.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqjax.nn.conv import CausalConv1d
      >>> conv = CausalConv1d(8, kernel_size=4, rngs=nnx.Rngs(0))
      >>> conv(jnp.ones((2, 10, 8))).shape
      (2, 10, 8)

    References:
      Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
      (2023); Fu et al., "Hungry Hungry Hippos: Towards Language Modeling with State
      Space Models" (2023).
    """

    def __init__(
        self,
        features: int,
        kernel_size: int = 4,
        *,
        use_bias: bool = True,
        kernel_init: Initializer | None = None,
        bias_init: Initializer | None = None,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}.")
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(
                f"kernel_size must be a positive int, got {kernel_size!r}."
            )
        bound = 1.0 / math.sqrt(kernel_size)
        kernel_init = kernel_init or _symmetric_uniform(bound)
        bias_init = bias_init or _symmetric_uniform(bound)
        self.features = features
        self.kernel_size = kernel_size
        self.dtype = dtype
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), (kernel_size, features), param_dtype)
        )
        self.bias = (
            nnx.Param(bias_init(rngs.params(), (features,), param_dtype))
            if use_bias
            else None
        )

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """Convolves every position in parallel.

        Args:
          x: ``[batch, time, features]`` inputs.
          segment_ids: optional ``[batch, time]`` integer document labels; the window
            stops at the start of the current document.

        Returns:
          ``[batch, time, features]`` outputs in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` has the wrong shape.
        """
        x = sequence_checks.sequence("CausalConv1d", x, self.features).astype(
            self.dtype
        )
        batch, time, _ = x.shape
        w = self.kernel[...].astype(self.dtype)
        first = None  # first position of the current document, [batch, time]
        starts = sequence_checks.segment_starts("CausalConv1d", segment_ids, x)
        if starts is not None:
            pos = jnp.arange(time)[None, :]
            first = jax.lax.cummax(jnp.where(starts, pos, 0), axis=1)
        y = jnp.zeros_like(x)
        for lag in range(min(self.kernel_size, time)):
            # x_{t - lag}, zero for t < lag
            shifted = jnp.pad(x[:, : time - lag], ((0, 0), (lag, 0), (0, 0)))
            if first is not None and lag > 0:
                keep = jnp.arange(time)[None, :] - lag >= first
                shifted = jnp.where(keep[..., None], shifted, 0)
            y = y + shifted * w[self.kernel_size - 1 - lag]
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y

    def init_state(self, batch_size: int) -> jax.Array:
        """The last ``k - 1`` inputs before the sequence: zeros.

        Args:
          batch_size: number of sequences.

        Returns:
          ``[batch_size, kernel_size - 1, features]`` zeros in ``dtype``.
        """
        return jnp.zeros((batch_size, self.kernel_size - 1, self.features), self.dtype)

    def step(self, state: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step of the convolution.

        Args:
          state: ``[batch, kernel_size - 1, features]``, the previous inputs (oldest
            first), from ``init_state`` or a previous ``step``.
          x_t: ``[batch, features]`` input at this step.

        Returns:
          ``(state, y_t)``: the window shifted by one, and ``[batch, features]``.

        Raises:
          ValueError: ``x_t`` or ``state`` has the wrong shape.
        """
        x_t = sequence_checks.step_input("CausalConv1d", x_t, self.features).astype(
            self.dtype
        )
        expected = (x_t.shape[0], self.kernel_size - 1, self.features)
        if state.shape != expected:
            raise ValueError(
                f"CausalConv1d: state must have shape {expected}, got {state.shape}."
            )
        window = jnp.concatenate([state.astype(self.dtype), x_t[:, None]], axis=1)
        w = self.kernel[...].astype(self.dtype)
        y = jnp.zeros_like(x_t)
        for lag in range(self.kernel_size):  # same order as the parallel form
            j = self.kernel_size - 1 - lag
            y = y + window[:, j] * w[j]
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return window[:, 1:], y


def fft_causal_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A long causal depthwise convolution, by FFT: O(T log T) per channel.

    .. math:: y_t[c] = \\sum_{j=0}^{t} k_j[c]\\, x_{t-j}[c]

    The convolution form of time-invariant SSMs (S4, S4D, H3), whose filters are as
    long as the sequence. Both signals are zero-padded to a power of two of at least
    ``T + L - 1`` so that the circular FFT convolution is the linear one. Computed in
    float32 (or wider) whatever the input dtype.

    Args:
      x: ``[batch, time, channels]``.
      kernel: ``[L, channels]`` filters, ``L <= time`` (``kernel[0]`` multiplies the
        current input).

    Returns:
      ``[batch, time, channels]`` in the promoted float32 (or wider) dtype.

    Raises:
      ValueError: shapes that do not fit.
    """
    if x.ndim != 3 or kernel.ndim != 2 or kernel.shape[1] != x.shape[2]:
        raise ValueError(
            f"fft_causal_conv: need x [batch, time, C] and kernel [L, C]; got "
            f"{x.shape} and {kernel.shape}."
        )
    time, length = x.shape[1], kernel.shape[0]
    if not 1 <= length <= time:
        raise ValueError(
            f"fft_causal_conv: kernel length {length} must be in [1, time={time}]."
        )
    dtype = jnp.promote_types(jnp.result_type(x, kernel), jnp.float32)
    n = 1 << (time + length - 2).bit_length()  # power of two >= time + length - 1
    xf = jnp.fft.rfft(x.astype(dtype), n=n, axis=1)
    kf = jnp.fft.rfft(kernel.astype(dtype), n=n, axis=0)
    return jnp.fft.irfft(xf * kf, n=n, axis=1)[:, :time].astype(dtype)
