"""S5: protocol checks, a full-size per-step reference, HiPPO-N initialisation."""

import jax
import jax.numpy as jnp
import linear_ssm_checks as checks
import numpy as np
import pytest
from flax import nnx

from seqjax.nn import hippo, s5

H, P, J = 3, 8, 2
FAST = dict(dt_min=0.05, dt_max=0.5)  # steps large enough that the SSM term shows


def make(dtype=jnp.float32, **kw):
    kw = {**FAST, **kw}
    return s5.S5(H, state_size=P, blocks=J, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def _starts(segment_ids, x):
    if segment_ids is None:
        return jnp.zeros(x.shape[:2], bool)
    first = jnp.ones_like(segment_ids[:, :1], bool)
    return jnp.concatenate([first, segment_ids[:, 1:] != segment_ids[:, :-1]], 1)


def reference(m, u, segment_ids=None):
    """The real system with explicit per-step matrices, by ``lax.scan``.

    Under conjugate symmetry the kept states are completed by their conjugates, so
    the reference runs all ``P`` states with ``Ā = diag(Λ̄, conj Λ̄)``,
    ``B̄ = [B̄; conj B̄]``, ``C = [C̃, conj C̃]`` and ``y = Re(C x) + D u``.
    ``B̄`` comes from matrix formulas: ZOH ``Λ⁻¹(exp(ΛΔ) - I) B̃``, bilinear
    ``(I - ΔΛ/2)⁻¹ Δ B̃``.
    """
    re = m.lambda_re[...]
    if m.clip_eigs:
        re = jnp.minimum(re, -1e-4)
    lam = jnp.diag(re + 1j * m.lambda_im[...])
    delta = jnp.diag(jnp.exp(m.log_step[...]))
    eye = jnp.eye(lam.shape[0])
    b = m.B_re[...] + 1j * m.B_im[...]
    if m.discretization == "zoh":
        a_bar = jnp.diag(jnp.exp(jnp.diag(lam @ delta)))
        b_bar = jnp.linalg.solve(lam, (a_bar - eye) @ b)
    else:
        inv = jnp.linalg.inv(eye - delta @ lam / 2)
        a_bar = inv @ (eye + delta @ lam / 2)
        b_bar = inv @ delta @ b
    cs = [m.C_re[...] + 1j * m.C_im[...]]
    if m.bidirectional:
        cs.append(m.C2_re[...] + 1j * m.C2_im[...])
    if m.conj_sym:
        zero = jnp.zeros_like(a_bar)
        a_bar = jnp.block([[a_bar, zero], [zero, a_bar.conj()]])
        b_bar = jnp.concatenate([b_bar, b_bar.conj()], 0)
        cs = [jnp.concatenate([c, c.conj()], 1) for c in cs]
    starts = _starts(segment_ids, u)
    ends = jnp.concatenate([starts[:, 1:], jnp.ones_like(starts[:, :1])], 1)

    def run(reset, reverse):
        def step(x, inputs):
            u_t, r = inputs
            x = jnp.where(r[:, None], 0.0, x)
            x = x @ a_bar.T + u_t @ b_bar.T
            return x, x

        x0 = jnp.zeros((u.shape[0], a_bar.shape[0]), jnp.complex64)
        _, xs = jax.lax.scan(
            step, x0, (jnp.swapaxes(u, 0, 1), reset.T), reverse=reverse
        )
        return jnp.swapaxes(xs, 0, 1)

    y = jnp.real(run(starts, False) @ cs[0].T)
    if m.bidirectional:
        # Backwards, a reset before position t means "t is a segment's last step".
        y = y + jnp.real(run(ends, True) @ cs[1].T)
    return y + m.D[...] * u


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(
            conj_sym=False,
            discretization="bilinear",
            c_init="complex_normal",
            method="associative",
        ),
    ],
)
def test_step_matches_parallel(kw):
    checks.assert_step_matches_parallel(make(**kw), checks.random_inputs((2, 9, H)))


