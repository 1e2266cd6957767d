"""``ParallelRNN(cell)`` matches ``nnx.RNN(cell)`` for Flax's cells and a user's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import ParallelRNN


class TupleCell(nnx.Module):
    """A user's cell with a tuple carry and an output unlike its carry."""

    num_feature_axes = 1  # what nnx.RNN reads off its cells

    def __init__(self, features, hidden, *, rngs):
        self.in_features = features
        self.w = nnx.Linear(features, hidden, rngs=rngs)
        self.u = nnx.Param(0.5 * jax.random.normal(rngs.params(), (hidden, hidden)))

    def __call__(self, carry, x):
        a, b = carry
        a = jnp.tanh(self.w(x) + a @ self.u[...] * 0.5 + 0.1 * b)
        b = 0.9 * b + 0.1 * a
        return (a, b), a * b

    def initialize_carry(self, input_shape, rngs=None):
        zeros = jnp.zeros(input_shape[:-1] + (self.u.shape[0],))
        return zeros, zeros


CELLS = {
    "gru": lambda: nnx.GRUCell(4, 6, rngs=nnx.Rngs(0)),
    "lstm": lambda: nnx.LSTMCell(4, 6, rngs=nnx.Rngs(1)),
    "simple": lambda: nnx.SimpleCell(4, 6, rngs=nnx.Rngs(2)),
    "tuple": lambda: TupleCell(4, 6, rngs=nnx.Rngs(3)),
}


def _close(a, b, atol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("name", list(CELLS))
def test_matches_nnx_rnn_values_and_gradients(name):
    cell = CELLS[name]()
    x = jax.random.normal(jax.random.key(0), (3, 33, 4))
    ours = ParallelRNN(cell, method="newton", return_carry=True)
    ref = nnx.RNN(cell, return_carry=True)
    _close(ours(x), ref(x))

    def loss(model, x):
        carry, y = model(x)
        return jnp.sum(jnp.cos(y)) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    g_ours = nnx.grad(loss, argnums=(0, 1))(ours, x)
    g_ref = nnx.grad(loss, argnums=(0, 1))(ref, x)
    np.testing.assert_allclose(g_ours[1], g_ref[1], atol=1e-4, rtol=1e-3)
    _close(nnx.state(g_ours[0], nnx.Param), nnx.state(g_ref[0], nnx.Param), atol=1e-4)


@pytest.mark.parametrize("name", ["gru", "tuple"])
def test_seq_lengths_reverse_keep_order_time_major(name):
    cell = CELLS[name]()
    x = jax.random.normal(jax.random.key(1), (2, 20, 4))
    lengths = jnp.array([20, 11])
    for kwargs in [
        dict(),
        dict(reverse=True),
        dict(reverse=True, keep_order=True),
    ]:
        carry, y = ParallelRNN(cell, method="newton", return_carry=True, **kwargs)(
            x, seq_lengths=lengths
        )
        c_ref, y_ref = nnx.RNN(cell, return_carry=True, **kwargs)(
            x, seq_lengths=lengths
        )
        _close(carry, c_ref)
        np.testing.assert_allclose(y[0], y_ref[0], atol=1e-5)
        np.testing.assert_allclose(y[1, :11], y_ref[1, :11], atol=1e-5)
    y = ParallelRNN(cell, method="newton", time_major=True)(jnp.swapaxes(x, 0, 1))
    np.testing.assert_allclose(jnp.swapaxes(y, 0, 1), nnx.RNN(cell)(x), atol=1e-5)


def test_initial_carry_and_extra_batch_axes():
    cell = CELLS["lstm"]()
    x = jax.random.normal(jax.random.key(2), (2, 3, 15, 4))  # two batch axes
    c0 = (jnp.ones((2, 3, 6)) * 0.3, jnp.ones((2, 3, 6)) * -0.2)
    got = ParallelRNN(cell, method="newton")(x, initial_carry=c0)
    want = nnx.RNN(cell)(x, initial_carry=c0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_segment_ids_restart_the_carry():
    cell = CELLS["gru"]()
    x = jax.random.normal(jax.random.key(3), (1, 24, 4))
    ids = jnp.array([[0] * 10 + [1] * 14])
    y = ParallelRNN(cell, method="newton")(x, segment_ids=ids)
    np.testing.assert_allclose(y[:, :10], nnx.RNN(cell)(x[:, :10]), atol=1e-5)
    np.testing.assert_allclose(y[:, 10:], nnx.RNN(cell)(x[:, 10:]), atol=1e-5)


def test_step_and_sequential_method():
    cell = CELLS["gru"]()
    layer = ParallelRNN(cell, method="sequential")
    x = jax.random.normal(jax.random.key(4), (2, 12, 4))
    state = layer.init_state(2)
    ys = []
    for t in range(12):
        state, y = layer.step(state, x[:, t])
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys, 1), layer(x), atol=1e-6)
    np.testing.assert_allclose(layer(x), nnx.RNN(cell)(x), atol=1e-6)


def test_declared_structure_is_used():
    """A diagonal cell declared as such runs with diagonal Jacobians and agrees."""

    class DiagCell(nnx.Module):
        jacobian_structure = "diagonal"
        num_feature_axes = 1

        def __init__(self, rngs):
            self.in_features = 3
            self.w = nnx.Param(
                jax.random.uniform(rngs.params(), (3,), minval=-0.9, maxval=0.9)
            )

        def __call__(self, h, x):
            h = jnp.tanh(self.w[...] * h + x)
            return h, h

        def initialize_carry(self, shape, rngs=None):
            return jnp.zeros(shape[:-1] + (3,))

    cell = DiagCell(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(5), (2, 40, 3))
    layer = ParallelRNN(
        cell, method="newton", newton_options=dict(check_structure=True)
    )
    np.testing.assert_allclose(layer(x), nnx.RNN(cell)(x), atol=1e-5)


def test_bad_arguments():
    cell = CELLS["gru"]()
    with pytest.raises(ValueError, match="method must be"):
        ParallelRNN(cell, method="fast")
    with pytest.raises(ValueError, match="unknown jacobian='sparse'"):
        ParallelRNN(cell, jacobian="sparse")
    with pytest.raises(TypeError, match="NNX RNN cell"):
        ParallelRNN(lambda c, x: (c, x))
    layer = ParallelRNN(cell)
    with pytest.raises(ValueError, match="at least"):
        layer(jnp.ones((4,)))
    with pytest.raises(ValueError, match="seq_lengths must have the batch shape"):
        layer(jnp.ones((2, 5, 4)), seq_lengths=jnp.array([5]))
