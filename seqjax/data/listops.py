"""ListOps: seeded generator of nested list-operation expressions (Long Range Arena).

An expression is a tree whose internal nodes apply one of four operators to 2 to
``max_args`` arguments (digits or sub-expressions), written in prefix form with a
closing bracket, e.g. ``[MAX 2 9 [MIN 4 7 ] 0 ]`` = 9:

.. math:: \\mathrm{MIN}, \\mathrm{MAX}, \\mathrm{MED}(x) = \\lfloor \\mathrm{median}(x)
   \\rfloor, \\quad \\mathrm{SM}(x) = \\textstyle\\sum_i x_i \\bmod 10

The label is the value of the whole expression (10 classes).

Sampling follows the generator of the LRA release: the root is at depth 1; a node at
depth ``< max_depth`` is an operator with probability 1/4 (else a uniform digit), a node
at ``max_depth`` is a digit; an operator takes ``randint(2, max_args)`` arguments and
a uniform operator. An expression of ``L`` tokens is kept when
``min_length < L < max_length`` (strictly, as LRA does), and duplicates are dropped
(LRA keeps a set), here also across splits. Since one-token trees are always rejected,
the root is drawn as an operator directly, which leaves the distribution of the kept
expressions unchanged. Unlike LRA's script, which uses Python's global ``random``,
generation is reproducible from ``seed``, and each split has its own random stream, so
the test split does not change when the train size does.

Tokenisation is LRA's with the closing brackets kept (LRA's released pipeline dropped
them through its alphanumeric tokenizer, which made expressions ambiguous; the
maintainers confirmed the brackets are required, google-research/long-range-arena
issue #14, and S4/S5 keep them as a token). The parentheses of LRA's text format are
an artefact of its binary-tuple serialisation and carry nothing, so they are not
tokens; the token count then equals LRA's ``length``. Vocabulary (:data:`VOCAB`):

=====  ======================  =====
id     token                   note
=====  ======================  =====
0      ``<pad>``               padding
1-10   ``0`` ... ``9``         digit ``d`` has id ``d + 1``
11-14  ``[MIN [MAX [MED [SM``  operators
15     ``]``                   closes the innermost operator
=====  ======================  =====

Reference: Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers"
(2021); Nangia & Bowman, "ListOps: A Diagnostic Dataset for Latent Tree Learning"
(2018).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from seqjax.data import sources

VOCAB: tuple[str, ...] = (
    "<pad>",
    *(str(d) for d in range(10)),
    "[MIN",
    "[MAX",
    "[MED",
    "[SM",
    "]",
)
"""Token strings; the id of a token is its index."""
PAD_ID = 0
DIGIT_OFFSET = 1
MIN_ID, MAX_ID, MED_ID, SM_ID = 11, 12, 13, 14
CLOSE_ID = 15
VOCAB_SIZE = len(VOCAB)
NUM_CLASSES = 10
OPERATOR_P = 0.25
"""Probability that a node above the maximum depth is an operator (LRA: 1 - 0.75)."""
SPLITS = ("train", "validation", "test")

_CHUNK_ROOTS = 2048


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _sample_forest(
    rng: np.random.Generator, num_roots: int, max_depth: int, max_args: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Samples ``num_roots`` trees level by level and serialises them.

    Returns:
        ``(tokens, offsets, sizes, values)``: the concatenated token ids of all trees
        in prefix order, each tree's start offset and token count, and each tree's
        value.
    """
    # Top-down: per level, which nodes are operators, their arity/operator, and the
    # digit of each leaf.
    levels = []  # (is_op, arity, op_id, digit)
    is_op = np.ones(num_roots, dtype=bool)  # depth 1: forced operator roots
    depth = 1
    while True:
        n_nodes = is_op.size
        n_ops = int(is_op.sum())
        arity = rng.integers(2, max_args + 1, size=n_ops)
        op_id = rng.integers(MIN_ID, SM_ID + 1, size=n_ops)
        digit = rng.integers(0, 10, size=n_nodes - n_ops)
        levels.append((is_op, arity, op_id, digit))
        if n_ops == 0:
            break
        depth += 1
        n_children = int(arity.sum())
        if depth < max_depth:
            is_op = rng.random(n_children) < OPERATOR_P
        else:
            is_op = np.zeros(n_children, dtype=bool)

    # Bottom-up: token count and value of every node.
    sizes_per_level = [None] * len(levels)
    values_per_level = [None] * len(levels)
    child_sizes = child_values = None
    for level in range(len(levels) - 1, -1, -1):
        is_op, arity, op_id, digit = levels[level]
        size = np.ones(is_op.size, dtype=np.int64)
        value = np.zeros(is_op.size, dtype=np.int64)
        value[~is_op] = digit
        if arity.size:
            starts = np.zeros(arity.size, dtype=np.int64)
            np.cumsum(arity[:-1], out=starts[1:])
            size[is_op] = 2 + np.add.reduceat(child_sizes, starts)
            value[is_op] = _apply_ops(op_id, arity, starts, child_values)
        sizes_per_level[level] = size
        values_per_level[level] = value
        child_sizes, child_values = size, value

    # Top-down again: the position of every node in the concatenated token stream.
    root_sizes = sizes_per_level[0]
    offsets = np.zeros(num_roots, dtype=np.int64)
    np.cumsum(root_sizes[:-1], out=offsets[1:])
    tokens = np.empty(int(root_sizes.sum()), dtype=np.int32)
    position = offsets
    for level, (is_op, arity, op_id, digit) in enumerate(levels):
        size = sizes_per_level[level]
        tokens[position[~is_op]] = digit + DIGIT_OFFSET
        op_pos = position[is_op]
        tokens[op_pos] = op_id
        tokens[op_pos + size[is_op] - 1] = CLOSE_ID
        if arity.size == 0:
            break
        child_size = sizes_per_level[level + 1]
        # Start of each child = parent start + 1 + sizes of the earlier siblings.
        exclusive = np.cumsum(child_size) - child_size
        group_start = np.repeat(exclusive[np.cumsum(arity) - arity], arity)
        position = np.repeat(op_pos + 1, arity) + exclusive - group_start
    return tokens, offsets, root_sizes, values_per_level[0]


