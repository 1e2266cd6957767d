"""The synthetic memory tasks: associative recall, copying, N-parity and N-DMS.

Six tasks are registered with ``seqjax.tasks`` when this module is imported.

**Token-level prediction** (``"mqar"``, ``"set_disjointness"``,
``"selective_copying"``, ``"induction_heads"``): a causal
``seqjax.nn.models.LanguageModel`` reads the sequence and is trained with
cross-entropy at the labelled positions only (the generators in ``seqjax.data``
mark every other position ``-100``):

.. math:: \\mathcal{L} = -\\frac{1}{|P|}\\sum_{(i, t) \\in P}
   \\log \\mathrm{softmax}(W h_{i,t})_{y_{i,t}}, \\qquad
   P = \\{(i, t) : y_{i,t} \\ne -100\\}

The head is applied to the labelled positions only (gathered before the vocabulary
projection), so a vocabulary of 8192 costs ``|P|``, not ``B T``, logits. Metrics:
``eval/loss`` (nats per labelled position), ``eval/accuracy`` (over labelled
positions: Zoology's MQAR accuracy, Mamba's copying accuracy) and
``eval/exact_match`` (sequences whose every labelled position is right); with more
than one evaluation set, also ``eval/accuracy/<set>`` per set (Zoology slices MQAR by
number of key-value pairs).

**Bit streams with one head per N** (``"parity"``, ``"dms"``): the N-parity and
N-delayed-match-to-sample tasks of ``seqjax.data.parity``; a ``MultiHeadReadout``
reads the stream and gives two logits per ``N`` at the last step; the loss is the
cross-entropy **summed** over the active heads (the paper's), averaged over
sequences. Which heads are active is the curriculum's business, below. Metrics:
``eval/loss`` (nats per head and sequence), ``eval/accuracy`` (mean over the active
heads), ``eval/accuracy_n_max`` (the largest active ``N``), ``eval/n_max`` and
``eval/stage``.

**Curriculum without a trainer hook.** The curriculum state lives in the model, as
non-trainable ``CurriculumVariable``\\ s (the stage, per-head counts of correct
answers, the sequences seen this epoch): it is part of the training state, so the
trainer checkpoints and restores it with the parameters, exactly, and the optimizer
never touches it. In training mode (``model.train()``, which the trainer's train
step sets) the loss counts the correct answers of each head on the batch it is
about to train on, before the update: every batch is fresh data, so this is a
held-out measurement. An *epoch* is ``epoch_steps`` batches (the paper: 600); the
answers of its last ``measure_steps`` batches (the paper evaluates 50 test batches
after each epoch) decide, at the epoch's end, whether the curriculum advances, with
``seqjax.data.parity.Curriculum``'s rule: the mean accuracy over the active heads
*and* the accuracy of the largest ``N`` both above the threshold (98 %). The data
pipeline does not depend on the stage: each sequence is ``T`` bits long
(``T = N_max + 1 + floor(3 N_max)`` for the largest ``N_max`` the curriculum can
reach) with a label for every head, and a uniform draw ``u``; the model keeps the
last ``M`` bits, ``M = n + 2 + floor(u * floor(3 n))`` for the largest active ``n``
(the paper's length distribution), and treats the rest as padding (a segment of
its own, so the recurrence starts at the first kept bit, exactly as if the sequence
were ``M`` bits long). One static shape, so nothing recompiles when the curriculum
advances. Two deviations from the authors' code: ``M`` is drawn per sequence (theirs:
one per batch, a PyTorch batching convenience), and the advancing accuracy is
measured on the last ``measure_steps`` training batches before each update (theirs:
50 fresh test batches after the epoch).

References:
  Arora et al., "Zoology: Measuring and Improving Recall in Efficient Language
  Models" (2023); Arora et al., "Just read twice: closing the recall gap for recurrent
  language models" (2024); Gu & Dao, "Mamba: Linear-Time Sequence Modeling with
  Selective State Spaces" (2023); Khajehabdollahi, Zeraati et al., "Emergent
  mechanisms for long timescales depend on training curriculum and affect
  performance in memory tasks" (ICLR 2024).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import config as config_lib
from seqjax.data import copying, mqar, parity, sources
from seqjax.nn import block as block_lib
from seqjax.nn import models, norms
from seqjax.tasks import classification, registry

IGNORE = mqar.IGNORE
"""Target value of the positions without a label."""


def _option_error(key: str, value: Any, expected: str) -> config_lib.ConfigError:
    return config_lib.ConfigError(
        f"data.options[{key!r}] must be {expected}, got {value!r}"
    )


def _int(options: dict, key: str, default: int, minimum: int = 0) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _option_error(key, value, f"an int >= {minimum}")
    return value


def _check_keys(options: dict, valid: Sequence[str], where: str) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise config_lib.ConfigError(
            f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}"
        )


def _local(global_batch: int, process_count: int, key: str) -> int:
    if global_batch % process_count:
        raise config_lib.ConfigError(
            f"{key} ({global_batch}) must be divisible by the number of processes "
            f"({process_count})"
        )
    return global_batch // process_count


# --- token-level prediction ---------------------------------------------------------


def labelled_positions(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labelled positions of each row, in order, and their labels.

    Args:
      targets: ``[n, L]`` ints, ``-100`` where there is no label.

    Returns:
      ``(positions, labels)``, both int32 ``[n, K]`` with ``K`` the largest number of
      labels in a row; a row with fewer labels is filled with position ``0`` and
      label ``-100``.

    Example:
      >>> p, y = labelled_positions(np.array([[-100, 5, -100, 7], [3, -100, -100,
      ...                                      -100]]))
      >>> p.tolist(), y.tolist()
      ([[1, 3], [0, 0]], [[5, 7], [3, -100]])
    """
    targets = np.asarray(targets)
    if targets.ndim != 2:
        raise ValueError(f"targets must be [n, L], got shape {targets.shape}")
    labelled = targets != IGNORE
    k = max(int(labelled.sum(axis=1).max(initial=0)), 1)
    # A stable sort puts the labelled positions first, in their order.
    order = np.argsort(~labelled, axis=1, kind="stable")[:, :k]
    has = np.take_along_axis(labelled, order, axis=1)
    positions = np.where(has, order, 0).astype(np.int32)
    labels = np.where(has, np.take_along_axis(targets, order, axis=1), IGNORE)
    return positions, labels.astype(np.int32)


