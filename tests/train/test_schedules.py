"""Learning-rate schedules against plain-Python references of their formulas.

Each reference below is written from the formula (the docstring's math, and for the
infinite schedule the authors' code of Ibrahim et al. / Singh et al.), one step at a
time with ``math``; the schedules are jnp code evaluated on whole step ranges.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.train import schedules

RTOL = 1e-5
ATOL = 1e-7


def values(schedule, steps):
    return np.asarray(schedule(jnp.asarray(steps)), np.float64)


def check_against(schedule, reference, steps):
    steps = np.asarray(steps)
    got = values(schedule, steps)
    want = np.array([reference(int(t)) for t in steps])
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def jump(schedule, boundary, eps=1e-4):
    """|η(b + ε) − η(b − ε)| with float steps: the gap between the left and right
    limits at ``b``, up to the change over 2ε."""
    left = float(schedule(jnp.float32(boundary - eps)))
    right = float(schedule(jnp.float32(boundary + eps)))
    return abs(right - left)


def assert_continuous(schedule, boundaries, peak, eps=1e-4, tol=5e-3):
    # Over 2ε = 2e-4 steps a continuous schedule here moves by < tol·peak (the
    # steepest case, the 1-sqrt decay over 20 steps, moves by √(1e-4/20) ≈ 2e-3);
    # a jump moves by a sizeable part of the peak.
    for b in boundaries:
        assert jump(schedule, b, eps) <= tol * peak, b


def assert_monotone(schedule, start, stop, direction):
    v = values(schedule, np.arange(start, stop + 1))
    d = np.diff(v)
    if direction == "up":
        assert np.all(d >= -1e-7), (start, stop)
        assert v[-1] > v[0]
    elif direction == "down":
        assert np.all(d <= 1e-7), (start, stop)
        assert v[-1] < v[0]
    else:
        np.testing.assert_allclose(v, v[0], rtol=1e-6)


# --------------------------------------------------------------------------------
# references


def ref_warmup_cosine(t, peak, w, total, frac):
    final = frac * peak
    if t <= w:
        return peak * t / w if w else peak
    if t >= total:
        return final
    s = (t - w) / (total - w)
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * s))


def ref_wsd(t, peak, w, total, dfrac, shape, frac):
    final = frac * peak
    d = round(dfrac * total)
    start = total - d
    if t <= w:
        return peak * t / w if w else peak
    if t <= start or d == 0:
        return peak
    u = min((t - start) / d, 1.0)
    f = {
        "linear": 1 - u,
        "cosine": 0.5 * (1 + math.cos(math.pi * u)),
        "sqrt": 1 - math.sqrt(u),
    }[shape]
    return final + (peak - final) * f


def ref_rewarm(t, peaks, lengths, warmups, lo):
    start = 0
    for k, (p, n, w) in enumerate(zip(peaks, lengths, warmups, strict=True)):
        tau = t - start
        if (tau >= 0 if k == 0 else tau > 0) and tau <= n:
            if tau <= w:
                return lo + (p - lo) * tau / w if w else p
            s = (tau - w) / (n - w)
            return lo + 0.5 * (p - lo) * (1 + math.cos(math.pi * s))
        start += n
    return lo


def ref_infinite(t, peak, w, c, k, n, cfrac, ffrac, shape, alpha):
    """Phases as in ``infinite_lr`` of the Singh et al. / Ibrahim et al. code."""
    const, low = cfrac * peak, ffrac * peak
    if t <= w:
        return peak * t / w if w else peak
    if t <= w + c:
        s = (t - w) / c
        if shape == "inv_sqrt":

            def g(x):
                return 1 / math.sqrt(1 + alpha * x) - 1

            return peak + (const - peak) / g(1) * g(s)
        if shape == "cosine":
            return const + (peak - const) / 2 * (math.cos(math.pi * s) + 1)
        return peak - (peak - const) * s
    if k is None or t <= w + c + k:
        return const
    u = min(t - (w + c + k), n)
    # exp(-ln(const/low) · u / n), the code's form of const·(low/const)^(u/n)
    return const * math.exp(-math.log(const / low) * u / n)


# --------------------------------------------------------------------------------
# constant


def test_constant():
    s = schedules.constant(3e-4)
    np.testing.assert_allclose(values(s, np.arange(5)), 3e-4, rtol=1e-6)
    assert s.peak == 3e-4
    assert float(s(7)) == pytest.approx(3e-4)


# --------------------------------------------------------------------------------
# warmup + cosine


@pytest.mark.parametrize("w,total,frac", [(10, 110, 0.1), (0, 50, 0.0), (7, 8, 0.5)])
def test_warmup_cosine_matches_reference(w, total, frac):
    s = schedules.warmup_cosine(2.0, w, total, frac)
    check_against(
        s, lambda t: ref_warmup_cosine(t, 2.0, w, total, frac), range(total + 20)
    )


def test_warmup_cosine_endpoints_continuity_monotonicity():
    s = schedules.warmup_cosine(1.0, 10, 110, final_fraction=0.1)
    assert float(s(0)) == 0.0
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(110)) == pytest.approx(0.1, rel=1e-6)
    assert float(s(10_000)) == pytest.approx(0.1, rel=1e-6)
    assert_continuous(s, [10, 110], peak=1.0)
    assert_monotone(s, 0, 10, "up")
    assert_monotone(s, 10, 110, "down")
    assert_monotone(s, 110, 150, "flat")
    assert s.peak == 1.0


# --------------------------------------------------------------------------------
# warmup-stable-decay


@pytest.mark.parametrize("shape", schedules.DECAY_SHAPES)
@pytest.mark.parametrize("w,total,dfrac,frac", [(10, 100, 0.2, 0.0), (0, 50, 0.3, 0.1)])
def test_wsd_matches_reference(shape, w, total, dfrac, frac):
    s = schedules.warmup_stable_decay(2.0, w, total, dfrac, shape, frac)
    check_against(
        s,
        lambda t: ref_wsd(t, 2.0, w, total, dfrac, shape, frac),
        range(total + 20),
    )


@pytest.mark.parametrize("shape", schedules.DECAY_SHAPES)
def test_wsd_phases(shape):
    s = schedules.warmup_stable_decay(1.0, 10, 100, 0.2, shape, final_fraction=0.05)
    assert float(s(0)) == 0.0
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(80)) == pytest.approx(1.0)
    assert float(s(100)) == pytest.approx(0.05, rel=1e-5)
    assert float(s(1000)) == pytest.approx(0.05, rel=1e-5)
    assert_continuous(s, [10, 80, 100], peak=1.0)
    assert_monotone(s, 0, 10, "up")
    assert_monotone(s, 10, 80, "flat")
    assert_monotone(s, 80, 100, "down")


def test_wsd_without_decay_keeps_the_peak():
    s = schedules.warmup_stable_decay(1.0, 5, 20, decay_fraction=0.0)
    np.testing.assert_allclose(values(s, np.arange(5, 40)), 1.0)


# --------------------------------------------------------------------------------
# re-warming cycles


def test_rewarm_cycles_matches_reference():
    peaks, lengths, warmups = [1.0, 0.5, 0.75], [100, 50, 30], [10, 5, 0]
    s = schedules.rewarm_cycles(peaks, lengths, warmups, min_lr=0.1)
    check_against(s, lambda t: ref_rewarm(t, peaks, lengths, warmups, 0.1), range(220))
    assert s.peak == 1.0


def test_rewarm_cycles_boundaries():
    s = schedules.rewarm_cycles(1.0, 40, 8, num_cycles=3, min_lr=0.2)
    # every cycle starts and ends at min_lr and reaches its peak after warmup
    for start in (0, 40, 80):
        assert float(s(start)) == pytest.approx(0.2)
        assert float(s(start + 8)) == pytest.approx(1.0)
        assert float(s(start + 40)) == pytest.approx(0.2, rel=1e-5)
        assert_monotone(s, start, start + 8, "up")
        assert_monotone(s, start + 8, start + 40, "down")
    assert float(s(500)) == pytest.approx(0.2)
    assert_continuous(s, [8, 40, 48, 80, 88, 120], peak=1.0)


def test_rewarm_without_warmup_jumps_and_the_checker_sees_it():
    """``warmup_steps=0`` on a later cycle is a deliberate jump; the continuity
    check used in these tests must be able to see such a jump."""
    s = schedules.rewarm_cycles([1.0, 1.0], [20, 20], [5, 0], min_lr=0.0)
    assert jump(s, 20) > 0.9
    with pytest.raises(AssertionError):
        assert_continuous(s, [20], peak=1.0)


# --------------------------------------------------------------------------------
# infinite schedule (Ibrahim et al., 2024)

INF = dict(w=10, c=40, k=50, n=20, cfrac=0.55, ffrac=0.1)


@pytest.mark.parametrize("shape", schedules.COOLDOWN_SHAPES)
def test_infinite_matches_the_authors_formulas(shape):
    p = INF
    s = schedules.infinite(
        3e-4,
        p["w"],
        p["c"],
        p["k"],
        p["n"],
        constant_fraction=p["cfrac"],
        final_fraction=p["ffrac"],
        cooldown_shape=shape,
        timescale=10.0,
    )
    check_against(
        s,
        lambda t: ref_infinite(
            t, 3e-4, p["w"], p["c"], p["k"], p["n"], p["cfrac"], p["ffrac"], shape, 10
        ),
        range(150),
    )


@pytest.mark.parametrize("shape", schedules.COOLDOWN_SHAPES)
def test_infinite_phases(shape):
    peak, cfrac, ffrac = 1.0, 0.55, 0.1
    s = schedules.infinite(
        peak,
        10,
        40,
        50,
        20,
        constant_fraction=cfrac,
        final_fraction=ffrac,
        cooldown_shape=shape,
    )
    boundaries = {"warmup": 10, "cooldown": 50, "constant": 100, "anneal": 120}
    assert float(s(0)) == 0.0
    assert float(s(boundaries["warmup"])) == pytest.approx(peak)
    assert float(s(boundaries["cooldown"])) == pytest.approx(cfrac * peak, rel=1e-5)
    assert float(s(boundaries["constant"])) == pytest.approx(cfrac * peak, rel=1e-5)
    assert float(s(boundaries["anneal"])) == pytest.approx(ffrac * peak, rel=1e-5)
    assert float(s(10**6)) == pytest.approx(ffrac * peak, rel=1e-5)
    assert_continuous(s, list(boundaries.values()), peak=peak)
    assert_monotone(s, 0, 10, "up")
    assert_monotone(s, 10, 50, "down")
    assert_monotone(s, 50, 100, "flat")
    assert_monotone(s, 100, 120, "down")


def test_infinite_annealing_is_exponential():
    """log η is linear in the step during annealing (constant ratio per step)."""
    s = schedules.infinite(
        1.0, 0, 10, 10, 40, constant_fraction=0.5, final_fraction=0.01
    )
    v = values(s, np.arange(20, 61))
    ratios = v[1:] / v[:-1]
    np.testing.assert_allclose(ratios, (0.01 / 0.5) ** (1 / 40), rtol=1e-4)


def test_infinite_inv_sqrt_cooldown_is_front_loaded():
    """The inverse-sqrt cooldown drops faster early than a linear one."""
    kw = dict(constant_fraction=0.5, final_fraction=0.1)
    inv = schedules.infinite(1.0, 0, 100, 10, 10, cooldown_shape="inv_sqrt", **kw)
    lin = schedules.infinite(1.0, 0, 100, 10, 10, cooldown_shape="linear", **kw)
    assert float(inv(25)) < float(lin(25))
    assert float(inv(100)) == pytest.approx(float(lin(100)))


def test_infinite_without_end_stays_constant():
    s = schedules.infinite(1.0, 5, 20, None, constant_fraction=0.3, final_fraction=0.1)
    np.testing.assert_allclose(values(s, [25, 1000, 10**6]), 0.3, rtol=1e-6)


def test_infinite_later_run_continues_at_the_constant():
    s = schedules.infinite(
        0.3, 0, 0, 100, 10, constant_fraction=1.0, final_fraction=0.1
    )
    assert float(s(0)) == pytest.approx(0.3)
    assert float(s(100)) == pytest.approx(0.3)
    assert float(s(110)) == pytest.approx(0.03, rel=1e-5)


# --------------------------------------------------------------------------------
# jit, dtypes


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.constant(0.1),
        schedules.warmup_cosine(0.1, 3, 20),
        schedules.warmup_stable_decay(0.1, 3, 20, decay_shape="sqrt"),
        schedules.rewarm_cycles(0.1, 10, 2, num_cycles=2),
        schedules.infinite(0.1, 2, 5, 5, 5),
    ],
    ids=lambda s: s.__name__,
)
def test_jit_and_int32_steps(schedule):
    steps = jnp.arange(30, dtype=jnp.int32)
    eager = np.asarray(schedule(steps))
    jitted = np.asarray(jax.jit(schedule)(steps))
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)  # XLA may fuse ops
    assert schedule(jnp.int32(4)).dtype == jnp.float32
    assert schedule(jnp.int32(4)).shape == ()
    assert eager.max() == pytest.approx(schedule.peak)


# --------------------------------------------------------------------------------
# make_schedule


def test_make_schedule_dispatches():
    a = schedules.make_schedule(
        "warmup_cosine", peak=1.0, warmup_steps=3, total_steps=30
    )
    b = schedules.warmup_cosine(1.0, 3, 30)
    np.testing.assert_array_equal(values(a, range(40)), values(b, range(40)))
    c = schedules.make_schedule("WSD", peak=1.0, warmup_steps=3, total_steps=30)
    d = schedules.warmup_stable_decay(1.0, 3, 30)
    np.testing.assert_array_equal(values(c, range(40)), values(d, range(40)))
    e = schedules.make_schedule(
        "Warmup-Cosine", peak=1.0, warmup_steps=0, total_steps=5
    )
    assert float(e(0)) == 1.0
    assert set(schedules.schedule_names()) >= {
        "constant",
        "warmup_cosine",
        "warmup_stable_decay",
        "wsd",
        "rewarm_cycles",
        "infinite",
    }


def test_schedule_arguments():
    assert schedules.schedule_arguments("warmup_cosine") == (
        "peak",
        "warmup_steps",
        "total_steps",
        "final_fraction",
    )
    assert "constant_fraction" in schedules.schedule_arguments("Infinite")
    assert schedules.schedule_arguments("wsd") == schedules.schedule_arguments(
        "warmup_stable_decay"
    )
    with pytest.raises(ValueError, match="valid names"):
        schedules.schedule_arguments("nope")


def test_make_schedule_errors_list_valid_choices():
    with pytest.raises(ValueError, match="valid names: .*infinite.*warmup_cosine"):
        schedules.make_schedule("cosine_restarts", peak=1.0)
    with pytest.raises(ValueError, match=r"\['warmup'\].*valid arguments: peak, "):
        schedules.make_schedule(
            "warmup_cosine", peak=1.0, warmup=3, warmup_steps=1, total_steps=9
        )
    with pytest.raises(ValueError, match="needs argument.*total_steps"):
        schedules.make_schedule("warmup_cosine", peak=1.0, warmup_steps=3)
    with pytest.raises(TypeError, match="name must be a str"):
        schedules.make_schedule(3)


# --------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: schedules.constant(0.0), ValueError, "lr must be finite and > 0"),
        (lambda: schedules.constant(float("nan")), ValueError, "lr"),
        (lambda: schedules.constant("1e-3"), TypeError, "lr must be a real"),
        (lambda: schedules.warmup_cosine(-1.0, 1, 10), ValueError, "peak"),
        (lambda: schedules.warmup_cosine(1.0, 10, 10), ValueError, "warmup_steps must"),
        (lambda: schedules.warmup_cosine(1.0, -1, 10), ValueError, "warmup_steps"),
        (lambda: schedules.warmup_cosine(1.0, 1, 0), ValueError, "total_steps"),
        (lambda: schedules.warmup_cosine(1.0, 1.5, 10), TypeError, "warmup_steps"),
        (lambda: schedules.warmup_cosine(1.0, True, 10), TypeError, "warmup_steps"),
        (lambda: schedules.warmup_cosine(1.0, 1, 10, 1.5), ValueError, "final_frac"),
        (
            lambda: schedules.warmup_stable_decay(1.0, 1, 10, decay_shape="exp"),
            ValueError,
            "decay_shape must be one of",
        ),
        (
            lambda: schedules.warmup_stable_decay(1.0, 9, 10, decay_fraction=0.5),
            ValueError,
            "overlaps the decay",
        ),
        (
            lambda: schedules.warmup_stable_decay(1.0, 1, 10, decay_fraction=-0.1),
            ValueError,
            "decay_fraction",
        ),
        (
            lambda: schedules.rewarm_cycles(1.0, 10, 2),
            ValueError,
            "num_cycles is required",
        ),
        (
            lambda: schedules.rewarm_cycles([1.0, 2.0], [10, 10, 10], 2),
            ValueError,
            "same length",
        ),
        (
            lambda: schedules.rewarm_cycles([1.0, 2.0], 10, 2, num_cycles=3),
            ValueError,
            "num_cycles=3",
        ),
        (
            lambda: schedules.rewarm_cycles(1.0, 10, 10, num_cycles=1),
            ValueError,
            r"warmup_steps\[0\]=10 must be < cycle_steps\[0\]=10",
        ),
        (
            lambda: schedules.rewarm_cycles(0.1, 10, 2, num_cycles=1, min_lr=0.1),
            ValueError,
            "must be > min_lr",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 0, 5, 5, constant_fraction=0.5),
            ValueError,
            "cooldown_steps=0 needs constant_fraction=1",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 5, 5, 5, final_fraction=0.0),
            ValueError,
            "final_fraction must be in",
        ),
        (
            lambda: schedules.infinite(
                1.0, 1, 5, 5, 5, constant_fraction=0.2, final_fraction=0.3
            ),
            ValueError,
            "final_fraction must be in",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 5, None, 5),
            ValueError,
            "anneal_steps must be 0",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 5, 5, 0),
            ValueError,
            "anneal_steps must be > 0",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 5, 5, 5, cooldown_shape="exp"),
            ValueError,
            "cooldown_shape",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 5, 5, 5, constant_fraction=0.0),
            ValueError,
            "constant_fraction",
        ),
        (
            lambda: schedules.infinite(1.0, 1, 5, 5, 5, timescale=0.0),
            ValueError,
            "timescale",
        ),
    ],
)
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()