def _apply_ops(
    op_id: np.ndarray, arity: np.ndarray, starts: np.ndarray, args: np.ndarray
) -> np.ndarray:
    """Evaluates each operator on its contiguous group of argument values."""
    result = np.empty(op_id.size, dtype=np.int64)
    for op, reduce in (
        (MIN_ID, np.minimum.reduceat),
        (MAX_ID, np.maximum.reduceat),
    ):
        mask = op_id == op
        if mask.any():
            result[mask] = reduce(args, starts)[mask]
    mask = op_id == SM_ID
    if mask.any():
        result[mask] = np.add.reduceat(args, starts)[mask] % 10
    mask = op_id == MED_ID
    if mask.any():
        group = np.repeat(np.arange(op_id.size), arity)
        ordered = args[np.lexsort((args, group))]  # sorted within each group
        lo = ordered[starts + (arity - 1) // 2]
        hi = ordered[starts + arity // 2]
        result[mask] = ((lo + hi) // 2)[mask]  # int(np.median) for digits >= 0
    return result


def generate(
    num_examples: int,
    *,
    seed: int,
    stream: int = 0,
    max_depth: int = 10,
    max_args: int = 10,
    min_length: int = 500,
    max_length: int = 2000,
    exclude: Iterable[bytes] | None = None,
) -> dict[str, np.ndarray]:
    """Generates distinct ListOps examples, reproducibly from ``seed``.

    .. math:: y = \\mathrm{eval}(\\text{expression}) \\in \\{0, \\dots, 9\\}

    Args:
        num_examples: number of examples ``n``.
        seed: random seed.
        stream: independent sub-stream of ``seed`` (used for splits).
        max_depth: maximum tree depth, root at depth 1 (LRA: 10).
        max_args: maximum arguments per operator, at least 2 (LRA: 10).
        min_length: keep expressions with strictly more tokens (LRA: 500).
        max_length: keep expressions with strictly fewer tokens (LRA: 2000); also the
            padded width.
        exclude: token sequences (``row[:length].tobytes()`` of int32 ids) that must
            not be generated, e.g. other splits.

    Returns:
        ``{"inputs": int32[n, max_length]`` (token ids, padded with 0),
        ``"lengths": int32[n]``, ``"targets": int32[n]}``.

    Raises:
        ValueError: for out-of-range settings, e.g. ``min_length + 1 >= max_length``.
        TypeError: for non-integer settings.

    Example:
        >>> data = generate(4, seed=0, min_length=20, max_length=60)
        >>> data["inputs"].shape, data["targets"].dtype
        ((4, 60), dtype('int32'))
    """
    num_examples = _check_int("num_examples", num_examples, 0)
    seed = _check_int("seed", seed, 0)
    stream = _check_int("stream", stream, 0)
    max_depth = _check_int("max_depth", max_depth, 2)
    max_args = _check_int("max_args", max_args, 2)
    min_length = _check_int("min_length", min_length, 0)
    max_length = _check_int("max_length", max_length, 5)
    if max_length <= min_length + 1:
        raise ValueError(
            f"need min_length + 1 < max_length to keep any expression, got "
            f"min_length={min_length}, max_length={max_length}"
        )
    if max_length <= 4:
        raise ValueError(f"max_length must exceed 4 tokens, got {max_length}")
    seen = set(exclude or ())
    rng = np.random.default_rng([seed, stream])
    inputs = np.zeros((num_examples, max_length), dtype=np.int32)
    lengths = np.zeros(num_examples, dtype=np.int32)
    targets = np.zeros(num_examples, dtype=np.int32)
    count = 0
    attempts = 0
    while count < num_examples:
        tokens, offsets, sizes, values = _sample_forest(
            rng, _CHUNK_ROOTS, max_depth, max_args
        )
        attempts += _CHUNK_ROOTS
        keep = np.flatnonzero((sizes > min_length) & (sizes < max_length))
        for tree in keep:
            start, size = offsets[tree], sizes[tree]
            row = tokens[start : start + size]
            key = row.tobytes()
            if key in seen:
                continue
            seen.add(key)
            inputs[count, :size] = row
            lengths[count] = size
            targets[count] = values[tree]
            count += 1
            if count == num_examples:
                break
        if count == 0 and attempts >= 100 * _CHUNK_ROOTS:
            raise ValueError(
                f"no expression with {min_length} < length < {max_length} in "
                f"{attempts} trees (max_depth={max_depth}, max_args={max_args}); "
                "widen the length window"
            )
    return {"inputs": inputs, "lengths": lengths, "targets": targets}


def _row_keys(data: dict[str, np.ndarray]) -> list[bytes]:
    return [
        row[:length].tobytes()
        for row, length in zip(data["inputs"], data["lengths"], strict=True)
    ]


def make_splits(
    *,
    seed: int = 0,
    sizes: Sequence[int] = (96_000, 2_000, 2_000),
    max_depth: int = 10,
    max_args: int = 10,
    min_length: int = 500,
    max_length: int = 2000,
) -> dict[str, dict[str, np.ndarray]]:
    """Generates the train/validation/test splits, disjoint from each other.

    The test split is drawn first (stream 3), then validation (stream 2) excluding
    it, then train (stream 1) excluding both, so the held-out splits depend only on
    their own size.

    Args:
        seed: random seed.
        sizes: ``(train, validation, test)`` sizes; LRA uses 96K/2K/2K.
        max_depth: see :func:`generate`.
        max_args: see :func:`generate`.
        min_length: see :func:`generate`.
        max_length: see :func:`generate`.

    Returns:
        ``{"train": ..., "validation": ..., "test": ...}``, each as in
        :func:`generate`.

    Raises:
        ValueError: if ``sizes`` does not have three non-negative entries.
    """
    sizes = tuple(sizes)
    if len(sizes) != 3:
        raise ValueError(f"sizes must be (train, validation, test), got {sizes}")
    kwargs = dict(
        seed=seed,
        max_depth=max_depth,
        max_args=max_args,
        min_length=min_length,
        max_length=max_length,
    )
    out: dict[str, dict[str, np.ndarray]] = {}
    taken: list[bytes] = []
    for index in (2, 1, 0):
        split = SPLITS[index]
        out[split] = generate(sizes[index], stream=index + 1, exclude=taken, **kwargs)
        taken.extend(_row_keys(out[split]))
    return {split: out[split] for split in SPLITS}


def load_splits(
    *,
    seed: int = 0,
    sizes: Sequence[int] = (96_000, 2_000, 2_000),
    max_depth: int = 10,
    max_args: int = 10,
    min_length: int = 500,
    max_length: int = 2000,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`make_splits`, cached on disk (see :func:`seqjax.data.sources.cached`).

    Args:
        seed: random seed.
        sizes: ``(train, validation, test)`` sizes.
        max_depth: see :func:`generate`.
        max_args: see :func:`generate`.
        min_length: see :func:`generate`.
        max_length: see :func:`generate`.
        cache_dir: cache directory; ``None`` means ``$SEQJAX_CACHE`` or
            ``~/.cache/seqjax``.

    Returns:
        As :func:`make_splits`.

    Example:
        >>> splits = load_splits(sizes=(8, 2, 2), min_length=20, max_length=60,
        ...                      cache_dir="/tmp/seqjax-example")
        >>> sorted(splits), splits["train"]["inputs"].shape
        (['test', 'train', 'validation'], (8, 60))
    """
    settings = dict(
        seed=seed,
        sizes=[int(s) for s in sizes],
        max_depth=max_depth,
        max_args=max_args,
        min_length=min_length,
        max_length=max_length,
    )

    def build() -> dict[str, np.ndarray]:
        splits = make_splits(**settings)
        return {
            f"{split}_{key}": value
            for split, data in splits.items()
            for key, value in data.items()
        }

    flat = sources.cached("listops", settings, build, cache_dir)
    return {
        split: {key: flat[f"{split}_{key}"] for key in ("inputs", "lengths", "targets")}
        for split in SPLITS
    }


def decode(tokens: Sequence[int] | np.ndarray) -> str:
    """Token ids to the space-separated expression, padding dropped.

    Raises:
        ValueError: if an id is outside the vocabulary.

    Example:
        >>> decode([12, 3, 10, 15, 0])
        '[MAX 2 9 ]'
    """
    ids = np.asarray(tokens).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
        raise ValueError(
            f"token ids must be in [0, {VOCAB_SIZE}), got range "
            f"[{ids.min()}, {ids.max()}]"
        )
    return " ".join(VOCAB[i] for i in ids.tolist() if i != PAD_ID)
