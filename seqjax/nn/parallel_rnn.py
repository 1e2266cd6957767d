"""``ParallelRNN``: any Flax NNX RNN cell evaluated in parallel over time.

A drop-in for ``nnx.RNN(cell)``: the carries :math:`c_t = \\text{cell}(c_{t-1}, x_t)_0`
are found with ``seqjax.scan.newton_scan`` (dense Jacobians unless the cell declares a
``jacobian_structure``), then every output :math:`y_t = \\text{cell}(c_{t-1}, x_t)_1`
comes from one more parallel application of the cell. Works with ``nnx.GRUCell``,
``nnx.LSTMCell``, ``nnx.SimpleCell`` and users' cells with tuple carries.

Reference: Lim et al., "Parallelizing non-linear sequential models over the sequence
length" (DEER, ICLR 2024); Danieli et al., "ParaRNN" (2025).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn import segments
from seqjax.scan import newton

Array = jax.Array


def _flip(x: Array, lengths: Array | None, batch_ndim: int) -> Array:
    """Reverses the time axis (``batch_ndim``) of ``x``; only the first ``lengths``
    steps of each sequence when given, leaving padding at the end (as Flax does)."""
    if lengths is None:
        return jnp.flip(x, axis=batch_ndim)
    length = x.shape[batch_ndim]
    t = jnp.arange(length)
    lengths = lengths[..., None]
    index = jnp.where(t < lengths, lengths - 1 - t, t)  # [*batch, T]
    index = index.reshape(index.shape + (1,) * (x.ndim - batch_ndim - 1))
    return jnp.take_along_axis(x, index, axis=batch_ndim)


class ParallelRNN(nnx.Module):
    """Runs an NNX RNN cell over a sequence with Newton's method, like ``nnx.RNN``.

    Args:
      cell: an NNX RNN cell: ``cell(carry, x) -> (carry, y)`` and
        ``cell.initialize_carry(input_shape, rngs)``.
      jacobian: Jacobian structure of the carry update: ``"auto"`` (the cell's
        ``jacobian_structure`` attribute, else dense), ``"dense"``, ``"diagonal"``,
        ``"block"``.
      method: ``"newton"`` (parallel), ``"sequential"`` (``jax.lax.scan``), or
        ``"auto"``: sequential on CPU, Newton on accelerators.
      newton_options: keyword arguments for ``newton_scan`` (``max_iters``,
        ``on_failure``, ``window``, ...).
      time_major: inputs are ``[time, *batch, features]`` instead of
        ``[*batch, time, features]``.
      return_carry: also return the final carry.
      reverse: process the sequence from the end.
      keep_order: with ``reverse``, return outputs in the input's order.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqjax.nn import ParallelRNN
      >>> cell = nnx.GRUCell(4, 8, rngs=nnx.Rngs(0))
      >>> ParallelRNN(cell, method="newton")(jnp.ones((2, 30, 4))).shape
      (2, 30, 8)
    """

    def __init__(
        self,
        cell: nnx.Module,
        *,
        jacobian: str = "auto",
        method: str = "auto",
        newton_options: dict | None = None,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
    ):
        if method not in ("auto", "newton", "sequential"):
            raise ValueError(
                f"method must be 'auto', 'newton' or 'sequential', got {method!r}."
            )
        newton._parse_enum(newton.JacobianStructure, jacobian, "jacobian")
        if not callable(cell) or not hasattr(cell, "initialize_carry"):
            raise TypeError(
                "cell must be an NNX RNN cell with __call__(carry, x) and "
                f"initialize_carry(input_shape, rngs); got {type(cell).__name__}."
            )
        self.cell = cell
        self.jacobian = jacobian
        self.method = method
        self.newton_options = dict(newton_options or {})
        self.time_major = time_major
        self.return_carry = return_carry
        self.reverse = reverse
        self.keep_order = keep_order

    def _structure(self) -> str:
        if self.jacobian != "auto":
            return self.jacobian
        return getattr(self.cell, "jacobian_structure", "dense")

    def resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        return "sequential" if jax.default_backend() == "cpu" else "newton"

    def init_state(self, batch_size: int, in_features: int | None = None):
        """The cell's initial carry for ``batch_size`` sequences."""
        features = in_features or getattr(self.cell, "in_features", None)
        if features is None:
            raise ValueError("init_state needs in_features for this cell.")
        return self._initial_carry((batch_size, features))

    def _initial_carry(self, input_shape):
        # Flax cells want rngs even for their default zero carries; a fixed key keeps
        # the call deterministic. Pass initial_carry for a random one.
        return self.cell.initialize_carry(input_shape, nnx.Rngs(0))

    def step(self, state, x_t: Array):
        """One step of the cell: ``(carry, x_t) -> (carry, y_t)``."""
        return self.cell(state, x_t)

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Any = None,
        seq_lengths: Array | None = None,
        segment_ids: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ):
        """Runs the cell over ``inputs`` (``[*batch, time, features]`` by default).

        Args:
          inputs: the sequence; at least ``[time, features]``.
          initial_carry: the carry before the first step (the cell's default if None).
          seq_lengths: ``[*batch]`` ints; steps past a sequence's length are padding:
            its carry stops changing there (as in ``nnx.RNN``).
          segment_ids: ``[batch, time]`` ints (batch-major, one batch axis); the carry
            restarts from the cell's fresh carry where a packed segment starts.
          return_carry, time_major, reverse, keep_order: override the constructor's.

        Returns:
          outputs with the time layout of ``inputs``, and the final carry first if
          ``return_carry``.
        """
        return_carry = self.return_carry if return_carry is None else return_carry
        time_major = self.time_major if time_major is None else time_major
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        if inputs.ndim < 2:
            raise ValueError(
                f"inputs must be at least [time, features], got shape {inputs.shape}."
            )
        if time_major:
            inputs = jnp.moveaxis(inputs, 0, -2)
        batch_ndim = inputs.ndim - 2
        batch_shape, length = inputs.shape[:batch_ndim], inputs.shape[batch_ndim]
        if seq_lengths is not None and seq_lengths.shape != batch_shape:
            raise ValueError(
                f"seq_lengths must have the batch shape {batch_shape}, got "
                f"{seq_lengths.shape}."
            )
        if segment_ids is not None and segment_ids.shape != batch_shape + (length,):
            raise ValueError(
                f"segment_ids must have shape {batch_shape + (length,)}, got "
                f"{segment_ids.shape}."
            )
        if reverse:
            inputs = _flip(inputs, seq_lengths, batch_ndim)
            if segment_ids is not None:
                segment_ids = _flip(segment_ids, seq_lengths, batch_ndim)
        carry0 = initial_carry
        if carry0 is None:
            carry0 = self._initial_carry(batch_shape + inputs.shape[-1:])
        t = jnp.arange(length)
        valid = (
            jnp.ones(batch_shape + (length,), bool)
            if seq_lengths is None
            else t < seq_lengths[..., None]
        )
        if segment_ids is None:
            starts = jnp.zeros(batch_shape + (length,), bool)
        else:
            starts = segments.segment_starts(segment_ids.reshape(-1, length)).reshape(
                batch_shape + (length,)
            )
        # A packed segment restarts from the cell's fresh carry for one sequence.
        fresh = self._initial_carry(inputs.shape[-1:])
        cell = self.cell

        def prepare(carry, start):
            return jax.tree.map(lambda c, c0: jnp.where(start, c0, c), carry, fresh)

        def step(carry, x):  # one sequence, one step
            x_t, ok, start = x
            carry = prepare(carry, start)
            new, _ = cell(carry, x_t)
            return jax.tree.map(lambda n, c: jnp.where(ok, n, c), new, carry)

        def output(carry, x):  # one sequence, one step
            x_t, _, start = x
            return cell(prepare(carry, start), x_t)[1]

        def batched(fn, time_axis: bool):
            for _ in range(batch_ndim + time_axis):
                fn = jax.vmap(fn)
            return fn

        xs = (inputs, valid, starts)
        if self.resolved_method() == "newton":
            carries, _ = newton.newton_scan(
                step,
                carry0,
                xs,
                axis=batch_ndim,
                batch_ndim=batch_ndim,
                jacobian=self._structure(),
                **self.newton_options,
            )
        else:
            time_first = jax.tree.map(lambda a: jnp.moveaxis(a, batch_ndim, 0), xs)
            bstep = batched(step, time_axis=False)
            _, carries = jax.lax.scan(
                lambda c, x: (bstep(c, x),) * 2, carry0, time_first
            )
            carries = jax.tree.map(lambda a: jnp.moveaxis(a, 0, batch_ndim), carries)

        # Outputs: one more parallel application of the cell from the previous carries.
        def previous(c, c0):
            before = jax.lax.slice_in_dim(c, 0, length - 1, axis=batch_ndim)
            return jnp.concatenate(
                [jnp.expand_dims(c0, batch_ndim), before], batch_ndim
            )

        prev = jax.tree.map(previous, carries, carry0)
        outputs = batched(output, time_axis=True)(prev, xs)
        final = jax.tree.map(
            lambda c: jax.lax.index_in_dim(c, length - 1, batch_ndim, keepdims=False),
            carries,
        )

        if reverse and not keep_order:
            pass  # outputs stay in processing (reversed) order, as nnx.RNN does
        elif reverse:
            outputs = _flip(outputs, seq_lengths, batch_ndim)
        if time_major:
            outputs = jnp.moveaxis(outputs, -2, 0)
        return (final, outputs) if return_carry else outputs
