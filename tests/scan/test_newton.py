"""``newton_scan`` against ``jax.lax.scan`` for values and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from seqjax.scan import LevenbergMarquardt, NewtonConvergenceError, newton_scan


def lax_reference(step, h0, xs):
    """``hs[t] = step(hs[t-1], xs[t])`` with ``jax.lax.scan`` (time-leading)."""
    return jax.lax.scan(lambda h, x: (step(h, x),) * 2, h0, xs)[1]


# --- cells: (make_params, step(params, h, x), h0(d), structure) -------------------


def diag_cell(key, d, scale=0.9):
    """``h' = tanh(w * h + x)`` (diagonal Jacobian)."""
    return dict(w=scale * jax.random.uniform(key, (d,), minval=-1, maxval=1))


def diag_step(p, h, x):
    return jnp.tanh(p["w"] * h + x)


def dense_cell(key, d, scale=0.9):
    """``h' = tanh(W h + x)`` with spectral norm ``scale`` (dense Jacobian)."""
    w = jax.random.normal(key, (d, d))
    return dict(w=scale * w / jnp.linalg.norm(w, 2))


def dense_step(p, h, x):
    return jnp.tanh(p["w"] @ h + x)


def pair_cell(key, d):
    """An LSTM-like pair state ``(c, h)`` coupled elementwise: 2x2 blocks."""
    k1, k2 = jax.random.split(key)
    return dict(
        a=0.5 * jax.random.normal(k1, (3, d)), p=0.5 * jax.random.normal(k2, (d,))
    )


def pair_step(p, state, x):
    c, h = state
    f = jax.nn.sigmoid(p["a"][0] * h + p["p"] * c + x)
    z = jnp.tanh(p["a"][1] * h + x)
    c = f * c + (1 - f) * z
    return c, jax.nn.sigmoid(p["a"][2] * h + x) * jnp.tanh(c)


def blocks_step(p, h, x):
    """The pair cell on a single array ``[d, 2]`` (blocks along the last axis)."""
    c, h = pair_step(p, (h[:, 0], h[:, 1]), x)
    return jnp.stack([c, h], axis=-1)


CASES = {
    # name: (param maker, step, h0 maker, jacobian)
    "diagonal": (diag_cell, diag_step, lambda d: jnp.full((d,), 0.3), "diagonal"),
    "dense": (dense_cell, dense_step, lambda d: jnp.full((d,), 0.3), "dense"),
    "block_pair": (
        pair_cell,
        pair_step,
        lambda d: (jnp.full((d,), 0.2), jnp.full((d,), -0.1)),
        "block",
    ),
    "block_array": (pair_cell, blocks_step, lambda d: jnp.full((d, 2), 0.2), "block"),
    "dense_pair": (
        pair_cell,
        pair_step,
        lambda d: (jnp.full((d,), 0.2), jnp.full((d,), -0.1)),
        "dense",
    ),
}


def _loss(hs, weights):
    return sum(
        jnp.sum(h * w) for h, w in zip(jax.tree.leaves(hs), weights, strict=True)
    )


