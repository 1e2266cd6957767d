"""Learning-rate schedules: pure functions ``step -> learning rate``.

Every function here validates its arguments and returns an ``optax.Schedule``: a
jit-safe function of the (integer) optimizer step that returns a float32 scalar.
Each returned schedule also carries a ``peak`` attribute, its largest value, so that
``seqjax.train.optimizers.make_optimizer`` can derive an SSM schedule of the same
shape with a different peak.

Names for ``make_schedule``: ``constant``, ``warmup_cosine``,
``warmup_stable_decay`` (alias ``wsd``), ``rewarm_cycles`` and ``infinite``.

Conventions shared by all schedules: ``t`` is the optimizer step (0 for the first
update); a linear warmup of ``W`` steps goes from 0 at ``t = 0`` to the peak at
``t = W`` (so the very first update has learning rate 0 unless ``W = 0``); after
the last step of a finite schedule the value stays at its final value. Every phase
boundary is continuous unless a docstring says otherwise.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import optax

Schedule = optax.Schedule

DECAY_SHAPES = ("linear", "cosine", "sqrt")
COOLDOWN_SHAPES = ("inv_sqrt", "cosine", "linear")


# --------------------------------------------------------------------------------
# argument checks


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value}.")
    return value


def _nonnegative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}.")
    return value


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}.")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")
    return value


def _steps(name: str, value: Any, *, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int number of steps, got {value!r}.")
    value = int(value)
    if value < (1 if positive else 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return value


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def _named(fn: Callable[[Any], Any], name: str, peak: float) -> Schedule:
    fn.__name__ = fn.__qualname__ = name
    fn.peak = peak  # type: ignore[attr-defined]
    return fn


def _time(step: Any) -> jnp.ndarray:
    return jnp.asarray(step, jnp.float32)


def _progress(t: jnp.ndarray, start: float, length: float) -> jnp.ndarray:
    """``(t - start) / length`` clipped to [0, 1]; 0 for an empty phase."""
    return jnp.clip((t - start) / max(length, 1.0), 0.0, 1.0)


def _warmup(t: jnp.ndarray, peak: float, warmup_steps: int) -> jnp.ndarray:
    if warmup_steps == 0:
        return jnp.full_like(t, peak)
    return peak * jnp.clip(t / warmup_steps, 0.0, 1.0)


def _cosine(u: jnp.ndarray, start: float, end: float) -> jnp.ndarray:
    return end + 0.5 * (start - end) * (1.0 + jnp.cos(jnp.pi * u))


# --------------------------------------------------------------------------------
# schedules


def constant(lr: float) -> Schedule:
    """A constant learning rate.

    .. math:: \\eta_t = \\eta

    Args:
      lr: the learning rate ``η > 0``.

    Returns:
      A schedule with ``peak == lr``.

    Raises:
      ValueError, TypeError: ``lr`` not a finite positive number.

    Example:
      >>> round(float(constant(3e-4)(1000)), 6)
      0.0003
    """
    lr = _positive_float("lr", lr)

    def schedule(step):
        return jnp.full(jnp.shape(step), lr, jnp.float32)

    return _named(schedule, "constant", lr)


def warmup_cosine(
    peak: float,
    warmup_steps: int,
    total_steps: int,
    final_fraction: float = 0.0,
) -> Schedule:
    """Linear warmup to ``peak``, then a half cosine down to ``final_fraction·peak``.

    .. math:: \\eta_t = \\begin{cases} \\eta_{max}\\, t/W & t \\le W \\\\
        \\eta_f + \\tfrac12(\\eta_{max}-\\eta_f)(1+\\cos\\pi s),\\;
        s = \\tfrac{t-W}{T-W} & W < t \\le T \\\\ \\eta_f & t > T \\end{cases}

    with ``η_f = final_fraction · η_max``. This is the usual schedule of the S5 and
    LRU papers ("Simplified State Space Layers for Sequence Modeling"; "Resurrecting
    Recurrent Neural Networks for Long Sequences", App. D) and of most language
    model pre-training.

    Args:
      peak: ``η_max > 0``.
      warmup_steps: ``W >= 0``; ``0`` starts at the peak.
      total_steps: ``T > W``; the value is ``η_f`` from step ``T`` on.
      final_fraction: ``η_f / η_max`` in [0, 1].

    Returns:
      The schedule, with ``peak`` set.

    Raises:
      ValueError, TypeError: bad values (non-positive peak, negative or non-integer
        step counts, ``warmup_steps >= total_steps``, fraction outside [0, 1]).

    Example:
      >>> s = warmup_cosine(1.0, 10, 110, final_fraction=0.1)
      >>> [round(float(s(t)), 4) for t in (0, 5, 10, 60, 110, 500)]
      [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """
    peak = _positive_float("peak", peak)
    warmup_steps = _steps("warmup_steps", warmup_steps)
    total_steps = _steps("total_steps", total_steps, positive=True)
    final_fraction = _fraction("final_fraction", final_fraction)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps must be < total_steps, got warmup_steps={warmup_steps}, "
            f"total_steps={total_steps}."
        )
    final = final_fraction * peak
    decay_steps = total_steps - warmup_steps

    def schedule(step):
        t = _time(step)
        decay = _cosine(_progress(t, warmup_steps, decay_steps), peak, final)
        return jnp.where(t <= warmup_steps, _warmup(t, peak, warmup_steps), decay)

    return _named(schedule, "warmup_cosine", peak)


def warmup_stable_decay(
    peak: float,
    warmup_steps: int,
    total_steps: int,
    decay_fraction: float = 0.2,
    decay_shape: str = "linear",
    final_fraction: float = 0.0,
) -> Schedule:
    """Warmup-stable-decay (WSD): warmup, a long constant phase, a short decay.

    .. math:: \\eta_t = \\begin{cases} \\eta_{max}\\, t/W & t \\le W \\\\
        \\eta_{max} & W < t \\le S \\\\
        \\eta_f + (\\eta_{max}-\\eta_f)\\, f\\big(\\tfrac{t-S}{T-S}\\big) & S < t \\le T
        \\\\ \\eta_f & t > T \\end{cases}

    with ``T - S = round(decay_fraction · T)`` decay steps, ``η_f = final_fraction ·
    η_max`` and the decay shape ``f(u)``: ``"linear"`` ``1 - u``; ``"cosine"``
    ``½(1 + cos πu)``; ``"sqrt"`` ``1 - √u`` (the "1-sqrt" cooldown). WSD is from
    "MiniCPM: Unveiling the Potential of Small Language Models with Scalable
    Training Strategies"; the linear and 1-sqrt cooldowns are compared in "Scaling
    Laws and Compute-Optimal Training Beyond Fixed Training Durations".

    Args:
      peak: ``η_max > 0``.
      warmup_steps: ``W >= 0``.
      total_steps: ``T > 0``.
      decay_fraction: share of ``T`` spent decaying, in [0, 1]; ``0`` keeps the
        peak to the end.
      decay_shape: ``"linear"``, ``"cosine"`` or ``"sqrt"``.
      final_fraction: ``η_f / η_max`` in [0, 1].

    Returns:
      The schedule, with ``peak`` set.

    Raises:
      ValueError, TypeError: bad values, an unknown ``decay_shape``, or a warmup
        that overlaps the decay (``W > S``).

    Example:
      >>> s = warmup_stable_decay(1.0, 10, 100, decay_fraction=0.2)
      >>> [round(float(s(t)), 4) for t in (5, 10, 50, 80, 90, 100)]
      [0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    """
    peak = _positive_float("peak", peak)
    warmup_steps = _steps("warmup_steps", warmup_steps)
    total_steps = _steps("total_steps", total_steps, positive=True)
    decay_fraction = _fraction("decay_fraction", decay_fraction)
    decay_shape = _choice("decay_shape", decay_shape, DECAY_SHAPES)
    final_fraction = _fraction("final_fraction", final_fraction)
    decay_steps = int(round(decay_fraction * total_steps))
    decay_start = total_steps - decay_steps
    if warmup_steps > decay_start or warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} overlaps the decay phase, which starts at "
            f"step {decay_start} (total_steps={total_steps}, "
            f"decay_fraction={decay_fraction}); need warmup_steps <= total_steps - "
            "round(decay_fraction * total_steps) and warmup_steps < total_steps."
        )
    final = final_fraction * peak

    def schedule(step):
        t = _time(step)
        u = _progress(t, decay_start, decay_steps)
        if decay_shape == "linear":
            f = 1.0 - u
        elif decay_shape == "cosine":
            f = 0.5 * (1.0 + jnp.cos(jnp.pi * u))
        else:
            f = 1.0 - jnp.sqrt(u)
        decay = final + (peak - final) * f
        if decay_steps == 0:
            decay = jnp.full_like(t, peak)
        stable = jnp.where(t <= decay_start, peak, decay)
        return jnp.where(t <= warmup_steps, _warmup(t, peak, warmup_steps), stable)

    return _named(schedule, "warmup_stable_decay", peak)


def _per_cycle(name: str, value: Any, num_cycles: int) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * num_cycles
    if len(value) != num_cycles:
        raise ValueError(
            f"{name} has {len(value)} entries but there are {num_cycles} cycles."
        )
    return list(value)


def rewarm_cycles(
    peaks: float | Sequence[float],
    cycle_steps: int | Sequence[int],
    warmup_steps: int | Sequence[int],
    *,
    num_cycles: int | None = None,
    min_lr: float = 0.0,
) -> Schedule:
    """Re-warming cycles for continued training: warmup + cosine, repeated.

    Cycle ``k`` starts at ``B_k = L_0 + … + L_{k-1}``; with ``τ = t - B_k``:

    .. math:: \\eta_t = \\begin{cases} \\eta_{min} + (P_k-\\eta_{min})\\,\\tau/W_k &
        \\tau \\le W_k \\\\ \\eta_{min} + \\tfrac12 (P_k-\\eta_{min})(1+\\cos\\pi
        \\tfrac{\\tau-W_k}{L_k-W_k}) & W_k < \\tau \\le L_k \\end{cases}

    and ``η_min`` after the last cycle. Each cycle re-warms linearly from ``η_min``
    (where the previous cycle ended, so the schedule is continuous at cycle
    boundaries) to its own peak ``P_k``, then decays back to ``η_min`` by a half
    cosine: the "re-warming and re-decaying" of "Simple and Scalable Strategies to
    Continually Pre-train Large Language Models" (one cycle per dataset) and
    "Continual Pre-Training of Large Language Models: How to (re)warm your model?".
    GPT-NeoX's re-warm starts from 0 instead; with ``min_lr=0`` the two agree.

    Args:
      peaks: ``P_k > min_lr``: one value for every cycle, or one per cycle.
      cycle_steps: ``L_k > 0``: one value or one per cycle.
      warmup_steps: ``W_k`` with ``0 <= W_k < L_k``: one value or one per cycle.
      num_cycles: needed when all three are scalars; otherwise inferred (and, if
        given, checked).
      min_lr: ``η_min >= 0``, the floor every cycle starts from and decays to.

    Returns:
      The schedule; ``peak`` is the largest ``P_k``.

    Raises:
      ValueError, TypeError: bad values, sequences of different lengths, or no
        ``num_cycles`` when nothing says how many cycles there are.

    Example:
      >>> s = rewarm_cycles([1.0, 0.5], [100, 50], 10, min_lr=0.1)
      >>> [round(float(s(t)), 4) for t in (0, 10, 100, 110, 150, 400)]
      [0.1, 1.0, 0.1, 0.5, 0.1, 0.1]
    """
    lengths = [
        len(v)
        for v in (peaks, cycle_steps, warmup_steps)
        if isinstance(v, Sequence) and not isinstance(v, (str, bytes))
    ]
    if len(set(lengths)) > 1:
        raise ValueError(
            "peaks, cycle_steps and warmup_steps given as sequences must have the "
            f"same length, got lengths {lengths}."
        )
    if num_cycles is not None:
        num_cycles = _steps("num_cycles", num_cycles, positive=True)
        if lengths and lengths[0] != num_cycles:
            raise ValueError(
                f"num_cycles={num_cycles} but the per-cycle sequences have "
                f"{lengths[0]} entries."
            )
    elif lengths:
        num_cycles = lengths[0]
    else:
        raise ValueError(
            "num_cycles is required when peaks, cycle_steps and warmup_steps are "
            "all scalars."
        )
    if num_cycles < 1:
        raise ValueError("rewarm_cycles needs at least one cycle.")
    min_lr = _nonnegative_float("min_lr", min_lr)
    peak_list = [
        _positive_float(f"peaks[{k}]", p)
        for k, p in enumerate(_per_cycle("peaks", peaks, num_cycles))
    ]
    cycle_list = [
        _steps(f"cycle_steps[{k}]", n, positive=True)
        for k, n in enumerate(_per_cycle("cycle_steps", cycle_steps, num_cycles))
    ]
    warmup_list = [
        _steps(f"warmup_steps[{k}]", w)
        for k, w in enumerate(_per_cycle("warmup_steps", warmup_steps, num_cycles))
    ]
    for k, (p, n, w) in enumerate(zip(peak_list, cycle_list, warmup_list, strict=True)):
        if p <= min_lr:
            raise ValueError(f"peaks[{k}]={p} must be > min_lr={min_lr}.")
        if w >= n:
            raise ValueError(f"warmup_steps[{k}]={w} must be < cycle_steps[{k}]={n}.")
    starts = [sum(cycle_list[:k]) for k in range(num_cycles)]

    def schedule(step):
        t = _time(step)
        value = jnp.full_like(t, min_lr)
        # Walk the cycles from last to first so that each ``where`` overrides the
        # value for the steps of its own cycle.
        for start, n, w, p in reversed(
            list(zip(starts, cycle_list, warmup_list, peak_list, strict=True))
        ):
            tau = t - start
            if w == 0:
                up = jnp.full_like(t, p)
            else:
                up = min_lr + (p - min_lr) * jnp.clip(tau / w, 0.0, 1.0)
            down = _cosine(_progress(tau, w, n - w), p, min_lr)
            in_cycle = (tau >= 0) & (tau <= n)
            if start > 0:
                # The first step of a later cycle is the previous cycle's end.
                in_cycle = (tau > 0) & (tau <= n)
            value = jnp.where(in_cycle, jnp.where(tau <= w, up, down), value)
        return value

    return _named(schedule, "rewarm_cycles", max(peak_list))


def infinite(
    peak: float,
    warmup_steps: int,
    cooldown_steps: int,
    constant_steps: int | None,
    anneal_steps: int = 0,
    *,
    constant_fraction: float = 0.55,
    final_fraction: float = 0.1,
    cooldown_shape: str = "inv_sqrt",
    timescale: float = 10.0,
) -> Schedule:
    """The four-phase "infinite" schedule: warmup, cooldown, constant, anneal.

    With ``η_c = constant_fraction · η_max``, ``η_min = final_fraction · η_max``,
    ``A = W + C + K`` (the start of annealing) and ``N`` annealing steps:

    .. math:: \\eta_t = \\begin{cases} \\eta_{max}\\, t/W & t \\le W
        \\;\\text{(warmup)} \\\\ \\eta_{max} + (\\eta_c - \\eta_{max})\\,
        \\frac{g(s)}{g(1)},\\; s = \\tfrac{t-W}{C} & W < t \\le W+C
        \\;\\text{(cooldown)} \\\\ \\eta_c & W+C < t \\le A \\;\\text{(constant)} \\\\
        \\eta_c\\,(\\eta_{min}/\\eta_c)^{(t-A)/N} & A < t \\le A+N
        \\;\\text{(anneal)} \\\\ \\eta_{min} & t > A + N \\end{cases}

    Cooldown shapes: ``"inv_sqrt"`` uses ``g(s) = (1 + α s)^{-1/2} - 1`` with
    ``α = timescale``; ``"cosine"`` is ``η_c + ½(η_max - η_c)(1 + cos πs)``;
    ``"linear"`` is ``η_max + (η_c - η_max) s``. With ``constant_steps=None`` the
    constant phase never ends (no annealing): the schedule for training on while
    new data keeps arriving. A later run (a new dataset) continues with
    ``warmup_steps=0, cooldown_steps=0, constant_fraction=1`` and ``peak = η_c``:
    no re-warming, which is the point of the schedule.

    Reference: "Simple and Scalable Strategies to Continually Pre-train Large
    Language Models" (Ibrahim et al., 2024), Section 7 ("infinite learning rate
    schedules"), reused by "Beyond Cosine Decay: On the effectiveness of Infinite
    Learning Rate Schedule for Continual Pre-training" (Singh et al., 2025).

    What was checked, and against what:

    - The four phases and their order (warmup → cooldown to a constant →
      constant → short annealing to a floor, with no re-warming on new data)
      match the abstract of Ibrahim et al. and a secondary summary of the
      paper.
    - The cooldown forms (``inv_sqrt`` with ``g(s) = 1/√(1 + α s) - 1``
      normalised by ``g(1)``; ``cosine``; ``linear``) and the exponential
      annealing ``η_c·exp(-ln(η_c/η_min)·u/N)`` were checked line by line
      against the authors' code: ``infinite_lr`` in ``infinite_scheduler.py``
      of Pauljanson002/MAE-1 (code of Singh et al., with Ibrahim as co-author;
      it uses ``α = 10``). The notes' reading of the Ibrahim et al. GPT-NeoX
      branch (``infinite_lr``, commit 3815242) gives the same formulas. A fork,
      vaibhav016/gpt-neox ``megatron/learning_rates.py``, has the same linear
      cooldown and exponential annealing, but its inverse-sqrt cooldown uses raw
      step counts (``(n^{-1/2} - 1)/(K^{-1/2} - 1)``) instead of ``α``: not
      followed here.
    - UNVERIFIED: the paper's own section and equation numbers, and whether the
      paper's printed equations use exactly these forms: the paper body (beyond
      its abstract) could not be reached with the search tool, so the formulas
      rest on the authors' code. The defaults ``constant_fraction=0.55`` and
      ``final_fraction=0.1`` follow the notes' [S]-tagged 405M setting
      (``η_max = 3e-4``, ``η_const = 1.65e-4``, ``η_min = 3e-5``), also
      UNVERIFIED against the PDF.
    - Differences from that code, on purpose: phase lengths are step counts
      (durations), not fractions of a run; the warmup starts from 0 (as in the
      code); no ``max(η, η_min)`` clamp is needed because no phase goes below
      ``η_min``.

    Args:
      peak: ``η_max > 0``.
      warmup_steps: ``W >= 0``.
      cooldown_steps: ``C >= 0``; ``0`` requires ``constant_fraction == 1`` (no
        jump).
      constant_steps: ``K >= 0``, or ``None`` for a constant phase without end.
      anneal_steps: ``N``; must be ``> 0`` when ``constant_steps`` is an int and
        ``0`` when it is ``None``.
      constant_fraction: ``η_c / η_max`` in (0, 1].
      final_fraction: ``η_min / η_max`` in (0, ``constant_fraction``]; positive
        because the annealing is exponential.
      cooldown_shape: ``"inv_sqrt"`` (default), ``"cosine"`` or ``"linear"``.
      timescale: ``α > 0`` of the ``inv_sqrt`` cooldown.

    Returns:
      The schedule, with ``peak`` set.

    Raises:
      ValueError, TypeError: bad values or inconsistent phases (see above).

    Example:
      >>> s = infinite(1.0, 10, 40, 50, 20, constant_fraction=0.5,
      ...              final_fraction=0.1)
      >>> [round(float(s(t)), 4) for t in (10, 50, 100, 110, 120, 200)]
      [1.0, 0.5, 0.5, 0.2236, 0.1, 0.1]
    """
    peak = _positive_float("peak", peak)
    warmup_steps = _steps("warmup_steps", warmup_steps)
    cooldown_steps = _steps("cooldown_steps", cooldown_steps)
    if constant_steps is not None:
        constant_steps = _steps("constant_steps", constant_steps)
    anneal_steps = _steps("anneal_steps", anneal_steps)
    constant_fraction = _fraction("constant_fraction", constant_fraction)
    final_fraction = _fraction("final_fraction", final_fraction)
    cooldown_shape = _choice("cooldown_shape", cooldown_shape, COOLDOWN_SHAPES)
    timescale = _positive_float("timescale", timescale)
    if constant_fraction == 0.0:
        raise ValueError("constant_fraction must be in (0, 1], got 0.0.")
    if not 0.0 < final_fraction <= constant_fraction:
        raise ValueError(
            f"final_fraction must be in (0, constant_fraction={constant_fraction}] "
            f"(the annealing is exponential), got {final_fraction}."
        )
    if cooldown_steps == 0 and constant_fraction != 1.0:
        raise ValueError(
            "cooldown_steps=0 needs constant_fraction=1 (otherwise the learning "
            f"rate jumps from the peak to the constant), got {constant_fraction}."
        )
    if constant_steps is None and anneal_steps != 0:
        raise ValueError(
            "constant_steps=None means the constant phase never ends, so "
            f"anneal_steps must be 0, got {anneal_steps}."
        )
    if constant_steps is not None and anneal_steps == 0:
        raise ValueError(
            "anneal_steps must be > 0 when constant_steps is an int (the schedule "
            "ends with an annealing phase); use constant_steps=None for a constant "
            "phase without end."
        )
    const = constant_fraction * peak
    final = final_fraction * peak
    cooldown_end = warmup_steps + cooldown_steps
    log_ratio = math.log(final / const)
    g1 = (1.0 + timescale) ** -0.5 - 1.0

    def schedule(step):
        t = _time(step)
        s = _progress(t, warmup_steps, cooldown_steps)
        if cooldown_shape == "inv_sqrt":
            g = (1.0 + timescale * s) ** -0.5 - 1.0
            cool = peak + (const - peak) * g / g1
        elif cooldown_shape == "cosine":
            cool = _cosine(s, peak, const)
        else:
            cool = peak + (const - peak) * s
        value = jnp.where(t <= cooldown_end, cool, const)
        if constant_steps is not None:
            anneal_start = cooldown_end + constant_steps
            u = _progress(t, anneal_start, anneal_steps)
            value = jnp.where(t <= anneal_start, value, const * jnp.exp(log_ratio * u))
        return jnp.where(t <= warmup_steps, _warmup(t, peak, warmup_steps), value)

    return _named(schedule, "infinite", peak)


# --------------------------------------------------------------------------------
# dispatch by name

_SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "warmup_cosine": warmup_cosine,
    "warmup_stable_decay": warmup_stable_decay,
    "rewarm_cycles": rewarm_cycles,
    "infinite": infinite,
}
_ALIASES = {"wsd": "warmup_stable_decay"}


def schedule_names() -> list[str]:
    """The names ``make_schedule`` accepts (aliases included)."""
    return sorted(list(_SCHEDULES) + list(_ALIASES))


def _lookup(name: Any) -> tuple[str, Callable[..., Schedule]]:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}.")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _SCHEDULES:
        raise ValueError(
            f"unknown schedule {name!r}; valid names: {', '.join(schedule_names())}."
        )
    return key, _SCHEDULES[key]


def schedule_arguments(name: str) -> tuple[str, ...]:
    """The keyword arguments of schedule ``name``, in signature order.

    Raises:
      ValueError: an unknown name (the message lists the valid names).

    Example:
      >>> schedule_arguments("wsd")[:3]
      ('peak', 'warmup_steps', 'total_steps')
    """
    return tuple(inspect.signature(_lookup(name)[1]).parameters)


def make_schedule(name: str, **kwargs: Any) -> Schedule:
    """Builds a schedule by name: ``make_schedule("warmup_cosine", peak=3e-4, ...)``.

    Names are case-insensitive and ``-`` is read as ``_`` (``"Warmup-Cosine"`` is
    ``"warmup_cosine"``); ``"wsd"`` is ``"warmup_stable_decay"``.

    Args:
      name: one of ``schedule_names()``.
      **kwargs: the schedule function's arguments, by keyword.

    Returns:
      The schedule (an ``optax.Schedule`` with a ``peak`` attribute).

    Raises:
      ValueError: an unknown name (the message lists the valid names), an unknown
        keyword or a missing required one (the message lists the valid keywords),
        or a bad value.
      TypeError: a value of the wrong type.

    Example:
      >>> s = make_schedule("wsd", peak=1.0, warmup_steps=10, total_steps=100)
      >>> float(s(50))
      1.0
    """
    key, fn = _lookup(name)
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for schedule {key!r}; valid arguments: "
            f"{', '.join(params)}."
        )
    missing = [
        p
        for p, spec in params.items()
        if spec.default is spec.empty and p not in kwargs
    ]
    if missing:
        raise ValueError(
            f"schedule {key!r} needs argument(s) {missing}; valid arguments: "
            f"{', '.join(params)}."
        )
    return fn(**kwargs)
