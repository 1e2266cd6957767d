"""AdamW with parameter groups: no weight decay and their own learning rate for SSMs.

Every parameter falls in one of three groups, decided by ``param_labels``:

- ``"ssm"``: the recurrent / state-space parameters (name matches ``ssm_patterns``):
  Adam without weight decay, at the SSM learning rate;
- ``"no_decay"``: vectors and scalars (``ndim < 2``: biases, norm scales, ``D``)
  and names matching ``no_decay_patterns`` (biases and norm scales stored with an
  extra axis): Adam without weight decay, at the main learning rate;
- ``"decay"``: everything else (matrices, embeddings, convolution kernels): AdamW
  at the main learning rate.

.. math:: g \\leftarrow g\\,\\min(1, c/\\lVert g\\rVert_2);\\quad
    \\theta \\leftarrow \\theta - \\eta_t\\big(\\hat m/(\\sqrt{\\hat v}+\\epsilon)
    + \\lambda\\,[\\theta \\in \\text{decay}]\\,\\theta\\big)

with ``η_t`` the group's learning rate (optax's AdamW multiplies the decay by the
learning rate, like PyTorch's). The global-norm clip ``c`` sees all gradients.

Conventions of the papers, as checked (see ``DEFAULT_SSM_PATTERNS``):

- S5 ("Simplified State Space Layers for Sequence Modeling"; reference code
  lindermanlab/S5 ``s5/train_helpers.py``, "standard" setup): ``Λ`` (re, im),
  ``B̃`` and ``log Δ`` train with Adam at ``ssm_lr`` and no weight decay; ``C̃``,
  ``D`` and the rest use AdamW at ``lr``. That code also puts the norm parameters in
  the SSM group; here norm scales are ``no_decay`` at the main rate, and ``D`` is
  not decayed (it is a vector).
- LRU ("Resurrecting Recurrent Neural Networks for Long Sequences", App. D, per the
  shared notes): ``ν``, ``θ``, ``γ`` and ``B`` train at ``lr × lr_factor`` without
  weight decay; the unofficial JAX port NicolasZucchet/minimal-LRU sets
  ``ssm_lr = lr_factor · lr`` and uses one schedule shape for both, which is what a
  float ``ssm_learning_rate`` with a schedule ``learning_rate`` does here.
- S4D ("On the Parameterization and Initialization of Diagonal State Space
  Models"; reference ``S4DKernel.register``): ``log Δ``, ``log(-Re A)`` and
  ``Im A`` get their own learning rate and zero weight decay.
- Mamba ("Mamba: Linear-Time Sequence Modeling with Selective State Spaces";
  reference ``mamba_simple.py`` marks ``A_log`` and ``D`` ``_no_weight_decay``): no
  weight decay on ``A_log`` and ``D``, same learning rate as the rest — which is what
  the default ``ssm_learning_rate=None`` gives.
- RG-LRU ("Griffin: Mixing Gated Linear Recurrences with Local Attention for
  Efficient Language Models"): ``a_param`` (``Λ`` with ``a = σ(Λ)``) is in the SSM
  group as the issue asks; the paper's optimiser grouping was not checked
  (UNVERIFIED).
- ParaGRU/ParaLSTM: their ``diagonal`` and ``peephole`` weights are diagonal
  recurrent matrices and are decayed like the dense matrices they stand for; their
  ``bias`` (stored ``[gates, features]``) is ``no_decay`` by name.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

Schedule = optax.Schedule
LearningRate = float | Schedule

GROUPS = ("decay", "no_decay", "ssm")

#: Parameter names of the recurrent/SSM parameters of seqjax's mixers.
DEFAULT_SSM_PATTERNS: tuple[str, ...] = (
    # LRU: Λ = exp(-exp(ν_log) + i exp(θ_log)), γ = exp(γ_log), B
    "nu_log",
    "theta_log",
    "gamma_log",
    # S4D: Δ = exp(log_dt), A = -exp(log_a_real) + i a_imag, B
    "log_dt",
    "log_a_real",
    "a_imag",
    # S5: Λ, Δ = exp(log_step), B̃
    "lambda_re",
    "lambda_im",
    "log_step",
    # B of LRU, S4D and S5 (real and imaginary parts)
    "B_re",
    "B_im",
    # RG-LRU: a = σ(Λ)
    "a_param",
    # Mamba: A = -exp(A_log)
    "A_log",
)

#: Names that are never decayed, whatever their ``ndim`` (biases and norm scales
#: stored with a leading gates/heads axis: ParaGRU ``bias``, RG-LRU ``gate_*_b``).
DEFAULT_NO_DECAY_PATTERNS: tuple[str, ...] = (
    "bias",
    ".*_bias",
    "scale",
    "norm_scale",
    "gate_a_b",
    "gate_x_b",
)


def _key_str(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path_str(path: Sequence[Any]) -> str:
    return "/".join(_key_str(k) for k in path)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _compile_patterns(name: str, patterns: Any) -> list[re.Pattern[str]]:
    if isinstance(patterns, str) or not isinstance(patterns, Sequence):
        raise TypeError(
            f"{name} must be a sequence of regular expressions (str), got {patterns!r}."
        )
    compiled = []
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"{name} must contain str patterns, got {p!r}.")
        try:
            compiled.append(re.compile(p))
        except re.error as err:
            raise ValueError(f"{name}: bad regular expression {p!r}: {err}") from err
    return compiled


def _matches(patterns: Sequence[re.Pattern[str]], name: str, path: str) -> bool:
    return any(p.fullmatch(name) or p.fullmatch(path) for p in patterns)


def param_labels(
    params: Any,
    *,
    ssm_patterns: Sequence[str] = DEFAULT_SSM_PATTERNS,
    no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
) -> Any:
    """Labels every parameter ``"ssm"``, ``"no_decay"`` or ``"decay"``.

    A parameter's name is the last key of its path (``"B_re"`` in
    ``backbone/blocks/0/mixer/B_re``). Rules, first match wins:

    1. the name or the ``/``-joined path fully matches a regular expression of
       ``ssm_patterns`` → ``"ssm"``;
    2. ``ndim < 2``, or the name or path fully matches ``no_decay_patterns`` →
       ``"no_decay"``;
    3. otherwise → ``"decay"``.

    Plain names match themselves; qualify a pattern with a path (``".*/mixer/B_re"``)
    to restrict it to some modules.

    Args:
      params: a pytree of parameters: an ``nnx.State`` of ``nnx.Param`` variables
        (``nnx.state(model, nnx.Param)``, or the ``Param`` part of
        ``nnx.split``), the same with plain arrays (``nnx.as_pure``), a nested
        dict, or abstract ``jax.ShapeDtypeStruct`` leaves.
      ssm_patterns: regular expressions for the SSM group.
      no_decay_patterns: regular expressions for names that are never decayed.

    Returns:
      A pytree like ``params`` with each parameter (variable or array) replaced by
      its label string.

    Raises:
      TypeError: a variable that is not an ``nnx.Param`` (pass
        ``nnx.state(model, nnx.Param)``, not the whole state), a leaf without
        ``shape``/``dtype`` or with a non-floating dtype, or bad patterns.
      ValueError: a pattern that is not a valid regular expression.

    Example:
      >>> import jax.numpy as jnp
      >>> param_labels({"mixer": {"nu_log": jnp.zeros(4), "C_re": jnp.zeros((2, 4))},
      ...               "norm": {"scale": jnp.ones(2)}})
      {'mixer': {'C_re': 'decay', 'nu_log': 'ssm'}, 'norm': {'scale': 'no_decay'}}
    """
    ssm = _compile_patterns("ssm_patterns", ssm_patterns)
    no_decay = _compile_patterns("no_decay_patterns", no_decay_patterns)

    def label(path, leaf):
        where = _path_str(path)
        if _is_variable(leaf) and not isinstance(leaf, nnx.Param):
            raise TypeError(
                f"parameter {where!r} is a {type(leaf).__name__}, not an nnx.Param; "
                "pass nnx.state(model, nnx.Param) (optimizer state, batch "
                "statistics and RNG state are not optimised)."
            )
        shape = getattr(leaf, "shape", None)
        dtype = getattr(leaf, "dtype", None)
        if shape is None or dtype is None:
            raise TypeError(
                f"parameter {where!r} is a {type(leaf).__name__} without shape and "
                "dtype; expected an array, an nnx.Param or a jax.ShapeDtypeStruct."
            )
        if not np.issubdtype(np.dtype(dtype), np.inexact):
            raise TypeError(
                f"parameter {where!r} has dtype {dtype}; expected a floating (or "
                "complex) parameter."
            )
        name = _key_str(path[-1]) if path else ""
        if _matches(ssm, name, where):
            return "ssm"
        if len(shape) < 2 or _matches(no_decay, name, where):
            return "no_decay"
        return "decay"

    return jax.tree_util.tree_map_with_path(label, params, is_leaf=_is_variable)


def _label_table(labels: Any) -> dict[str, str]:
    leaves = jax.tree_util.tree_leaves_with_path(labels)
    return {_path_str(path): label for path, label in leaves}


def _labeller(table: dict[str, str]) -> Callable[[Any], Any]:
    """Labels any tree with the paths of ``table`` (variables, arrays or
    placeholders), so the same labels serve ``init`` (often on ``nnx.Param``
    variables) and ``update`` (often on plain arrays)."""

    def labels(tree):
        def one(path, _):
            where = _path_str(path)
            if where not in table:
                known = ", ".join(sorted(table)[:5])
                raise ValueError(
                    f"the optimizer got a parameter {where!r} that was not in the "
                    f"params given to make_optimizer (known paths include {known}, "
                    "...); build the optimizer from the same parameter tree."
                )
            return table[where]

        return jax.tree_util.tree_map_with_path(one, tree, is_leaf=_is_variable)

    return labels


def _learning_rate(name: str, value: Any) -> LearningRate:
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a float or a schedule (step -> lr), got {value!r}."
        )
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value}.")
    return value


def _ssm_schedule(learning_rate: LearningRate, ssm_learning_rate: Any) -> LearningRate:
    if ssm_learning_rate is None:
        return learning_rate
    ssm = _learning_rate("ssm_learning_rate", ssm_learning_rate)
    if callable(ssm) or not callable(learning_rate):
        return ssm
    peak = getattr(learning_rate, "peak", None)
    if peak is None:
        raise TypeError(
            "a float ssm_learning_rate with a schedule learning_rate needs the "
            "schedule's peak to scale it; this schedule has no `peak` attribute "
            "(the ones from seqjax.train.schedules do). Pass ssm_learning_rate as "
            "a schedule instead."
        )
    ratio = ssm / float(peak)

    def ssm_schedule(step):
        return ratio * learning_rate(step)

    ssm_schedule.peak = ssm  # type: ignore[attr-defined]
    return ssm_schedule


def _as_schedule(rate: LearningRate) -> Schedule:
    if callable(rate):
        return rate
    return optax.constant_schedule(rate)


def make_optimizer(
    params: Any,
    *,
    learning_rate: LearningRate,
    ssm_learning_rate: LearningRate | None = None,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    grad_clip_norm: float | None = None,
    ssm_patterns: Sequence[str] = DEFAULT_SSM_PATTERNS,
    no_decay_patterns: Sequence[str] = DEFAULT_NO_DECAY_PATTERNS,
) -> optax.GradientTransformation:
    """AdamW with an SSM group and a no-decay group, after global-norm clipping.

    ``optax.chain(clip_by_global_norm, partition({"decay": AdamW, "no_decay":
    Adam, "ssm": Adam at the SSM rate}))``. Each group's optimizer is wrapped in
    ``optax.inject_hyperparams`` with only the learning rate injected, always as a
    schedule of the step count: the state caches the current rate (read it with
    ``learning_rates``) but a restored state never overrides the configured rates,
    betas, ``eps`` or weight decay. Works with ``nnx.Optimizer(model, tx,
    wrt=nnx.Param)`` and with plain ``tx.init(params)`` / ``tx.update(grads, state,
    params)`` on the ``nnx.Param`` state of ``nnx.split`` (``params`` must be passed
    to ``update``: AdamW needs them). No gradient accumulation here: the trainer
    accumulates before calling ``update`` (``optax.MultiSteps`` would add state and
    a second step counter, so it is left out).

    .. math:: \\eta^{ssm}_t = \\begin{cases} \\eta_t & \\text{ssm\\_learning\\_rate
        = None} \\\\ \\eta^{ssm}\\,\\eta_t / \\max_s \\eta_s & \\text{float, with a
        schedule } \\eta_t \\\\ \\text{as given} & \\text{otherwise} \\end{cases}

    Args:
      params: the parameter tree (see ``param_labels``); it fixes the groups by
        path, so ``init``/``update`` must get trees with the same paths.
      learning_rate: a float or a schedule (``step -> lr``) for the ``decay`` and
        ``no_decay`` groups.
      ssm_learning_rate: the ``ssm`` group's rate. ``None``: the same as
        ``learning_rate``. A schedule: used as given. A float with a float
        ``learning_rate``: constant. A float with a schedule ``learning_rate``: the
        same schedule rescaled so its peak is this value (LRU's "LR factor"; the
        schedule must have a ``peak`` attribute, as those of
        ``seqjax.train.schedules`` do).
      weight_decay: ``λ >= 0``, decoupled, on the ``decay`` group only.
      b1, b2: Adam's moment decays, in [0, 1).
      eps: Adam's ``ε > 0``.
      grad_clip_norm: ``c > 0`` for global-norm clipping of all gradients, or
        ``None`` for no clipping.
      ssm_patterns, no_decay_patterns: see ``param_labels``.

    Returns:
      The ``optax.GradientTransformation``.

    Raises:
      ValueError, TypeError: bad hyperparameters, a bad parameter tree (see
        ``param_labels``), or a float ``ssm_learning_rate`` with a schedule that has
        no ``peak``. At ``init``/``update``: a parameter path not in ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2), "nu_log": jnp.ones(2)}
      >>> tx = make_optimizer(params, learning_rate=0.1, ssm_learning_rate=0.01,
      ...                     weight_decay=0.5)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.ones((2, 2)), "b": jnp.ones(2), "nu_log": jnp.ones(2)}
      >>> updates, state = tx.update(grads, state, params)
      >>> new = optax.apply_updates(params, updates)
      >>> [round(float(new[k].ravel()[0]), 4) for k in ("w", "b", "nu_log")]
      [0.85, 0.9, 0.99]
    """
    learning_rate = _learning_rate("learning_rate", learning_rate)
    ssm_rate = _ssm_schedule(learning_rate, ssm_learning_rate)
    for name, value in (("b1", b1), ("b2", b2)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {value!r}.")
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}.")
    for name, value, low in (("eps", eps, 0.0), ("weight_decay", weight_decay, 0.0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {value!r}.")
        ok = float(value) > low if name == "eps" else float(value) >= low
        if not (math.isfinite(float(value)) and ok):
            bound = "> 0" if name == "eps" else ">= 0"
            raise ValueError(f"{name} must be finite and {bound}, got {value}.")
    if grad_clip_norm is not None:
        if isinstance(grad_clip_norm, bool) or not isinstance(
            grad_clip_norm, numbers.Real
        ):
            raise TypeError(
                f"grad_clip_norm must be a positive number or None, got "
                f"{grad_clip_norm!r}."
            )
        if not (math.isfinite(float(grad_clip_norm)) and grad_clip_norm > 0):
            raise ValueError(
                f"grad_clip_norm must be finite and > 0 (or None), got "
                f"{grad_clip_norm}."
            )

    labels = param_labels(
        params, ssm_patterns=ssm_patterns, no_decay_patterns=no_decay_patterns
    )
    table = _label_table(labels)
    adam = dict(b1=float(b1), b2=float(b2), eps=float(eps))
    static = ("b1", "b2", "eps", "eps_root")
    # Only the learning rate is injected, and always as a schedule: it is
    # recomputed from the step count at every update, so the state caches it for
    # logging but a restored checkpoint never overrides the configured value (nor
    # b1, b2, eps or the weight decay, which stay out of the state).
    groups = {
        "decay": optax.inject_hyperparams(
            optax.adamw, static_args=static + ("weight_decay",)
        )(
            learning_rate=_as_schedule(learning_rate),
            weight_decay=float(weight_decay),
            **adam,
        ),
        "no_decay": optax.inject_hyperparams(optax.adam, static_args=static)(
            learning_rate=_as_schedule(learning_rate), **adam
        ),
        "ssm": optax.inject_hyperparams(optax.adam, static_args=static)(
            learning_rate=_as_schedule(ssm_rate), **adam
        ),
    }
    parts = []
    if grad_clip_norm is not None:
        parts.append(optax.clip_by_global_norm(float(grad_clip_norm)))
    parts.append(optax.partition(groups, _labeller(table)))
    return optax.chain(*parts)


def learning_rates(opt_state: Any) -> dict[str, jax.Array]:
    """The learning rate of each group, read from a ``make_optimizer`` state.

    It is the rate the latest ``update`` used (``schedule(0)`` before the first):
    ``optax.inject_hyperparams`` evaluates the schedule at its step count and
    stores the value. Works on the raw optax state and on
    ``nnx.Optimizer.opt_state``; ``jax.jit``-compatible.

    Args:
      opt_state: the optimizer state (or any pytree containing it).

    Returns:
      ``{"decay": lr, "no_decay": lr, "ssm": ssm_lr}`` as float32 scalars.

    Raises:
      ValueError: no ``make_optimizer`` group state in ``opt_state``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_optimizer({"w": jnp.ones((2, 2))}, learning_rate=0.1,
      ...                     ssm_learning_rate=0.01)
      >>> {k: round(float(v), 4) for k, v in learning_rates(tx.init(
      ...     {"w": jnp.ones((2, 2))})).items()}
      {'decay': 0.1, 'no_decay': 0.1, 'ssm': 0.01}
    """
    found: dict[str, jax.Array] = {}
    leaves = jax.tree_util.tree_leaves_with_path(opt_state, is_leaf=_is_variable)
    for path, leaf in leaves:
        keys = [_key_str(k) for k in path]
        if len(keys) < 3 or keys[-1] != "learning_rate" or "hyperparams" not in keys:
            continue
        if "inner_states" not in keys:
            continue
        group = keys[keys.index("inner_states") + 1]
        if group in GROUPS and group not in found:
            found[group] = leaf.get_value() if _is_variable(leaf) else leaf
    if not found:
        raise ValueError(
            "opt_state holds no learning rates of a make_optimizer optimizer "
            "(expected partition groups 'decay', 'no_decay', 'ssm' with injected "
            "hyperparameters)."
        )
    return found


def group_sizes(labels: Any, params: Any) -> dict[str, int]:
    """Number of scalar parameters in each group, for logging.

    Args:
      labels: ``param_labels(params)``.
      params: the same parameter tree.

    Returns:
      ``{"decay": n, "no_decay": n, "ssm": n}``.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
      >>> group_sizes(param_labels(p), p)
      {'decay': 6, 'no_decay': 3, 'ssm': 0}
    """
    table = _label_table(labels)
    sizes = dict.fromkeys(GROUPS, 0)
    leaves = jax.tree_util.tree_leaves_with_path(params, is_leaf=_is_variable)
    for path, leaf in leaves:
        sizes[table[_path_str(path)]] += int(np.prod(leaf.shape))
    return sizes