@pytest.mark.parametrize("length", [1, 2, 17, 300])
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_lax_scan(case, length):
    make, step, make_h0, jacobian = CASES[case]
    d = 5
    params = make(jax.random.key(0), d)
    xs = jax.random.normal(jax.random.key(1), (length, d))
    h0 = make_h0(d)
    ref = lax_reference(functools.partial(step, params), h0, xs)
    hs, info = newton_scan(functools.partial(step, params), h0, xs, jacobian=jacobian)
    assert bool(info.converged) and not bool(info.fell_back)
    for got, want in zip(jax.tree.leaves(hs), jax.tree.leaves(ref), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    weights = [
        jax.random.normal(jax.random.key(2 + i), x.shape)
        for i, x in enumerate(jax.tree.leaves(ref))
    ]

    def newton_loss(params, xs, h0):
        step_p = lambda h, x: step(params, h, x)
        return _loss(newton_scan(step_p, h0, xs, jacobian=jacobian)[0], weights)

    def lax_loss(params, xs, h0):
        return _loss(lax_reference(functools.partial(step, params), h0, xs), weights)

    got = jax.grad(newton_loss, argnums=(0, 1, 2))(params, xs, h0)
    want = jax.grad(lax_loss, argnums=(0, 1, 2))(params, xs, h0)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


def test_long_sequence_diagonal():
    """T = 4096 in float32, in few iterations, within 1e-4 of sequential."""
    params = diag_cell(jax.random.key(3), 16)
    xs = jax.random.normal(jax.random.key(4), (4096, 16))
    step = functools.partial(diag_step, params)
    hs, info = jax.jit(lambda xs: newton_scan(step, jnp.zeros(16), xs))(xs)
    assert bool(info.converged) and int(info.iterations) <= 6
    np.testing.assert_allclose(hs, lax_reference(step, jnp.zeros(16), xs), atol=1e-4)


def test_batch_axes_and_time_axis():
    """``batch_ndim`` with batch-first inputs equals solving each sequence alone."""
    params = dense_cell(jax.random.key(5), 4)
    step = functools.partial(dense_step, params)
    xs = jax.random.normal(jax.random.key(6), (3, 2, 20, 4))  # [B1, B2, T, d]
    h0 = jax.random.normal(jax.random.key(7), (3, 2, 4))
    hs, info = newton_scan(step, h0, xs, axis=2, batch_ndim=2)
    assert hs.shape == (3, 2, 20, 4)
    assert info.iterations.shape == (3, 2) and bool(info.converged.all())
    for i in range(3):
        for j in range(2):
            want = lax_reference(step, h0[i, j], xs[i, j])
            np.testing.assert_allclose(hs[i, j], want, rtol=1e-5, atol=1e-5)
    # vmap over newton_scan and jit agree with the native batch.
    vm = jax.jit(jax.vmap(jax.vmap(lambda h, x: newton_scan(step, h, x)[0])))(h0, xs)
    np.testing.assert_allclose(vm, hs, rtol=1e-5, atol=1e-5)


def test_pytree_inputs_and_time_axis():
    """``xs`` may be a pytree; ``axis`` picks the time axis of its leaves."""
    step = lambda h, x: jnp.tanh(0.5 * h + x["a"] * x["b"])
    xs = {"a": jnp.linspace(-1, 1, 7 * 3).reshape(3, 7), "b": jnp.ones((3, 7))}
    hs, _ = newton_scan(step, jnp.zeros(3), xs, axis=1, jacobian="diagonal")
    want = lax_reference(step, jnp.zeros(3), jax.tree.map(lambda x: x.T, xs)).T
    assert hs.shape == (3, 7)
    np.testing.assert_allclose(hs, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("jacobian", ["diagonal", "dense"])
def test_hard_float32_large_weights(jacobian):
    """Saturating weights (|w| up to 3) still give the sequential answer."""
    d = 8
    params = dict(
        w=3.0 * jax.random.uniform(jax.random.key(8), (d,), minval=-1, maxval=1)
    )
    xs = 3.0 * jax.random.normal(jax.random.key(9), (512, d))
    step = functools.partial(diag_step, params)
    hs, info = newton_scan(step, jnp.zeros(d), xs, jacobian=jacobian, max_iters=50)
    want = lax_reference(step, jnp.zeros(d), xs)
    np.testing.assert_allclose(hs, want, rtol=1e-4, atol=1e-4)
    assert bool(info.converged) or bool(info.fell_back)


def _chaotic():
    """A dense tanh RNN with spectral radius 4: Newton needs far more than 3 steps."""
    d = 6
    w = jax.random.normal(jax.random.key(10), (d, d))
    w = 4.0 * w / jnp.max(jnp.abs(jnp.linalg.eigvals(w)))
    step = lambda h, x: jnp.tanh(w @ h + x)
    xs = jax.random.normal(jax.random.key(11), (200, d))
    return step, jnp.zeros(d), xs


def test_chaotic_fallback_recomputes_sequentially():
    step, h0, xs = _chaotic()
    hs, info = newton_scan(step, h0, xs, max_iters=3, on_failure="fallback")
    assert not bool(info.converged) and bool(info.fell_back)
    np.testing.assert_allclose(hs, lax_reference(step, h0, xs), rtol=1e-6, atol=1e-6)


def test_chaotic_ignore_returns_flagged_iterate():
    step, h0, xs = _chaotic()
    hs, info = newton_scan(step, h0, xs, max_iters=3, on_failure="ignore")
    assert not bool(info.converged) and not bool(info.fell_back)
    assert int(info.iterations) == 3 and float(info.residual) > 1e-3
    # The flagged iterate really is wrong, which is why it is flagged.
    assert float(jnp.max(jnp.abs(hs - lax_reference(step, h0, xs)))) > 1e-3


def test_chaotic_raise_eagerly_and_under_checkify():
    step, h0, xs = _chaotic()
    with pytest.raises(
        NewtonConvergenceError, match="did not converge within max_iters=3"
    ):
        newton_scan(step, h0, xs, max_iters=3, on_failure="raise")
    solve = lambda xs: newton_scan(step, h0, xs, max_iters=3, on_failure="raise")[0]
    err, _ = checkify.checkify(jax.jit(solve))(xs)
    with pytest.raises(Exception, match="did not converge"):
        err.throw()
    # A converging problem passes the same check.
    err, _ = checkify.checkify(jax.jit(solve))(0.0 * xs)
    err.throw()


def test_fallback_is_per_sequence():
    """In a batch, only the sequence that fails is recomputed and flagged."""
    step, _, xs = _chaotic()
    calm = lambda h, x: step(h, x) * x[0] ** 0  # same cell
    xs = jnp.stack([xs, 0.0 * xs])  # zero inputs from zero state: h stays 0
    hs, info = newton_scan(
        calm, jnp.zeros((2, 6)), xs, axis=1, batch_ndim=1, max_iters=3
    )
    assert info.fell_back.tolist() == [True, False]
    assert info.converged.tolist() == [False, True]
    for b in range(2):
        np.testing.assert_allclose(
            hs[b], lax_reference(step, jnp.zeros(6), xs[b]), atol=1e-6
        )


def test_non_finite_iterates_are_caught():
    """NaN in an iterate stops Newton; the result is recomputed or flagged."""

    def step(h, x):  # finite on the true trajectory, NaN where |h| > 10
        return jnp.where(jnp.abs(h) > 10, jnp.nan, jnp.tanh(0.5 * h + x))

    xs = jnp.ones((50, 3))
    bad_guess = jnp.full((50, 3), 100.0)
    want = lax_reference(step, jnp.zeros(3), xs)
    hs, info = newton_scan(step, jnp.zeros(3), xs, init=bad_guess, on_failure="ignore")
    assert not bool(info.converged) and not bool(info.fell_back)
    assert not bool(jnp.all(jnp.isfinite(hs)) and jnp.allclose(hs, want, atol=1e-3))
    hs, info = newton_scan(step, jnp.zeros(3), xs, init=bad_guess)
    assert not bool(info.converged) and bool(info.fell_back)
    np.testing.assert_allclose(hs, want, atol=1e-6)


def test_check_structure_catches_wrong_declaration():
    params = dense_cell(jax.random.key(12), 4)
    step = functools.partial(dense_step, params)
    xs = jax.random.normal(jax.random.key(13), (10, 4))
    with pytest.raises(ValueError, match="not diagonal as declared"):
        newton_scan(step, jnp.zeros(4), xs, jacobian="diagonal", check_structure=True)
    # The pair cell is not diagonal either, but it is block.
    pair = functools.partial(pair_step, pair_cell(jax.random.key(14), 4))
    h0 = (jnp.zeros(4), jnp.zeros(4))
    with pytest.raises(ValueError, match="not diagonal as declared"):
        newton_scan(pair, h0, xs, jacobian="diagonal", check_structure=True)
    newton_scan(pair, h0, xs, jacobian="block", check_structure=True)
    diag = functools.partial(diag_step, diag_cell(jax.random.key(15), 4))
    newton_scan(diag, jnp.zeros(4), xs, jacobian="diagonal", check_structure=True)
    # Under jit the check is a checkify check.
    solve = lambda xs: newton_scan(step, jnp.zeros(4), xs, jacobian="diagonal",
                                   check_structure=True)[0]  # fmt: skip
    err, _ = checkify.checkify(jax.jit(solve))(xs)
    with pytest.raises(Exception, match="not diagonal as declared"):
        err.throw()


def test_auto_uses_declared_structure():
    calls = []

    def step(h, x):
        calls.append(1)
        return jnp.tanh(0.5 * h + x)

    step.jacobian_structure = "diagonal"
    xs = jnp.ones((5, 3))
    hs, _ = newton_scan(step, jnp.zeros(3), xs)
    np.testing.assert_allclose(hs, lax_reference(step, jnp.zeros(3), xs), atol=1e-6)

    class Cell:
        jacobian_structure = "block"

        def __call__(self, h, x):
            return blocks_step(pair_cell(jax.random.key(0), 3), h, x)

    hs, _ = newton_scan(Cell().__call__, jnp.zeros((3, 2)), xs)
    want = lax_reference(Cell(), jnp.zeros((3, 2)), xs)
    np.testing.assert_allclose(hs, want, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(init="zeros"),
        dict(damping=0.5, max_iters=60),
        dict(damping="levenberg-marquardt"),
        dict(damping=LevenbergMarquardt(lam=0.5, adaptive=False), max_iters=60),
        dict(damping=LevenbergMarquardt(lam=2.0), method="associative"),
        dict(window=7),
        dict(window=64),
        dict(method="associative"),
        dict(method="chunked"),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_give_the_same_answer(options):
    params = dense_cell(jax.random.key(16), 4)
    step = functools.partial(dense_step, params)
    xs = jax.random.normal(jax.random.key(17), (50, 4))
    h0 = jnp.full((4,), 0.5)
    hs, info = newton_scan(step, h0, xs, **options)
    assert bool(info.converged) and not bool(info.fell_back)
    np.testing.assert_allclose(hs, lax_reference(step, h0, xs), rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda xs: jnp.sum(newton_scan(step, h0, xs, **options)[0] ** 2))(
        xs
    )
    want = jax.grad(lambda xs: jnp.sum(lax_reference(step, h0, xs) ** 2))(xs)
    np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-4)


def _sine_rnn(gain, length, seed=30):
    """``h' = sin(W h + x)`` with ``|W|_2 = gain``: unsaturating, so Jacobian
    products grow like ``gain ** T`` in plain Newton steps when ``gain > 1``."""
    d = 8
    w = jax.random.normal(jax.random.key(seed), (d, d))
    w = gain * w / jnp.linalg.norm(w, 2)
    step = lambda h, x: jnp.sin(w @ h + x)
    xs = jax.random.normal(jax.random.key(seed + 1), (length, d))
    return step, jnp.zeros(d), xs


def _squared_residual(step, h0, xs, hs):
    prev = jnp.concatenate([h0[None], hs[:-1]])
    return float(jnp.sum((jax.vmap(step)(prev, xs) - hs) ** 2))


def test_levenberg_marquardt_stays_finite_where_newton_overflows():
    step, h0, xs = _sine_rnn(gain=4.0, length=300)
    options = dict(jacobian="dense", max_iters=40, on_failure="ignore")
    hs, info = newton_scan(step, h0, xs, **options)
    assert not bool(info.converged) and not bool(jnp.all(jnp.isfinite(hs)))

    guess, _ = newton_scan(step, h0, xs, **{**options, "max_iters": 0})
    damped = dict(options, damping="levenberg-marquardt")
    hs, info = newton_scan(step, h0, xs, **damped)
    assert bool(jnp.all(jnp.isfinite(hs))) and np.isfinite(float(info.residual))
    # Marquardt's rule only takes steps that lower the squared residual.
    assert _squared_residual(step, h0, xs, hs) < 0.5 * _squared_residual(
        step, h0, xs, guess
    )
    # The fallback still makes the answer exact.
    hs, info = newton_scan(step, h0, xs, **{**damped, "on_failure": "fallback"})
    assert bool(info.fell_back)
    np.testing.assert_allclose(hs, lax_reference(step, h0, xs), atol=1e-6)


def test_levenberg_marquardt_per_sequence_under_jit():
    """A calm and a near-critical sequence in one batch each converge on their own."""
    unit, _, xs = _sine_rnn(gain=1.0, length=400)
    step = lambda h, gx: unit(gx[0] * h, gx[1])  # sin(g W h + x), gain g per step
    gains = jnp.broadcast_to(jnp.array([[0.5], [2.0]]), (2, 400))
    xs = (gains, jnp.stack([xs, xs]))
    solve = jax.jit(
        lambda xs: newton_scan(
            step,
            jnp.zeros((2, 8)),
            xs,
            axis=1,
            batch_ndim=1,
            jacobian="dense",
            max_iters=60,
            damping=LevenbergMarquardt(),
            on_failure="ignore",
        )
    )
    hs, info = solve(xs)
    assert info.converged.tolist() == [True, True]
    assert int(info.iterations[0]) < int(info.iterations[1])
    for b in range(2):
        want = lax_reference(step, jnp.zeros(8), (xs[0][b], xs[1][b]))
        np.testing.assert_allclose(hs[b], want, atol=2e-5)


def test_given_initial_guess():
    params = dense_cell(jax.random.key(18), 4)
    step = functools.partial(dense_step, params)
    xs = jax.random.normal(jax.random.key(19), (30, 4))
    want = lax_reference(step, jnp.zeros(4), xs)
    hs, info = newton_scan(step, jnp.zeros(4), xs, init=want)
    assert int(info.iterations) == 0
    np.testing.assert_allclose(hs, want, atol=1e-6)


def test_quasi_newton_with_dense_adjoint():
    """Diagonal (quasi-DEER) forward on a dense cell; exact gradients with a dense
    adjoint, wrong ones with the diagonal approximation."""
    params = dense_cell(jax.random.key(20), 4, scale=0.5)
    xs = jax.random.normal(jax.random.key(21), (40, 4))

    def loss(params, adjoint):
        step = lambda h, x: dense_step(params, h, x)
        hs, info = newton_scan(step, jnp.zeros(4), xs, jacobian="diagonal",
                               adjoint_jacobian=adjoint, max_iters=100,
                               on_failure="ignore")  # fmt: skip
        return jnp.sum(jnp.sin(hs)), info

    (_, info), exact = jax.value_and_grad(loss, has_aux=True)(params, "dense")
    assert bool(info.converged)
    want = jax.grad(
        lambda p: jnp.sum(
            jnp.sin(lax_reference(functools.partial(dense_step, p), jnp.zeros(4), xs))
        )
    )(params)
    np.testing.assert_allclose(exact["w"], want["w"], rtol=1e-3, atol=1e-5)
    approx = jax.grad(lambda p: loss(p, None)[0])(params)
    assert float(jnp.max(jnp.abs(approx["w"] - want["w"]))) > 1e-3


def test_float64():
    with jax.enable_x64(True):
        params = dense_cell(jax.random.key(22), 4)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        xs = jax.random.normal(jax.random.key(23), (30, 4), dtype=jnp.float64)
        step = functools.partial(dense_step, params)
        hs, info = newton_scan(step, jnp.zeros(4, jnp.float64), xs)
        assert hs.dtype == jnp.float64 and float(info.residual) < 1e-10
        np.testing.assert_allclose(
            hs, lax_reference(step, jnp.zeros(4), xs), atol=1e-12
        )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(jacobian="sparse"), ValueError, r"unknown jacobian='sparse'.*'dense'"),
        (
            dict(on_failure="retry"),
            ValueError,
            r"unknown on_failure='retry'.*'fallback'",
        ),
        (dict(max_iters=-1), ValueError, r"max_iters must be an int >= 0"),
        (dict(damping=0.0), ValueError, r"damping must be in \(0, 1\]"),
        (dict(damping="lm"), ValueError, r"unknown damping='lm'"),
        (dict(damping=True), TypeError, r"damping must be None"),
        (
            dict(damping=LevenbergMarquardt(lam=0.0)),
            ValueError,
            r"lam must be finite and > 0",
        ),
        (
            dict(damping=LevenbergMarquardt(shrink=1.5)),
            ValueError,
            r"shrink must be in \(0, 1\]",
        ),
        (
            dict(damping=LevenbergMarquardt(grow=0.5)),
            ValueError,
            r"grow must be finite and >= 1",
        ),
        (dict(window=0), ValueError, r"window must be a positive int"),
        (dict(init="ones"), ValueError, r"init must be 'step', 'zeros'"),
        (dict(axis=3), ValueError, r"axis=3 is out of range"),
        (
            dict(h0=jnp.zeros(3, jnp.int32)),
            TypeError,
            r"real floating arrays, got int32",
        ),
        (dict(xs=jnp.ones((0, 3))), ValueError, r"time length of 0"),
        (
            dict(xs=(jnp.ones((5, 3)), jnp.ones((4, 3)))),
            ValueError,
            r"disagree on the time",
        ),
        (dict(h0=jnp.zeros(4)), TypeError, r"must return a state shaped like h"),
        (
            dict(jacobian="block", h0=(jnp.zeros(3), jnp.zeros(2))),
            ValueError,
            r"same shape",
        ),
        (dict(batch_ndim=1), ValueError, r"must come after the 1 batch axes"),
    ],
)
def test_bad_input(kwargs, error, match):
    step = lambda h, x: jax.tree.map(lambda h: jnp.tanh(h + x[..., :1].sum()), h)
    args = dict(step=step, h0=jnp.zeros(3), xs=jnp.ones((5, 3)))
    if (
        "h0" in kwargs
        and kwargs["h0"].__class__ is not tuple
        and kwargs["h0"].shape == (4,)
    ):
        args["step"] = lambda h, x: jnp.tanh(x)  # returns [3] for a [4] state
    args.update(kwargs)
    with pytest.raises(error, match=match):
        newton_scan(args.pop("step"), args.pop("h0"), args.pop("xs"), **args)