def labelled_logits(
    model: models.LanguageModel, tokens: jax.Array, positions: jax.Array
) -> jax.Array:
    """A language model's logits at the given positions only.

    .. math:: \\ell_{i,k} = W\\,\\mathrm{norm}(\\mathrm{blocks}(E[x_i]))_{p_{i,k}}

    Equal to ``model(tokens)`` gathered at ``positions``, without computing the
    vocabulary projection anywhere else.

    Args:
      model: a ``seqjax.nn.models.LanguageModel``.
      tokens: ``[batch, time]`` ints.
      positions: ``[batch, K]`` ints in ``[0, time)``.

    Returns:
      ``[batch, K, vocab_size]`` float32 logits.
    """
    h = model.norm(model.backbone(model.embed(tokens)))
    h = jnp.take_along_axis(h, positions[..., None].astype(jnp.int32), axis=1)
    logits = model.embed.attend(h) if model.head is None else model.head(h)
    return logits.astype(jnp.float32)


def recall_sums(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, set_onehot: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy and accuracy over the labelled positions of a batch.

    .. math:: \\mathcal{L} = \\frac{\\sum_{i,k} w_i m_{ik}\\,(-\\log
       \\mathrm{softmax}(\\ell_{ik})_{y_{ik}})}{\\sum_{i,k} w_i m_{ik}},\\quad
       m_{ik} = [y_{ik} \\ne -100]

    Args:
      logits: ``[B, K, V]``.
      labels: ``[B, K]`` ints, ``-100`` where there is no label.
      weights: ``[B]`` row weights (``0`` for evaluation padding).
      set_onehot: ``[B, S]`` which data set each row comes from.

    Returns:
      ``(loss, sums)``; ``sums`` holds ``nats``, ``correct`` and ``count`` (labelled
      positions), ``rows`` and ``exact`` (rows with a label; rows all right), and
      ``set_correct``, ``set_count`` (``[S]``).
    """
    labelled = labels != IGNORE
    safe = jnp.where(labelled, labels, 0)
    mask = labelled.astype(jnp.float32) * weights.astype(jnp.float32)[:, None]
    loss, sums = classification.classification_sums(logits, safe, mask)
    right = jnp.argmax(logits, axis=-1) == safe
    row_correct = jnp.sum(right * mask, axis=1)
    row_count = jnp.sum(mask, axis=1)
    has_label = row_count > 0
    all_right = jnp.all(right | ~labelled, axis=1) & has_label
    w = weights.astype(jnp.float32)
    onehot = set_onehot.astype(jnp.float32)
    sums.update(
        rows=jnp.sum(w * has_label),
        exact=jnp.sum(w * all_right),
        set_correct=row_correct @ onehot,
        set_count=row_count @ onehot,
    )
    return loss, sums


def stack_sets(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stacks data sets into one array per field, right-padding to one length.

    Padding tokens are ``0`` with target ``-100``, so a causal model's answers at the
    real positions do not change.

    Args:
      parts: one dict per set with ``inputs`` and ``targets`` ``[n_i, L_i]``.

    Returns:
      ``inputs`` ``[n, T]`` int32, ``positions``/``labels`` ``[n, K]`` (see
      ``labelled_positions``) and ``set_onehot`` ``[n, S]`` float32, with
      ``n = sum n_i``, ``T = max L_i``, ``S = len(parts)``.
    """
    length = max(p["inputs"].shape[1] for p in parts)
    inputs, targets, onehot = [], [], []
    for i, p in enumerate(parts):
        pad = ((0, 0), (0, length - p["inputs"].shape[1]))
        inputs.append(np.pad(p["inputs"], pad))
        targets.append(np.pad(p["targets"], pad, constant_values=IGNORE))
        hot = np.zeros((len(p["inputs"]), len(parts)), np.float32)
        hot[:, i] = 1.0
        onehot.append(hot)
    positions, labels = labelled_positions(np.concatenate(targets))
    return {
        "inputs": np.concatenate(inputs).astype(np.int32),
        "positions": positions,
        "labels": labels,
        "set_onehot": np.concatenate(onehot),
    }


@dataclasses.dataclass(frozen=True)
class Generator:
    """A token-task generator of ``seqjax.data`` and the settings it takes."""

    function: Callable[..., dict[str, np.ndarray]]
    settings: tuple[str, ...]
    has_context: bool  # returns ``context_length`` (JRT-Prompt applies)


_SET_KEYS = ("num_examples", "jrt_repeats", "name")
FRESH_STREAM = 2**32
"""First stream of the freshly drawn training batches (``fresh_train``)."""
_TOKEN_OPTIONS = (
    "num_train",
    "fresh_train",
    "num_eval",
    "jrt_repeats",
    "train_sets",
    "eval_sets",
    "cache_dir",
)


class TokenRecall:
    """Token-level prediction at labelled positions with a causal language model.

    **Options** (``data.options``; unknown keys are errors listing the valid ones):

    * the generator's settings (e.g. MQAR's ``num_kv_pairs``, ``vocab_size``,
      ``power_a``, ``random_non_queries``); ``seq_len`` is ``data.seq_len``;
    * ``num_train`` / ``num_eval``: examples generated per training / evaluation set
      (default 10,000 / 1,000);
    * ``jrt_repeats``: JRT-Prompt, the context repeated this many times (MQAR and
      set disjointness; default 1: off);
    * ``train_sets`` / ``eval_sets``: lists of dicts, each overriding the settings
      above for one data set (and optionally ``num_examples``, ``jrt_repeats``,
      ``name``); the training sets are mixed and shuffled, as Zoology's sweep
      mixes its ``(L, D)`` settings; sets of different lengths are right-padded
      (with ``-100`` targets, so a causal model is unaffected). ``eval_sets``
      defaults to the training sets (new examples);
    * ``fresh_train``: draw every training batch afresh from ``(data.seed, step,
      process)`` instead of cycling over ``num_train`` cached examples (the Mamba
      paper's protocol; one training set only; not cached);
    * ``cache_dir``: where the generated sets are cached (``seqjax.data.sources``).

    Every set is generated with ``data.seed`` and its own stream and cached as npz.

    Batches: ``inputs`` ``[B, T]``, ``positions``/``labels`` ``[B, K]`` (the
    labelled positions, see ``labelled_positions``), ``set_onehot`` ``[B, S]``,
    ``weights`` ``[B]``.
    """

    def __init__(self, name: str, generator: Generator):
        self.name = name
        self.generator = generator
        self._eval_names: tuple[str, ...] = ()

    # configuration

    def _options(self, config: config_lib.Config) -> dict[str, Any]:
        options = dict(config.data.options)
        settings = tuple(s for s in self.generator.settings if s != "seq_len")
        _check_keys(options, settings + _TOKEN_OPTIONS, "data.options")
        if not self.generator.has_context and options.get("jrt_repeats", 1) != 1:
            raise config_lib.ConfigError(
                f"data.options['jrt_repeats'] applies to tasks with a context to "
                f"repeat (mqar, set_disjointness), not to {self.name!r}"
            )
        return options

    def data_sets(self, config: config_lib.Config, split: str) -> list[dict]:
        """The resolved settings of every training or evaluation set.

        Args:
          config: the run config.
          split: ``"train"`` or ``"eval"``.

        Returns:
          One dict per set: generator keyword arguments plus ``num_examples``,
          ``jrt_repeats`` and ``name``.

        Raises:
          ConfigError: unknown keys or bad values.
        """
        options = self._options(config)
        g = self.generator
        base = {k: options[k] for k in g.settings if k in options}
        if "seq_len" in g.settings:
            base["seq_len"] = config.data.seq_len
        count_key = "num_train" if split == "train" else "num_eval"
        base["num_examples"] = _int(
            options, count_key, 10_000 if split == "train" else 1_000, 1
        )
        base["jrt_repeats"] = _int(options, "jrt_repeats", 1, 1)
        listed = options.get(f"{split}_sets")
        # Without eval_sets, evaluation uses the training sets' settings (new
        # examples, num_eval of each).
        from_train = listed is None and split == "eval" and "train_sets" in options
        if from_train:
            listed = options["train_sets"]
        if listed is None:
            listed = [{}]
        if not isinstance(listed, list | tuple) or not listed:
            raise _option_error(f"{split}_sets", listed, "a non-empty list of dicts")
        out = []
        for i, override in enumerate(listed):
            if not isinstance(override, dict):
                raise _option_error(f"{split}_sets", listed, "a list of dicts")
            _check_keys(
                override, g.settings + _SET_KEYS, f"data.options['{split}_sets'][{i}]"
            )
            resolved = {**base, **override}
            if from_train:
                resolved["num_examples"] = base["num_examples"]
            shown = {k: v for k, v in override.items() if k in g.settings}
            default_name = "_".join(f"{k}{v}" for k, v in sorted(shown.items()))
            resolved["name"] = str(override.get("name") or default_name or f"set{i}")
            out.append(resolved)
        return out

    def vocab_size(self, config: config_lib.Config) -> int:
        """The model's vocabulary: the largest ``vocab_size`` of any set."""
        default = _generator_default(self.generator.function, "vocab_size")
        sets = self.data_sets(config, "train") + self.data_sets(config, "eval")
        return max(int(s.get("vocab_size", default)) for s in sets)

    # data

    def draw(
        self, settings: dict, num_examples: int, *, seed: int, stream: int
    ) -> dict[str, np.ndarray]:
        """Generates ``num_examples`` sequences (``inputs``, ``targets``) of a set."""
        kwargs = {k: v for k, v in settings.items() if k in self.generator.settings}
        try:
            data = self.generator.function(
                num_examples, seed=seed, stream=stream, **kwargs
            )
        except (TypeError, ValueError) as e:
            raise config_lib.ConfigError(f"{self.name} data settings: {e}") from e
        if settings["jrt_repeats"] > 1:
            data = mqar.jrt_prompt(data, settings["jrt_repeats"])
        return {"inputs": data["inputs"], "targets": data["targets"]}

    def generate(
        self, settings: dict, *, seed: int, stream: int, cache_dir: str | None
    ) -> dict[str, np.ndarray]:
        """One whole data set, from the npz cache when it exists."""
        key = {k: v for k, v in settings.items() if k != "name"}
        key.update(seed=seed, stream=stream)
        n = settings["num_examples"]
        return sources.cached(
            self.name,
            key,
            lambda: self.draw(settings, n, seed=seed, stream=stream),
            cache_dir,
        )

    def records(self, config: config_lib.Config, split: str) -> dict[str, np.ndarray]:
        """All records of a split as arrays (see ``stack_sets``)."""
        sets = self.data_sets(config, split)
        cache_dir = config.data.options.get("cache_dir")
        parts = [
            self.generate(
                settings,
                seed=config.data.seed,
                stream=2 * i + (0 if split == "train" else 1),
                cache_dir=cache_dir,
            )
            for i, settings in enumerate(sets)
        ]
        return stack_sets(parts)

    def fresh_batch(
        self,
        index: int,
        settings: dict,
        *,
        seed: int,
        batch_size: int,
        process_index: int,
        process_count: int,
    ) -> dict[str, np.ndarray]:
        """Training batch ``index`` of this process, drawn fresh (``fresh_train``)."""
        stream = FRESH_STREAM + index * process_count + process_index
        batch = stack_sets([self.draw(settings, batch_size, seed=seed, stream=stream)])
        batch["weights"] = np.ones(batch_size, np.float32)
        return batch

    # the task protocol

    def build_model(self, config, rngs):
        m = config.model
        return models.LanguageModel(
            self.vocab_size(config),
            m.features,
            m.depth,
            m.mixer,
            tie_embeddings=m.tie_embeddings,
            rngs=rngs,
            **registry.backbone_options(m),
        )

    def datasets(self, config, process_index, process_count):
        held_out = grain.MapDataset.source(
            sources.ArraySource(self.records(config, "eval"))
        )
        self._eval_names = tuple(s["name"] for s in self.data_sets(config, "eval"))
        options = self._options(config)
        fresh = options.get("fresh_train", False)
        if not isinstance(fresh, bool):
            raise _option_error("fresh_train", fresh, "a bool")
        if not fresh:
            train = grain.MapDataset.source(
                sources.ArraySource(self.records(config, "train"))
            )
            return classification.batched(
                config, train, held_out, process_index, process_count
            )
        sets = self.data_sets(config, "train")
        if len(sets) != 1:
            raise config_lib.ConfigError(
                "data.options['fresh_train'] draws every batch from one setting; "
                f"got {len(sets)} train_sets"
            )
        d = config.data
        local = _local(d.batch_size, process_count, "data.batch_size")
        draw = functools.partial(
            self.fresh_batch, settings=sets[0], seed=d.seed, batch_size=local,
            process_index=process_index, process_count=process_count,
        )  # fmt: skip
        train = grain.MapDataset.range(0, 2**62).map(draw)
        eval_global = d.eval_batch_size or d.batch_size
        eval_local = _local(eval_global, process_count, "data.eval_batch_size")
        padded = grain.MapDataset.source(
            classification.PaddedSource(held_out, eval_global)
        )
        return train, padded[process_index::process_count].batch(eval_local)

    def loss(self, model, batch):
        logits = labelled_logits(model, batch["inputs"], batch["positions"])
        return recall_sums(
            logits, batch["labels"], batch["weights"], batch["set_onehot"]
        )

    def summarize(self, sums):
        count = max(float(sums["count"]), 1.0)
        out = {
            "eval/loss": float(sums["nats"]) / count,
            "eval/accuracy": float(sums["correct"]) / count,
            "eval/exact_match": float(sums["exact"]) / max(float(sums["rows"]), 1.0),
        }
        set_correct = np.asarray(sums["set_correct"]).reshape(-1)
        set_count = np.asarray(sums["set_count"]).reshape(-1)
        if set_correct.size > 1:
            names = self._eval_names
            if len(names) != set_correct.size:
                names = tuple(f"set{i}" for i in range(set_correct.size))
            for name, c, n in zip(names, set_correct, set_count, strict=True):
                out[f"eval/accuracy/{name}"] = float(c) / max(float(n), 1.0)
        return out

    def tokens(self, batch):
        real = np.asarray(batch["weights"]) > 0
        return int(real.sum()) * int(np.asarray(batch["inputs"]).shape[1])


def _generator_default(function: Callable, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


# --- N-parity and N-DMS: heads, curricula -------------------------------------------


CURRICULA = ("single", "multi", "sliding", "none")


class CurriculumVariable(nnx.Variable):
    """Curriculum state kept in the model: checkpointed, never optimised."""


@dataclasses.dataclass(frozen=True)
class HeadSchedule:
    """The static side of a curriculum: active heads per stage, and the epoch.

    Head ``j`` answers for ``N = ns[j]``. Stage ``s`` trains the heads with
    ``stages[s][j]`` true; the last stage is final. ``advance`` is
    ``seqjax.data.parity.Curriculum.update`` as a jit-compatible function of the
    stage index.

    .. math:: s \\leftarrow s + [\\overline{\\mathrm{acc}}_{\\mathrm{active}} >
       \\theta \\wedge \\mathrm{acc}_{N_{\\max}(s)} > \\theta \\wedge s < S - 1]

    Attributes:
      ns: the ``N`` of every head, increasing.
      stages: ``[S][H]`` booleans: the active heads of each stage.
      threshold: accuracy threshold (fraction).
      epoch_sequences: sequences per epoch (``epoch_steps * batch_size``).
      measure_sequences: the last sequences of an epoch whose answers decide.
      length_factor: lengths run from ``n + 2`` to ``n + 1 + floor(f n)``.
    """

    ns: tuple[int, ...]
    stages: tuple[tuple[bool, ...], ...]
    threshold: float
    epoch_sequences: int
    measure_sequences: int
    length_factor: float = 3.0

    @classmethod
    def from_curriculum(
        cls, curriculum: parity.Curriculum, max_n: int, **kwargs: Any
    ) -> HeadSchedule:
        """Every stage of ``curriculum`` whose ``N`` stay within ``max_n``.

        Raises:
          ValueError: ``max_n`` below the first stage's ``N``.
        """
        stages = []
        state = curriculum.init()
        while max(curriculum.ns(state)) <= max_n:
            stages.append(curriculum.ns(state))
            state = parity.CurriculumState(stage=state.stage + 1)
        if not stages:
            raise ValueError(
                f"max_n={max_n} is below the curriculum's first Ns "
                f"{curriculum.ns(curriculum.init())}"
            )
        first = min(min(s) for s in stages)
        ns = tuple(range(first, max_n + 1))
        masks = tuple(tuple(n in s for n in ns) for s in stages)
        return cls(ns, masks, curriculum.threshold, **kwargs)

    @classmethod
    def fixed(cls, ns: Sequence[int], **kwargs: Any) -> HeadSchedule:
        """One stage that trains the given ``N`` (no curriculum)."""
        ns = sorted(set(int(n) for n in ns))
        heads = tuple(range(ns[0], ns[-1] + 1))
        return cls(heads, (tuple(n in ns for n in heads),), 1.0, **kwargs)

    def __post_init__(self):
        if not 0 < self.measure_sequences <= self.epoch_sequences:
            raise ValueError(
                f"measure_sequences must be in [1, epoch_sequences="
                f"{self.epoch_sequences}], got {self.measure_sequences}"
            )

    @property
    def num_heads(self) -> int:
        return len(self.ns)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def _n_max(self) -> tuple[int, ...]:
        return tuple(
            max(n for n, a in zip(self.ns, s, strict=True) if a) for s in self.stages
        )

    def _length_range(self, n: int) -> tuple[int, int]:
        low = n + 2
        return low, max(1, int(math.floor(self.length_factor * n)))

    @property
    def seq_len(self) -> int:
        """The padded length ``T``: the longest sequence of the last stage."""
        low, span = self._length_range(max(self._n_max()))
        return low + span - 1

    def active(self, stage: jax.Array) -> jax.Array:
        """``[H]`` booleans: the heads trained at ``stage``."""
        return jnp.asarray(self.stages, bool)[stage]

    def n_max(self, stage: jax.Array) -> jax.Array:
        """The largest active ``N`` at ``stage``."""
        return jnp.asarray(self._n_max(), jnp.int32)[stage]

    def top(self, stage: jax.Array) -> jax.Array:
        """The head index of the largest active ``N``."""
        top = tuple(self.ns.index(n) for n in self._n_max())
        return jnp.asarray(top, jnp.int32)[stage]

    def lengths(self, stage: jax.Array, u: jax.Array) -> jax.Array:
        """Sequence lengths ``M = n + 2 + floor(u floor(f n))`` for uniform ``u``.

        Args:
          stage: the current stage (scalar int).
          u: ``[B]`` uniform draws in ``[0, 1)``.

        Returns:
          ``[B]`` int32 lengths in ``[n + 2, n + 1 + floor(f n)]``.
        """
        ranges = [self._length_range(n) for n in self._n_max()]
        low = jnp.asarray([r[0] for r in ranges], jnp.int32)[stage]
        span = jnp.asarray([r[1] for r in ranges], jnp.int32)[stage]
        extra = jnp.floor(u.astype(jnp.float32) * span.astype(jnp.float32))
        return low + jnp.clip(extra.astype(jnp.int32), 0, span - 1)

    def advance(
        self, stage: jax.Array, correct: jax.Array, count: jax.Array
    ) -> jax.Array:
        """The next stage, given per-head correct answers out of ``count`` each.

        Args:
          stage: scalar int32.
          correct: ``[H]`` correct answers per head.
          count: answers per head (scalar).

        Returns:
          ``stage + 1`` if the rule passes and a later stage exists, else ``stage``.
        """
        acc = correct.astype(jnp.float32) / jnp.maximum(count, 1).astype(jnp.float32)
        active = self.active(stage)
        mean = jnp.sum(jnp.where(active, acc, 0.0)) / jnp.sum(active)
        largest = acc[self.top(stage)]
        passed = (mean > self.threshold) & (largest > self.threshold)
        passed = passed & (count > 0) & (stage < self.num_stages - 1)
        return jnp.where(passed, stage + 1, stage).astype(jnp.int32)


class MultiHeadReadout(nnx.Module):
    """Reads a bit stream and answers one binary question per ``N`` at its end.

    .. math:: \\ell_{N} = W_N\\,\\mathrm{norm}(\\mathrm{blocks}(
        w x + b))_{T-1} \\in \\mathbb{R}^2

    Only the last ``M`` bits of each row are read: the positions before them are
    padding (their own segment, so every mixer restarts its state at the first kept
    bit), which makes the answer equal to that of the ``M``-bit stream alone.

    The module also holds the curriculum state (``CurriculumVariable``\\ s): the
    ``stage``, per-head ``correct`` counts and their ``count`` over the measured part
    of the epoch, and ``seen``, the sequences of the epoch so far. ``record``
    updates them; it is called by the task's loss in training mode only
    (``deterministic`` false, set by ``model.train()``).

    Args:
      schedule: the heads and the curriculum (``HeadSchedule``).
      features: model width.
      depth: number of blocks.
      mixer: mixer name, factory, or one per block.
      mixer_options: the mixer's options.
      norm: block and final norm.
      dtype: compute dtype; ``param_dtype``: parameter dtype.
      rngs: random streams.
      **block_options: ``mlp``, ``mlp_options``, ``conv_width``, ``dropout``.

    Example:
      >>> from flax import nnx
      >>> s = HeadSchedule((2, 3), ((True, False), (True, True)), 0.98, 8, 4)
      >>> m = MultiHeadReadout(s, 8, 1, "lru", mixer_options={"state_size": 4},
      ...                      rngs=nnx.Rngs(0))
      >>> m(jnp.zeros((2, s.seq_len), jnp.uint8), jnp.array([5, 9])).shape
      (2, 2, 2)
    """

    def __init__(
        self,
        schedule: HeadSchedule,
        features: int,
        depth: int,
        mixer: Any = "lru",
        *,
        mixer_options: Any = None,
        norm: str | None = "rmsnorm",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **block_options: Any,
    ):
        self.schedule = schedule
        dt = dict(dtype=dtype, param_dtype=param_dtype)
        self.encoder = nnx.Linear(1, features, rngs=rngs, **dt)
        self.backbone = block_lib.Backbone(
            features, depth, mixer, mixer_options=mixer_options, norm=norm,
            rngs=rngs, **dt, **block_options,
        )  # fmt: skip
        self.norm = norms.make_norm(norm, features, rngs=rngs, **dt)
        self.heads = nnx.Linear(features, 2 * schedule.num_heads, rngs=rngs, **dt)
        h = schedule.num_heads
        self.stage = CurriculumVariable(jnp.zeros((), jnp.int32))
        self.correct = CurriculumVariable(jnp.zeros((h,), jnp.int32))
        self.count = CurriculumVariable(jnp.zeros((), jnp.int32))
        self.seen = CurriculumVariable(jnp.zeros((), jnp.int32))
        self.deterministic = True

    def __call__(self, bits: jax.Array, lengths: jax.Array) -> jax.Array:
        """Logits of every head from the last ``lengths`` bits of each row.

        Args:
          bits: ``[batch, T]`` or ``[batch, T, 1]`` 0/1 values.
          lengths: ``[batch]`` ints in ``[1, T]``.

        Returns:
          ``[batch, num_heads, 2]`` float32 logits.

        Raises:
          ValueError: ``bits`` of the wrong rank.
        """
        x = jnp.asarray(bits)
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[-1] != 1:
            raise ValueError(
                f"bits must be [batch, T] or [batch, T, 1], got shape {x.shape}"
            )
        time = x.shape[1]
        mask = jnp.arange(time)[None, :] >= time - jnp.asarray(lengths)[:, None]
        h = self.encoder(x.astype(jnp.float32))
        h = self.norm(self.backbone(h, mask=mask), mask=mask)[:, -1]
        logits = self.heads(h).astype(jnp.float32)
        return logits.reshape(x.shape[0], self.schedule.num_heads, 2)

    def record(self, correct: jax.Array, rows: int) -> None:
        """Adds one training batch's answers and advances at the end of an epoch.

        Args:
          correct: ``[H]`` correct answers per head on this batch of ``rows``.
          rows: sequences in the batch.
        """
        s = self.schedule
        seen = self.seen[...] + rows
        measured = seen > s.epoch_sequences - s.measure_sequences
        total = self.correct[...] + jnp.where(measured, correct.astype(jnp.int32), 0)
        count = self.count[...] + jnp.where(measured, rows, 0)
        done = seen >= s.epoch_sequences
        stage = self.stage[...]
        self.stage[...] = jnp.where(done, s.advance(stage, total, count), stage)
        self.correct[...] = jnp.where(done, 0, total)
        self.count[...] = jnp.where(done, 0, count)
        self.seen[...] = jnp.where(done, 0, seen)


_STREAM_OPTIONS = (
    "curriculum",
    "ns",
    "start",
    "init_heads",
    "add_heads",
    "forget_heads",
    "threshold",
    "max_n",
    "epoch_steps",
    "measure_steps",
    "length_factor",
    "num_eval",
    "cache_dir",
)


def _stream_batch(
    index: int,
    *,
    seed: int,
    process_index: int,
    batch_size: int,
    task: str,
    ns: tuple[int, ...],
    length: int,
) -> dict[str, np.ndarray]:
    """Training batch ``index`` of this process: fresh bits, one label per head."""
    rng = np.random.default_rng([seed, process_index, index])
    return _stream_records(rng, batch_size, task=task, ns=ns, length=length)


def _stream_records(
    rng: np.random.Generator, n: int, *, task: str, ns: tuple[int, ...], length: int
) -> dict[str, np.ndarray]:
    batch = parity.make_batch(rng, ns, n, task=task, length=length)
    return {
        "inputs": batch["inputs"][..., 0].astype(np.uint8),
        "targets": batch["targets"],
        "u": rng.random(n).astype(np.float32),
    }


class BitStream:
    """N-parity or N-DMS with one head per ``N``, trained with a curriculum.

    **Options** (``data.options``):

    * ``curriculum``: ``"multi"`` (the paper's multi-head: ``[2] → [2, 3] → …``),
      ``"single"`` (single-head: ``[2] → [3] → …``), ``"sliding"``, or ``"none"``
      (the heads of ``ns`` from the start, never advancing: the paper's
      no-curriculum baseline);
    * ``start`` (2), ``init_heads`` (1), ``add_heads`` (1), ``forget_heads`` (1),
      ``threshold`` (0.98): as ``seqjax.data.parity.Curriculum``; ``max_n`` (100):
      the largest ``N``, one head per ``N`` up to it (the paper allocates 100);
    * ``ns``: the trained ``N`` with ``curriculum="none"`` (default ``[start]``);
    * ``epoch_steps`` (600) and ``measure_steps`` (50): see the module docstring;
    * ``length_factor`` (3.0): lengths ``n + 2`` to ``n + 1 + floor(f n)``;
    * ``num_eval``: evaluation sequences (default ``eval_batches`` batches);
    * ``cache_dir``: where the evaluation set is cached.

    ``data.seq_len`` is not used: the padded length follows from ``max_n``.
    Training batches are generated fresh for every step from
    ``(data.seed, process, step)``, as the paper draws new data every step; the
    evaluation set is generated once with ``data.seed`` and cached.
    """

    def __init__(self, name: str):
        self.name = name

    def schedule(self, config: config_lib.Config) -> HeadSchedule:
        """The ``HeadSchedule`` of ``config``.

        Raises:
          ConfigError: unknown keys or bad values.
        """
        options = dict(config.data.options)
        _check_keys(options, _STREAM_OPTIONS, "data.options")
        kind = options.get("curriculum", "multi")
        if kind not in CURRICULA:
            raise _option_error("curriculum", kind, f"one of {CURRICULA}")
        epoch_steps = _int(options, "epoch_steps", 600, 1)
        measure_steps = _int(options, "measure_steps", min(50, epoch_steps), 1)
        if measure_steps > epoch_steps:
            raise _option_error(
                "measure_steps", measure_steps, f"<= epoch_steps ({epoch_steps})"
            )
        factor = options.get("length_factor", 3.0)
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise _option_error("length_factor", factor, "a number > 0")
        if factor <= 0:
            raise _option_error("length_factor", factor, "a number > 0")
        batch = config.data.batch_size
        common = dict(
            epoch_sequences=epoch_steps * batch,
            measure_sequences=measure_steps * batch,
            length_factor=float(factor),
        )
        smallest = 1 if self.name == "parity" else 2
        start = _int(options, "start", 2, smallest)
        if kind == "none":
            ns = options.get("ns", [start])
            if (
                not isinstance(ns, list | tuple)
                or not ns
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in ns)
                or min(ns) < smallest
            ):
                raise _option_error("ns", ns, f"a non-empty list of ints >= {smallest}")
            return HeadSchedule.fixed(ns, **common)
        if "ns" in options:
            raise config_lib.ConfigError(
                "data.options['ns'] is for curriculum='none'; a curriculum chooses "
                "its own Ns"
            )
        max_n = _int(options, "max_n", 100, start)
        threshold = options.get("threshold", 0.98)
        try:
            curriculum = parity.Curriculum(
                kind,
                start=start,
                init_heads=_int(options, "init_heads", 1, 1),
                add_heads=_int(options, "add_heads", 1, 1),
                forget_heads=_int(options, "forget_heads", 1, 1),
                threshold=threshold,
                max_n=max_n,
            )
            return HeadSchedule.from_curriculum(curriculum, max_n, **common)
        except (TypeError, ValueError) as e:
            raise config_lib.ConfigError(f"data.options (curriculum): {e}") from e

    def build_model(self, config, rngs):
        m = config.model
        return MultiHeadReadout(
            self.schedule(config), m.features, m.depth, m.mixer, rngs=rngs,
            **registry.backbone_options(m),
        )  # fmt: skip

    def datasets(self, config, process_index, process_count):
        d = config.data
        schedule = self.schedule(config)
        local = _local(d.batch_size, process_count, "data.batch_size")
        eval_global = d.eval_batch_size or d.batch_size
        eval_local = _local(eval_global, process_count, "data.eval_batch_size")
        common = dict(task=self.name, ns=schedule.ns, length=schedule.seq_len)
        train = grain.MapDataset.range(0, 2**62).map(
            lambda i: _stream_batch(
                i,
                seed=d.seed,
                process_index=process_index,
                batch_size=local,
                **common,
            )  # fmt: skip
        )
        options = d.options
        num_eval = _int(options, "num_eval", config.train.eval_batches * eval_global, 1)
        settings = dict(common, ns=list(schedule.ns), num_examples=num_eval,
                        seed=d.seed)  # fmt: skip

        def build():
            rng = np.random.default_rng([d.seed, 2**32 - 1])
            return _stream_records(rng, num_eval, **common)

        arrays = sources.cached(
            f"{self.name}-eval", settings, build, options.get("cache_dir")
        )
        held_out = grain.MapDataset.source(sources.ArraySource(arrays))
        held_out = held_out[process_index::process_count].batch(
            eval_local, drop_remainder=True
        )
        return train, held_out

    def loss(self, model, batch):
        s = model.schedule
        stage = model.stage[...]
        logits = model(batch["inputs"], s.lengths(stage, batch["u"]))
        targets = batch["targets"]
        rows = targets.shape[0]
        active = s.active(stage)
        weights = jnp.broadcast_to(active[None, :], targets.shape).astype(jnp.float32)
        mean, sums = classification.classification_sums(logits, targets, weights)
        right = jnp.argmax(logits, axis=-1) == targets
        if not model.deterministic:
            model.record(jnp.sum(right, axis=0), rows)
        top = s.top(stage)
        sums.update(
            top_correct=jnp.sum(right[:, top]).astype(jnp.float32),
            top_count=jnp.asarray(rows, jnp.float32),
            n_max=s.n_max(stage).astype(jnp.float32),
            stage=stage.astype(jnp.float32),
            batches=jnp.ones((), jnp.float32),
        )
        # The paper sums the cross-entropy over the active heads.
        return mean * jnp.sum(active), sums

    def summarize(self, sums):
        count = max(float(sums["count"]), 1.0)
        batches = max(float(sums["batches"]), 1.0)
        return {
            "eval/loss": float(sums["nats"]) / count,
            "eval/accuracy": float(sums["correct"]) / count,
            "eval/accuracy_n_max": float(sums["top_correct"])
            / max(float(sums["top_count"]), 1.0),
            "eval/n_max": float(sums["n_max"]) / batches,
            "eval/stage": float(sums["stage"]) / batches,
        }

    def tokens(self, batch):
        return int(np.asarray(batch["inputs"]).size)


# --- registration -------------------------------------------------------------------

GENERATORS = {
    "mqar": Generator(
        mqar.mqar,
        ("seq_len", "num_kv_pairs", "vocab_size", "power_a", "random_non_queries"),
        has_context=True,
    ),
    "set_disjointness": Generator(
        mqar.set_disjointness,
        ("first_size", "second_size", "vocab_size"),
        has_context=True,
    ),
    "selective_copying": Generator(
        copying.selective_copying,
        ("seq_len", "num_tokens", "vocab_size"),
        has_context=False,
    ),
    "induction_heads": Generator(
        copying.induction_heads, ("seq_len", "vocab_size"), has_context=False
    ),
}

for _name, _generator in GENERATORS.items():
    registry.register_task(TokenRecall(_name, _generator))
registry.register_task(BitStream("parity"))
registry.register_task(BitStream("dms"))
