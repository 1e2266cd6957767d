"""Plain references for linear recurrences, shared by the tests.

``numpy_scan`` is a Python loop in float64/complex128; ``lax_scan`` is the same loop
with ``jax.lax.scan`` (differentiated by JAX's own autodiff, no custom VJP).
"""

import jax
import jax.numpy as jnp
import numpy as np


def numpy_scan(a, b, h0=None, *, reverse=False, matrix=False):
    """``h_t = a_t ∘ h_{t-1} + b_t`` over axis 0, one step at a time, in float64."""
    a = np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)
    b = np.asarray(b, dtype=np.complex128 if np.iscomplexobj(b) else np.float64)
    a = np.broadcast_to(a, b.shape + ((b.shape[-1],) if matrix else ()))
    h = np.zeros(b.shape[1:], np.result_type(a, b)) if h0 is None else np.asarray(h0)
    h = np.broadcast_to(h, b.shape[1:]).astype(np.result_type(a, b, h))
    out = np.zeros(b.shape, h.dtype)
    steps = range(b.shape[0] - 1, -1, -1) if reverse else range(b.shape[0])
    for t in steps:
        h = (np.einsum("...ij,...j->...i", a[t], h) if matrix else a[t] * h) + b[t]
        out[t] = h
    return out


def lax_scan(a, b, h0, *, reverse=False, matrix=False):
    """The same recurrence with ``jax.lax.scan`` (time on axis 0)."""
    a = jnp.broadcast_to(a, b.shape + ((b.shape[-1],) if matrix else ()))

    def step(h, ab):
        a_t, b_t = ab
        h = (jnp.einsum("...ij,...j->...i", a_t, h) if matrix else a_t * h) + b_t
        return h, h

    return jax.lax.scan(step, h0, (a, b), reverse=reverse)[1]


STRUCTURES = {
    # name: (matrix, block size k or None for elementwise)
    "elementwise": (False, None),
    "block2": (True, 2),
    "block3": (True, 3),
    "dense": (True, 5),
}


def random_problem(structure, dtype, length, batch=(2,), seed=0):
    """Stable random ``(a, b, h0)`` with time on axis 0, as numpy arrays.

    Elementwise ``a`` has modulus in [0.5, 1); matrices are scaled to spectral norm
    0.95 (``block``: ``b`` is ``[T, *batch, n_blocks=2, k]``; ``dense``: one block).
    """
    rng = np.random.default_rng(seed)
    complex_ = np.issubdtype(np.dtype(dtype), np.complexfloating)
    matrix, k = STRUCTURES[structure]

    def draw(shape):
        x = rng.standard_normal(shape)
        if complex_:
            x = x + 1j * rng.standard_normal(shape)
        return x

    if matrix:
        blocks = 1 if structure == "dense" else 2
        state = tuple(batch) + (blocks, k)
        a = draw((length,) + state + (k,))
        a = 0.95 * a / np.linalg.norm(a, ord=2, axis=(-2, -1), keepdims=True)
    else:
        state = tuple(batch) + (3,)
        mod = rng.uniform(0.5, 1.0, (length,) + state)
        a = mod * (
            np.exp(1j * rng.uniform(-np.pi, np.pi, mod.shape))
            if complex_
            else rng.choice([-1.0, 1.0], mod.shape)
        )
    b = draw((length,) + state)
    h0 = draw(state)
    cast = lambda x: np.asarray(x).astype(dtype)
    return cast(a), cast(b), cast(h0)
