"""RG-LRU: the Real-Gated Linear Recurrent Unit of Griffin and Hawk.

.. math::
   r_t = \\sigma(W_a x_t + b_a), \\quad i_t = \\sigma(W_x x_t + b_x), \\quad
   a_t = a^{c r_t}, \\quad
   h_t = a_t \\odot h_{t-1} + \\sqrt{1 - a_t^2} \\odot (i_t \\odot x_t)

Reference: De, Smith, Fernando, Botev, Cristian-Muraru, Gu, Haroun, Berrada, Chen,
Srinivasan, Desjardins, Doucet, Budden, Teh, Pascanu, de Freitas, Gulcehre,
"Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models" (2024).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import sequence_checks as checks
from seqjax.scan import linear_scan, methods

A_INITS = ("griffin", "recurrentgemma")


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def sqrt_bounded_derivative(x: jax.Array, max_gradient: float) -> jax.Array:
    """``sqrt(x)`` whose derivative is capped at ``max_gradient``.

    .. math:: \\frac{d}{dx}\\sqrt{x} \\to \\frac{1}{2\\sqrt{\\max(x, 1/(4 M^2))}}
       \\le M

    The value is the exact square root; only the derivative is evaluated at
    ``max(x, 1/(4 M²))``, where ``1/(2 sqrt(x)) = M``. RG-LRU needs this for
    ``sqrt(1 - a_t²)`` as ``a_t → 1``, where the true derivative is unbounded
    (RecurrentGemma caps it at 1000 to keep bfloat16 training finite). Defined by a
    custom JVP, so forward and reverse mode both see the capped derivative.

    Args:
      x: non-negative array.
      max_gradient: the cap ``M`` (a Python float).

    Returns:
      ``sqrt(x)``.

    Example:
      >>> float(jax.grad(sqrt_bounded_derivative)(0.0, 1000.0))
      1000.0
    """
    return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_jvp(max_gradient, primals, tangents):
    (x,), (dx,) = primals, tangents
    floor = jnp.asarray(1.0 / (4.0 * max_gradient**2), x.dtype)
    return jnp.sqrt(x), dx * 0.5 * jax.lax.rsqrt(jnp.maximum(x, floor))


class RGLRUState(NamedTuple):
    """The recurrent state of ``RGLRU``.

    Attributes:
      h: ``[batch, features]`` float32, the last ``h_t``.
      at_start: ``[batch]`` bool, true before the first step of a sequence (the
        next step is a segment start: no decay and, by default, no input
        normalisation).
    """

    h: jax.Array
    at_start: jax.Array


class RGLRU(nnx.Module):
    """The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin/Hawk.

    .. math::
       \\log a_t = -c\\, r_t\\, \\mathrm{softplus}(-\\Lambda), \\quad
       h_t = a_t \\odot h_{t-1} + \\sqrt{1 - a_t^2} \\odot (i_t \\odot x_t),
       \\quad y_t = h_t

    with ``a = σ(Λ)`` per channel, so ``log a_t = c r_t log σ(Λ)`` is computed as
    ``-c r_t softplus(-Λ)`` (no underflow for ``a → 1``) and ``1 - a_t²`` as
    ``-expm1(2 log a_t)`` (no cancellation). The derivative of the square root is
    capped at ``max_sqrt_gradient`` (``sqrt_bounded_derivative``).

    Gates ``r_t = σ(W_a x_t + b_a)`` and ``i_t = σ(W_x x_t + b_x)`` use
    block-diagonal weights with ``num_heads`` blocks of ``features / num_heads``
    (LeCun normal weights, zero biases), as in the paper's multi-head gates.

    Initialisation of ``Λ`` (``a_init``):

    * ``"griffin"`` (default, the paper): ``a^c ~ U(a_min, a_max)``, i.e.
      ``Λ = logit(u^{1/c})``;
    * ``"recurrentgemma"`` (the released RecurrentGemma code): ``a`` itself (not
      ``a^c``) lies in ``[a_min, a_max]``, uniform in ``a²`` (by area on a ring).

    **Resets.** At a segment start (position 0, and where ``segment_ids`` changes)
    the state restarts: ``a_t`` is replaced by 0. RecurrentGemma also does *not*
    apply the ``sqrt(1 - a_t²)`` normalisation at a reset, so the first state of a
    document is ``h_t = i_t ⊙ x_t`` rather than a strongly damped copy of it; this is
    the default here (``normalize_at_reset=False``). With ``normalize_at_reset=True``
    the paper's equation is applied at every step (with ``h_{-1} = 0``). ``step``
    follows the same convention through ``RGLRUState.at_start``.

    The parallel form is ``seqjax.scan.linear_scan`` with a real, time-varying
    elementwise transition ``a_t``; gates run in ``dtype``, the recurrence in
    float32.

    Args:
      features: width ``D`` of the input, the state and the output.
      num_heads: number of diagonal blocks of the gate weights; divides
        ``features``.
      c: the constant ``c`` in ``a_t = a^{c r_t}`` (paper: 8).
      a_min: lower end of the initial range (paper: 0.9).
      a_max: upper end of the initial range (paper: 0.999).
      a_init: ``"griffin"`` or ``"recurrentgemma"`` (see above).
      normalize_at_reset: apply ``sqrt(1 - a_t²)`` at segment starts too.
      max_sqrt_gradient: cap on the derivative of the square root (1000).
      method: ``linear_scan`` method.
      dtype: compute dtype of the gates and of the output.
      param_dtype: parameter dtype (float32).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Raises:
      ValueError: a hyperparameter outside its range.

    Example:
      >>> from flax import nnx
      >>> layer = RGLRU(8, num_heads=2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)
    """

    def __init__(
        self,
        features: int,
        *,
        num_heads: int = 1,
        c: float = 8.0,
        a_min: float = 0.9,
        a_max: float = 0.999,
        a_init: str = "griffin",
        normalize_at_reset: bool = False,
        max_sqrt_gradient: float = 1000.0,
        method: str = "auto",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        checks.positive_int("RGLRU", "features", features)
        checks.positive_int("RGLRU", "num_heads", num_heads)
        if features % num_heads:
            raise ValueError(
                f"RGLRU: num_heads={num_heads} must divide features={features}."
            )
        if not c > 0:
            raise ValueError(f"RGLRU: c must be positive, got {c}.")
        if not 0.0 < a_min <= a_max < 1.0:
            raise ValueError(
                f"RGLRU: need 0 < a_min <= a_max < 1, got a_min={a_min}, a_max={a_max}."
            )
        if a_init not in A_INITS:
            raise ValueError(f"RGLRU: a_init={a_init!r}; expected one of {A_INITS}.")
        if not max_sqrt_gradient > 0:
            raise ValueError(
                f"RGLRU: max_sqrt_gradient must be positive, got {max_sqrt_gradient}."
            )
        self.features = features
        self.num_heads = num_heads
        self.c = float(c)
        self.normalize_at_reset = normalize_at_reset
        self.max_sqrt_gradient = float(max_sqrt_gradient)
        self.method = methods.parse(method).value
        self.dtype = dtype
        self.param_dtype = param_dtype

        values = _initial_params(
            rngs.params(), features, num_heads, self.c, a_min, a_max, a_init
        )
        param = lambda name: nnx.Param(values[name].astype(param_dtype))
        self.a_param = param("a_param")  # Λ, with a = σ(Λ)
        self.gate_a_w, self.gate_a_b = param("gate_a_w"), param("gate_a_b")
        self.gate_x_w, self.gate_x_b = param("gate_x_w"), param("gate_x_b")

    # --- pieces ---------------------------------------------------------------------

    def _gate(self, x: jax.Array, w: nnx.Param, b: nnx.Param) -> jax.Array:
        """``σ(W x + b)`` with block-diagonal ``W``; float32 ``[..., features]``."""
        heads = x.reshape(x.shape[:-1] + (self.num_heads, -1))
        pre = jnp.einsum("...hi,hij->...hj", heads, w[...].astype(self.dtype))
        pre = pre + b[...].astype(self.dtype)
        return jax.nn.sigmoid(pre.astype(jnp.float32)).reshape(x.shape)

    def log_a(self, r: jax.Array) -> jax.Array:
        """``log a_t = -c r_t softplus(-Λ)`` (float32)."""
        log_a = -jax.nn.softplus(-self.a_param[...].astype(jnp.float32))
        return self.c * r * log_a

    def _transition_and_input(
        self, x: jax.Array, starts: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """``(a_t, sqrt(1 - a_t²) i_t x_t)`` with the reset convention applied.

        ``starts`` is boolean, broadcastable to ``x.shape[:-1]``.
        """
        r = self._gate(x, self.gate_a_w, self.gate_a_b)
        i = self._gate(x, self.gate_x_w, self.gate_x_b)
        log_a = self.log_a(r)
        scale = sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a), self.max_sqrt_gradient)
        reset = starts[..., None]
        if not self.normalize_at_reset:
            scale = jnp.where(reset, 1.0, scale)
        a = jnp.where(reset, 0.0, jnp.exp(log_a))
        return a, scale * i * x.astype(jnp.float32)

    # --- protocol -------------------------------------------------------------------

    def __call__(
        self, x: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """Parallel form.

        Args:
          x: ``[batch, time, features]``.
          segment_ids: optional ``[batch, time]`` ints; the state restarts where a
            segment starts (position 0 always starts one).

        Returns:
          ``[batch, time, features]`` (the states ``h_t``) in ``dtype``.

        Raises:
          ValueError: ``x`` or ``segment_ids`` of the wrong shape.
        """
        x = checks.sequence("RGLRU", x, self.features).astype(self.dtype)
        starts = checks.segment_starts("RGLRU", segment_ids, x)
        if starts is None:
            starts = (jnp.arange(x.shape[1]) == 0)[None, :]
        a, b = self._transition_and_input(x, starts)
        h = linear_scan(a, b, axis=1, method=self.method)
        return h.astype(self.dtype)

    def init_state(self, batch_size: int) -> RGLRUState:
        """Zero ``h`` (float32 ``[batch_size, features]``), before a sequence starts."""
        checks.positive_int("RGLRU", "batch_size", batch_size)
        return RGLRUState(
            h=jnp.zeros((batch_size, self.features), jnp.float32),
            at_start=jnp.ones((batch_size,), bool),
        )

    def step(self, state: RGLRUState, x_t: jax.Array) -> tuple[RGLRUState, jax.Array]:
        """One step of the recurrence.

        Args:
          state: ``RGLRUState`` from ``init_state`` or ``step``.
          x_t: ``[batch, features]``.

        Returns:
          ``(state, y_t)`` with ``y_t = h_t: [batch, features]`` in ``dtype``.

        Raises:
          ValueError: ``x_t`` or the state of the wrong shape.
        """
        x_t = checks.step_input("RGLRU", x_t, self.features).astype(self.dtype)
        h, at_start = state
        checks.state_shape("RGLRU", "state.h", h, (x_t.shape[0], self.features))
        checks.state_shape("RGLRU", "state.at_start", at_start, (x_t.shape[0],))
        a, b = self._transition_and_input(x_t, at_start)
        h = a * h + b
        return RGLRUState(h, jnp.zeros_like(at_start)), h.astype(self.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 6))
def _initial_params(
    key: jax.Array,
    features: int,
    heads: int,
    c: float,
    a_min: float,
    a_max: float,
    a_init: str,
) -> dict[str, jax.Array]:
    """``Λ`` from ``a_init``; LeCun-normal block gate weights; zero biases."""
    k_a, k_ga, k_gx = jax.random.split(key, 3)
    u = jax.random.uniform(k_a, (features,))
    if a_init == "griffin":  # a^c ~ U(a_min, a_max)
        log_a = jnp.log(a_min + u * (a_max - a_min)) / c
    else:  # a² ~ U(a_min², a_max²)
        log_a = 0.5 * jnp.log(a_min**2 + u * (a_max**2 - a_min**2))
    a_param = log_a - jnp.log(-jnp.expm1(log_a))  # logit(a) = log a - log(1 - a)
    width = features // heads
    std = math.sqrt(1.0 / width)
    return {
        "a_param": a_param,
        "gate_a_w": jax.random.normal(k_ga, (heads, width, width)) * std,
        "gate_a_b": jnp.zeros((heads, width)),
        "gate_x_w": jax.random.normal(k_gx, (heads, width, width)) * std,
        "gate_x_b": jnp.zeros((heads, width)),
    }
