"""ParaGRU and ParaLSTM: nonlinear RNNs trained in parallel over time by Newton.

From "ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for Large Language Models"
(Danieli et al., 2025). The state-to-state weights are diagonal vectors, so the Jacobian
of the recurrence is diagonal (ParaGRU) or made of 2x2 blocks over ``(c_i, h_i)``
(ParaLSTM), and ``seqjax.scan.newton_scan`` solves the whole sequence with a few
parallel linear scans. Input projections are block-diagonal over heads and computed for
every step at once, before the recurrence.

ParaGRU (hats are pre-activations, ``u = B x + b`` per gate):

.. math::
   z_t = \\sigma(a_z \\odot h_{t-1} + u^z_t), \\quad
   r_t = \\sigma(a_r \\odot h_{t-1} + u^r_t), \\quad
   c_t = \\tanh(a_c \\odot (h_{t-1} \\odot r_t) + u^c_t), \\quad
   h_t = (1 - z_t) \\odot h_{t-1} + z_t \\odot c_t

ParaLSTM (CIFG with diagonal peepholes; the output peephole reads the new cell):

.. math::
   f_t = \\sigma(a_f \\odot h_{t-1} + p_f \\odot c_{t-1} + u^f_t), \\quad
   z_t = \\tanh(a_z \\odot h_{t-1} + u^z_t), \\quad
   c_t = f_t \\odot c_{t-1} + (1 - f_t) \\odot z_t,

.. math::
   o_t = \\sigma(a_o \\odot h_{t-1} + p_o \\odot c_t + u^o_t), \\quad
   h_t = o_t \\odot \\tanh(c_t)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import segments
from seqjax.scan import newton

Array = jax.Array

INITS = ("paper", "code")


def _check_heads(in_features: int, hidden_features: int, heads: int):
    for name, value in (
        ("in_features", in_features),
        ("hidden_features", hidden_features),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(heads, int) or heads < 1:
        raise ValueError(f"heads must be a positive int, got {heads!r}.")
    if in_features % heads or hidden_features % heads:
        raise ValueError(
            f"in_features ({in_features}) and hidden_features ({hidden_features}) must "
            f"both be divisible by heads ({heads})."
        )


class _DiagonalCell(nnx.Module):
    """Shared parts of the ParaRNN cells: parameters and the input projection.

    ``B`` (``kernel``) has shape ``[heads, in/heads, gates, hidden/heads]``; ``project``
    maps ``x: [..., in]`` to the gate pre-activations ``u: [..., gates, hidden]``. The
    diagonal state weights are ``diagonal: [gates, hidden]`` and, for ParaLSTM,
    ``peephole: [2, hidden]``. Arguments are described on ``ParaGRUCell``.
    """

    gates = 3
    jacobian_structure: str
    peepholes = 0  # diagonal cell-state weights (ParaLSTM: 2)
    # The released code's Xavier fan-out: hidden (GRU) or hidden/heads (LSTM).
    _code_full_fan_out: bool

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        heads: int = 1,
        init: str = "paper",
        diag_clip: float | None = None,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_heads(in_features, hidden_features, heads)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}.")
        if diag_clip is not None and not diag_clip > 0:
            raise ValueError(f"diag_clip must be positive or None, got {diag_clip!r}.")
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.heads = heads
        self.diag_clip = diag_clip
        self.dtype = dtype
        d_in, d_h = in_features // heads, hidden_features // heads
        shape = (heads, d_in, self.gates, d_h)
        if init == "paper":  # Kaiming uniform, as the paper's LM runs.
            bound = math.sqrt(3.0 / d_in)
        else:  # The released code's Xavier uniform, with its fan-out convention.
            fan_out = hidden_features if self._code_full_fan_out else d_h
            bound = math.sqrt(6.0 / (d_in + fan_out))
        self.kernel = nnx.Param(
            jax.random.uniform(rngs.params(), shape, param_dtype, -bound, bound)
        )
        bias = jnp.zeros((self.gates, hidden_features), param_dtype)
        if init == "code":  # First gate row: -linspace(0, 1, hidden).
            bias = bias.at[0].set(-jnp.linspace(0.0, 1.0, hidden_features))
        self.bias = nnx.Param(bias)
        diagonal = (self.gates, hidden_features)
        self.diagonal = nnx.Param(
            self._diagonal_init(
                rngs.params(), diagonal, init, hidden_features, param_dtype
            )
        )
        if self.peepholes:
            shape = (self.peepholes, hidden_features)
            self.peephole = nnx.Param(
                self._diagonal_init(
                    rngs.params(), shape, init, hidden_features, param_dtype
                )
            )

    @staticmethod
    def _diagonal_init(key, shape, init, hidden_features, param_dtype):
        if init == "paper":  # "Xavier Gaussian": truncated N(0, 1/sqrt(fan_in)).
            std = 1.0 / math.sqrt(hidden_features)
            x = std * jax.random.truncated_normal(key, -0.9 / std, 0.9 / std, shape)
        else:  # The code's xLSTM-style N(0, 2 / sqrt(5 d_h)).
            x = 2.0 / math.sqrt(5.0 * hidden_features) * jax.random.normal(key, shape)
        return x.astype(param_dtype)

    def _diag(self, p: nnx.Param) -> Array:
        """A diagonal weight, clipped to ``[-diag_clip, diag_clip]`` if set."""
        w = p[...].astype(jnp.float32)
        return (
            w
            if self.diag_clip is None
            else jnp.clip(w, -self.diag_clip, self.diag_clip)
        )

    def project(self, x: Array) -> Array:
        """Gate pre-activations ``u = B x + b``: ``[..., in] -> [..., gates, hid]``."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__}: expected inputs with {self.in_features} "
                f"features on the last axis, got shape {x.shape}."
            )
        heads, d_in = self.heads, self.in_features // self.heads
        xh = x.astype(self.dtype).reshape(x.shape[:-1] + (heads, d_in))
        u = jnp.einsum("...hi,higj->...ghj", xh, self.kernel[...].astype(self.dtype))
        u = u.reshape(x.shape[:-1] + (self.gates, self.hidden_features))
        return u.astype(jnp.float32) + self.bias[...].astype(jnp.float32)