def test_causal():
    checks.assert_causal(make(), checks.random_inputs((2, 8, H)), t=4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_resets_match_segments(bidirectional):
    checks.assert_resets_match_segments(
        make(bidirectional=bidirectional),
        checks.random_inputs((2, 9, H)),
        [[3, 3, 3], [6, 3]],
    )


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(conj_sym=False, discretization="bilinear", c_init="lecun_normal"),
        dict(bidirectional=True, clip_eigs=True),
    ],
)
def test_values_and_param_grads_match_reference(kw):
    layer = make(**kw)
    x = checks.random_inputs((2, 7, H))
    if not kw:
        checks.assert_grads_match_reference(layer, x, reference)
    else:  # Row 0 is packed (resets); row 1 is one plain sequence.
        ids = checks.packed_segment_ids([[2, 5], [7]])
        checks.assert_grads_match_reference(layer, x, reference, segment_ids=ids)


def test_bidirectional_reads_the_future_and_has_no_step():
    layer = make(bidirectional=True)
    x = checks.random_inputs((1, 6, H))
    y = layer(x)
    y2 = layer(x.at[:, -1].add(1.0))
    assert not np.allclose(y[:, 0], y2[:, 0])
    with pytest.raises(ValueError, match="bidirectional"):
        layer.init_state(1)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(jnp.zeros((1, P // 2), jnp.complex64), x[:, 0])


def test_jit_and_vmap():
    checks.assert_jit_and_vmap(make(), checks.random_inputs((2, 6, H)))
    checks.assert_traceable_init(make)


def test_bad_shapes_and_hyperparameters():
    checks.assert_bad_shapes_raise(make(), H)
    with pytest.raises(ValueError, match="method"):
        make(method="fast")
    with pytest.raises(ValueError, match="multiple of blocks"):
        s5.S5(H, state_size=10, blocks=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        s5.S5(H, state_size=6, blocks=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="c_init"):
        make(c_init="glorot")
    with pytest.raises(ValueError, match="discretization"):
        make(discretization="euler")
    with pytest.raises(ValueError, match="dt_min"):
        make(dt_min=0.0)
    with pytest.raises(ValueError, match="state"):
        make().step(jnp.zeros((2, P), jnp.complex64), jnp.zeros((2, H)))


def test_bfloat16_close_to_float32():
    checks.assert_bfloat16_close(make, checks.random_inputs((2, 16, H)))


@pytest.mark.parametrize("conj_sym", [True, False])
def test_hippo_n_block_initialisation(conj_sym):
    p, blocks, h = 64, 4, H
    layer = s5.S5(h, state_size=p, blocks=blocks, conj_sym=conj_sym, rngs=nnx.Rngs(4))
    block = p // blocks
    lam_block, v = hippo.diagonalize_normal_legs(block)
    if conj_sym:
        lam_block, v = lam_block[: block // 2], v[:, : block // 2]
    lam = np.asarray(layer.continuous())
    assert lam.shape == (p // 2 if conj_sym else p,)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-6)
    np.testing.assert_allclose(lam, np.tile(lam_block, blocks), rtol=1e-5, atol=1e-5)
    if conj_sym:
        assert np.all(lam.imag < 0)
    step = np.exp(np.asarray(layer.log_step[...]))
    assert step.shape == lam.shape and np.all((step >= 1e-3) & (step <= 1e-1))

    # B̃ = V⁻¹ B for a real B of variance 1/P: map back through V and check.
    m = v.shape[1]
    b_tilde = np.asarray(layer.B_re[...] + 1j * layer.B_im[...]).reshape(blocks, m, h)
    b = np.einsum("km,jmh->jkh", v, b_tilde)
    b = 2 * b.real if conj_sym else b
    if not conj_sym:
        np.testing.assert_allclose(b.imag, 0, atol=1e-5)
        b = b.real
    assert abs(np.std(b) * np.sqrt(p) - 1) < 0.15
    assert np.max(np.abs(b)) <= 2 / 0.8796 / np.sqrt(p) + 1e-5  # truncated at 2σ
    # C̃ = C V: C = C̃ V^* (exact when all states are kept).
    if not conj_sym:
        c_tilde = np.asarray(layer.C_re[...] + 1j * layer.C_im[...])
        c = np.einsum("hjm,km->hjk", c_tilde.reshape(h, blocks, m), v.conj())
        assert abs(np.std(c.real) * np.sqrt(p) - 1) < 0.15