class ParaGRUCell(_DiagonalCell):
    """One ParaGRU step (see the module docstring); the Jacobian is diagonal.

    Args:
      in_features: input width (divisible by ``heads``).
      hidden_features: state width (divisible by ``heads``).
      heads: number of blocks of the block-diagonal input projection.
      init: ``"paper"`` (Kaiming-uniform inputs, truncated-Gaussian diagonals, zero
        biases) or ``"code"`` (the released code's Xavier-uniform inputs, N(0,
        2/sqrt(5 d_h)) diagonals, ``-linspace(0, 1)`` update-gate bias).
      diag_clip: clip the diagonal weights to this magnitude in the forward pass (the
        paper bounds them by 0.5 in its LM runs); ``None`` for no clip.
      dtype: compute dtype of the input projection; the recurrence runs in float32.
      param_dtype: parameter dtype.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    jacobian_structure = "diagonal"
    _code_full_fan_out = True

    def recur(self, h: Array, u: Array) -> Array:
        """``h_t = f(h_{t-1}, u_t)``, ``h: [..., hidden]``, ``u: [..., 3, hidden]``."""
        a = self._diag(self.diagonal)
        z = jax.nn.sigmoid(a[0] * h + u[..., 0, :])
        r = jax.nn.sigmoid(a[1] * h + u[..., 1, :])
        c = jnp.tanh(a[2] * (h * r) + u[..., 2, :])
        return (1.0 - z) * h + z * c

    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """Flax-cell form: ``(carry, x) -> (new_carry, output)``; output = new state."""
        h = self.recur(carry.astype(jnp.float32), self.project(inputs))
        return h, h

    def initialize_carry(self, input_shape: tuple[int, ...], rngs: Any = None) -> Array:
        return jnp.zeros(tuple(input_shape[:-1]) + (self.hidden_features,), jnp.float32)

    def output(self, state: Array) -> Array:
        return state


class ParaLSTMCell(_DiagonalCell):
    """One ParaLSTM step (CIFG, peepholes); the Jacobian is 2x2 blocks over ``(c, h)``.

    The state is the pair ``(c, h)``, each ``[..., hidden]``. Arguments as for
    ``ParaGRUCell``; the ``"code"`` init's forget-gate bias is ``-linspace(0, 1)``.
    """

    jacobian_structure = "block"
    peepholes = 2
    _code_full_fan_out = False

    def recur(self, state: tuple[Array, Array], u: Array) -> tuple[Array, Array]:
        """``(c_t, h_t) = f((c_{t-1}, h_{t-1}), u_t)``, ``u: [..., 3, hidden]``."""
        c, h = state
        a = self._diag(self.diagonal)
        p = self._diag(self.peephole)
        f = jax.nn.sigmoid(a[0] * h + p[0] * c + u[..., 0, :])
        z = jnp.tanh(a[1] * h + u[..., 1, :])
        c = f * c + (1.0 - f) * z
        o = jax.nn.sigmoid(a[2] * h + p[1] * c + u[..., 2, :])
        return c, o * jnp.tanh(c)

    def __call__(self, carry, inputs):
        """Flax-cell form: ``((c, h), x) -> ((c, h), h)``."""
        carry = jax.tree.map(lambda s: s.astype(jnp.float32), carry)
        c, h = self.recur(carry, self.project(inputs))
        return (c, h), h

    def initialize_carry(self, input_shape: tuple[int, ...], rngs: Any = None):
        zeros = jnp.zeros(
            tuple(input_shape[:-1]) + (self.hidden_features,), jnp.float32
        )
        return zeros, zeros

    def output(self, state) -> Array:
        return state[1]


class _ParaRNN(nnx.Module):
    """A ParaRNN cell run over ``[batch, time, features]``, in parallel or step by step.

    ``method``: ``"newton"`` (``newton_scan`` with the cell's Jacobian structure),
    ``"sequential"`` (``jax.lax.scan``), or ``"auto"``: sequential on CPU, where one
    pass of the nonlinear step is cheaper than Newton's few parallel passes, and
    Newton on accelerators.
    """

    cell_type: type

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        heads: int = 1,
        init: str = "paper",
        diag_clip: float | None = None,
        method: str = "auto",
        newton_options: dict | None = None,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if method not in ("auto", "newton", "sequential"):
            raise ValueError(
                f"method must be 'auto', 'newton' or 'sequential', got {method!r}."
            )
        self.cell = self.cell_type(
            in_features,
            hidden_features,
            heads=heads,
            init=init,
            diag_clip=diag_clip,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.method = method
        self.newton_options = dict(newton_options or {})
        self.dtype = dtype

    def resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        return "sequential" if jax.default_backend() == "cpu" else "newton"

    def init_state(self, batch_size: int):
        """The zero state for ``batch_size`` sequences."""
        return self.cell.initialize_carry((batch_size, self.cell.in_features))

    def step(self, state, x_t: Array):
        """One step: ``x_t: [batch, in] -> (state, y_t: [batch, hidden])``."""
        state = self.cell.recur(state, self.cell.project(x_t))
        return state, self.cell.output(state).astype(self.dtype)

    def __call__(
        self,
        x: Array,
        *,
        segment_ids: Array | None = None,
        initial_state: Any = None,
        return_state: bool = False,
    ):
        """Runs the whole sequence: ``x: [batch, time, in] -> [batch, time, hidden]``.

        Args:
          x: inputs ``[batch, time, in_features]``.
          segment_ids: ``[batch, time]`` ints; the state restarts from zero where a
            segment starts.
          initial_state: the state before the first step (zeros by default).
          return_state: also return the final state (after the last step).

        Returns:
          ``y: [batch, time, hidden]``, and the final state if ``return_state``.
        """
        if x.ndim != 3:
            raise ValueError(
                f"{type(self).__name__}: expected x of shape [batch, time, features], "
                f"got {x.shape}."
            )
        batch, length = x.shape[:2]
        u = self.cell.project(x)  # [B, T, gates, hidden], all steps at once
        starts = (
            jnp.zeros((batch, length), bool)
            if segment_ids is None
            else segments.segment_starts(segment_ids)
        )
        if segment_ids is not None and segment_ids.shape != (batch, length):
            raise ValueError(
                f"segment_ids must have shape {(batch, length)}, got "
                f"{segment_ids.shape}."
            )
        h0 = self.init_state(batch) if initial_state is None else initial_state
        h0 = jax.tree.map(lambda s: s.astype(jnp.float32), h0)
        cell = self.cell

        def step(h, inputs):
            u_t, start = inputs
            h = jax.tree.map(lambda s: jnp.where(start[..., None], 0.0, s), h)
            return cell.recur(h, u_t)

        step.jacobian_structure = cell.jacobian_structure
        if self.resolved_method() == "newton":
            hs, _ = newton.newton_scan(
                step, h0, (u, starts), axis=1, batch_ndim=1, **self.newton_options
            )
        else:
            time_major = jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), (u, starts))
            _, hs = jax.lax.scan(lambda h, i: (step(h, i),) * 2, h0, time_major)
            hs = jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), hs)
        y = cell.output(hs).astype(self.dtype)
        if return_state:
            return y, jax.tree.map(lambda a: a[:, -1], hs)
        return y


class ParaGRU(_ParaRNN):
    """ParaGRU over ``[batch, time, in] -> [batch, time, hidden]`` (diagonal Jacobian).

    Args:
      in_features: input width; hidden_features: state and output width.
      heads: blocks of the block-diagonal input projection.
      init: ``"paper"`` or ``"code"`` (see ``ParaGRUCell``).
      diag_clip: bound on the diagonal weights (paper: 0.5 for LMs), or ``None``.
      method: ``"auto"``, ``"newton"`` or ``"sequential"``.
      newton_options: keyword arguments for ``newton_scan`` (``max_iters``,
        ``on_failure``, ``window``, ...).
      dtype: compute dtype of the projections; param_dtype: parameter dtype.
      rngs: ``nnx.Rngs``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqjax.nn import ParaGRU
      >>> layer = ParaGRU(8, 16, method="newton", rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 50, 8))).shape
      (2, 50, 16)
    """

    cell_type = ParaGRUCell


class ParaLSTM(_ParaRNN):
    """ParaLSTM over ``[batch, time, in] -> [batch, time, hidden]`` (2x2 blocks).

    Arguments as for ``ParaGRU``; the state is the pair ``(c, h)`` and the output is
    ``h``.
    """

    cell_type = ParaLSTMCell
