"""Multi-query associative recall (MQAR), set disjointness, and JRT-Prompt.

**MQAR** (Zoology): a sequence starts with ``D`` key-value pairs
``k_1 v_1 k_2 v_2 ... k_D v_D`` (keys distinct, from ``[1, V/2)``; values distinct,
from ``[V/2, V)``); every key then appears once more, as a query, later in the
sequence. At the query's position the model must emit the paired value:

.. math:: y_t = v_i \\ \\text{if } x_t = k_i \\text{ is a query}, \\quad
   y_t = -100 \\ \\text{(ignored) otherwise}

The part after the pairs is split into ``(L - 2D) // 2`` two-token slots; query ``i``
goes to the first token of slot ``g_i``, with the slots drawn without replacement from
the power law :math:`p(g) \\propto (g + 1)^{a - 1}` (``a = power_a = 0.01`` favours
early slots, ``a = 1`` is uniform) in key order, exactly as Zoology draws them
sequentially. All other positions are uniform random tokens from ``[0, V)`` (or 0 with
``random_non_queries=False``).

**Set disjointness** (JRT): ``[1] A [2] B [3]`` with two sets drawn from disjoint
halves of a per-example shuffled vocabulary, except one element of ``A`` planted in
``B``; the target at the final ``[3]`` is that element. The JRT paper's point is that
a recurrent model needs memory for the *first* set, so the order matters: compare
``first_size < second_size`` (short set first) with the reverse.

**JRT-Prompt**: :func:`jrt_prompt` repeats the context (the key-value block, or the
sets) before the questions, so a causal model sees every item again after having seen
all of them.

References: Arora et al., "Zoology: Measuring and Improving Recall in Efficient
Language Models" (2023); Arora et al., "Just read twice: closing the recall gap for
recurrent language models" (2024).
"""

from __future__ import annotations

import numpy as np

IGNORE = -100
"""Target value at positions without a label."""
SD_PREFIX, SD_SEPARATOR, SD_ANSWER = 1, 2, 3
"""Set-disjointness special tokens (``0`` is unused, as in JRT's code)."""
SD_NUM_SPECIAL = 4

_MAX_CHUNK_CELLS = 1 << 22


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def distinct_per_row(
    rng: np.random.Generator, num_rows: int, k: int, low: int, high: int
) -> np.ndarray:
    """``k`` distinct integers from ``[low, high)`` per row, uniform, in random order.

    Rows with a repeat are redrawn (exact rejection sampling) when ``k`` is small
    against the range; otherwise each row takes the first ``k`` of a random
    permutation, in chunks to bound memory.

    Returns:
        int64 array ``[num_rows, k]``.

    Raises:
        ValueError: if ``k > high - low``.
    """
    span = high - low
    if k > span:
        raise ValueError(f"cannot draw {k} distinct values from [{low}, {high})")
    if k == 0 or num_rows == 0:
        return np.zeros((num_rows, k), dtype=np.int64)
    if 4 * k * k <= span:
        out = rng.integers(low, high, size=(num_rows, k))
        bad = np.arange(num_rows)
        while True:
            ordered = np.sort(out[bad], axis=1)
            repeat = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            bad = bad[repeat]
            if bad.size == 0:
                return out
            out[bad] = rng.integers(low, high, size=(bad.size, k))
    out = np.empty((num_rows, k), dtype=np.int64)
    rows_per_chunk = max(1, _MAX_CHUNK_CELLS // span)
    for start in range(0, num_rows, rows_per_chunk):
        stop = min(num_rows, start + rows_per_chunk)
        keys = rng.random((stop - start, span))
        # The k smallest keys, in increasing order: the first k entries of the
        # uniformly random permutation argsort(keys).
        top = np.argpartition(keys, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(keys, top, axis=1), axis=1)
        out[start:stop] = np.take_along_axis(top, order, axis=1) + low
    return out


def power_law_slots(
    rng: np.random.Generator, num_rows: int, num_slots: int, k: int, power_a: float
) -> np.ndarray:
    """Draws ``k`` distinct slots per row, sequentially, with ``p(g) ∝ (g+1)^(a-1)``.

    Uses the Gumbel-top-k identity: sorting ``log p(g) + Gumbel`` in decreasing order
    gives the order of sequential sampling without replacement.

    Returns:
        int64 array ``[num_rows, k]``; column ``j`` is the ``j``-th draw.
    """
    log_p = (power_a - 1.0) * np.log(np.arange(1, num_slots + 1, dtype=np.float64))
    out = np.empty((num_rows, k), dtype=np.int64)
    rows_per_chunk = max(1, _MAX_CHUNK_CELLS // num_slots)
    for start in range(0, num_rows, rows_per_chunk):
        stop = min(num_rows, start + rows_per_chunk)
        perturbed = log_p + rng.gumbel(size=(stop - start, num_slots))
        top = np.argpartition(-perturbed, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(perturbed, top, axis=1), axis=1)
        out[start:stop] = np.take_along_axis(top, order, axis=1)
    return out


def mqar(
    num_examples: int,
    *,
    seed: int,
    seq_len: int = 64,
    num_kv_pairs: int = 4,
    vocab_size: int = 8192,
    power_a: float = 0.01,
    random_non_queries: bool = True,
    stream: int = 0,
) -> dict[str, np.ndarray]:
    """Generates MQAR sequences (Zoology's layout and query distribution).

    Args:
        num_examples: number of sequences ``n``.
        seed: random seed.
        seq_len: sequence length ``L``; needs ``(L - 2D) // 2 >= D``.
        num_kv_pairs: number of pairs ``D``; needs ``D < V/2``.
        vocab_size: vocabulary size ``V`` (keys ``[1, V/2)``, values ``[V/2, V)``).
        power_a: power-law exponent ``a`` in ``(0, 1]`` for the query slots.
        random_non_queries: fill non-query positions with random tokens (else 0).
        stream: independent sub-stream of ``seed`` (e.g. a split index).

    Returns:
        ``{"inputs": int32[n, L], "targets": int32[n, L]`` (``-100`` except at the
        ``D`` query positions), ``"context_length": int32[n]`` (``2D``)``}``.

    Raises:
        ValueError: for settings that do not fit (see above).
        TypeError: for non-integer sizes.

    Example:
        >>> d = mqar(2, seed=0, seq_len=16, num_kv_pairs=2, vocab_size=12)
        >>> d["inputs"].shape, int((d["targets"] != -100).sum())
        ((2, 16), 4)
    """
    n = _check_int("num_examples", num_examples, 0)
    seed = _check_int("seed", seed, 0)
    stream = _check_int("stream", stream, 0)
    length = _check_int("seq_len", seq_len, 4)
    pairs = _check_int("num_kv_pairs", num_kv_pairs, 1)
    vocab = _check_int("vocab_size", vocab_size, 4)
    if not 0.0 < float(power_a) <= 1.0:
        raise ValueError(f"power_a must be in (0, 1], got {power_a}")
    half = vocab // 2
    if pairs > half - 1 or pairs > vocab - half:
        raise ValueError(
            f"num_kv_pairs={pairs} needs vocab_size >= {2 * pairs + 2} (keys come "
            f"from [1, V/2), values from [V/2, V)), got vocab_size={vocab}"
        )
    context = 2 * pairs
    num_slots = (length - context) // 2
    if num_slots < pairs:
        raise ValueError(
            f"seq_len={length} leaves {num_slots} query slots for {pairs} queries; "
            f"need seq_len >= {4 * pairs}"
        )
    rng = np.random.default_rng([seed, stream])
    keys = distinct_per_row(rng, n, pairs, 1, half)
    values = distinct_per_row(rng, n, pairs, half, vocab)
    slots = power_law_slots(rng, n, num_slots, pairs, float(power_a))

    inputs = np.zeros((n, length), dtype=np.int32)
    targets = np.full((n, length), IGNORE, dtype=np.int32)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    if random_non_queries:
        inputs[:, context:] = rng.integers(
            0, vocab, size=(n, length - context), dtype=np.int32
        )
    query_pos = context + 2 * slots
    rows = np.arange(n)[:, None]
    inputs[rows, query_pos] = keys
    targets[rows, query_pos] = values
    return {
        "inputs": inputs,
        "targets": targets,
        "context_length": np.full(n, context, dtype=np.int32),
    }


def set_disjointness(
    num_examples: int,
    *,
    seed: int,
    first_size: int = 4,
    second_size: int = 16,
    vocab_size: int = 64,
    stream: int = 0,
) -> dict[str, np.ndarray]:
    """Generates JRT's set-disjointness sequences ``[1] A [2] B [3]``.

    Per example the content tokens ``[4, V)`` are shuffled and halved; ``A`` is
    ``first_size`` tokens of one half, ``B`` is ``second_size`` tokens of the other,
    and one random position of ``B`` is overwritten by a random element of ``A``, so
    :math:`A \\cap B = \\{y\\}`. The target at the final ``[3]`` is ``y``.

    Args:
        num_examples: number of sequences ``n``.
        seed: random seed.
        first_size: ``|A|``, the set shown first.
        second_size: ``|B|``, the set shown second. JRT compares ``|A| < |B|`` with
            ``|A| > |B|``.
        vocab_size: vocabulary size ``V``; each half of ``[4, V)`` must hold its set.
        stream: independent sub-stream of ``seed``.

    Returns:
        ``{"inputs": int32[n, |A| + |B| + 3], "targets": int32[n, |A| + |B| + 3]``
        (``-100`` except the last position), ``"context_length": int32[n]``
        (``|A| + |B| + 2``, everything before ``[3]``)``}``.

    Raises:
        ValueError: if a set does not fit in its half of the vocabulary.

    Example:
        >>> d = set_disjointness(2, seed=0, first_size=2, second_size=3, vocab_size=16)
        >>> d["inputs"].shape, d["targets"][:, -1].shape
        ((2, 8), (2,))
    """
    n = _check_int("num_examples", num_examples, 0)
    seed = _check_int("seed", seed, 0)
    stream = _check_int("stream", stream, 0)
    size_a = _check_int("first_size", first_size, 1)
    size_b = _check_int("second_size", second_size, 1)
    vocab = _check_int("vocab_size", vocab_size, SD_NUM_SPECIAL + 2)
    content = vocab - SD_NUM_SPECIAL
    half = content // 2
    if size_a > half or size_b > content - half:
        raise ValueError(
            f"first_size={size_a} and second_size={size_b} must fit in halves of "
            f"the {content} content tokens (vocab_size={vocab})"
        )
    rng = np.random.default_rng([seed, stream])
    perm = distinct_per_row(rng, n, content, 0, content) + SD_NUM_SPECIAL
    set_a = perm[:, :size_a]
    set_b = perm[:, half : half + size_b].copy()
    rows = np.arange(n)
    planted = set_a[rows, rng.integers(0, size_a, size=n)]
    set_b[rows, rng.integers(0, size_b, size=n)] = planted
    total = size_a + size_b + 3
    inputs = np.empty((n, total), dtype=np.int32)
    inputs[:, 0] = SD_PREFIX
    inputs[:, 1 : 1 + size_a] = set_a
    inputs[:, 1 + size_a] = SD_SEPARATOR
    inputs[:, 2 + size_a : 2 + size_a + size_b] = set_b
    inputs[:, -1] = SD_ANSWER
    targets = np.full((n, total), IGNORE, dtype=np.int32)
    targets[:, -1] = planted
    return {
        "inputs": inputs,
        "targets": targets,
        "context_length": np.full(n, total - 1, dtype=np.int32),
    }


def jrt_prompt(data: dict[str, np.ndarray], repeats: int = 2) -> dict[str, np.ndarray]:
    """JRT-Prompt: repeats each sequence's context ``repeats`` times.

    .. math:: [c, q] \\mapsto [\\underbrace{c, \\dots, c}_{r}, q]

    ``c`` is the first ``context_length`` tokens (the key-value block of MQAR, the
    sets of set disjointness), ``q`` the rest. Targets inside the added copies are
    ``-100``; the targets of ``q`` move with it. ``context_length`` becomes
    ``r * context_length`` (the prefix a JRT-RNN would read non-causally).

    Args:
        data: a dict with ``inputs`` and ``targets`` of shape ``[n, L]`` and
            ``context_length`` of shape ``[n]`` (equal entries), as returned by
            :func:`mqar` and :func:`set_disjointness`.
        repeats: number of copies ``r >= 1`` of the context.

    Returns:
        A new dict of the same keys; sequences have length ``L + (r - 1) c``.

    Raises:
        ValueError: if a key is missing or ``context_length`` varies across rows.

    Example:
        >>> d = jrt_prompt(mqar(1, seed=0, seq_len=16, num_kv_pairs=2,
        ...                     vocab_size=12))
        >>> d["inputs"].shape, bool((d["inputs"][0, :4] == d["inputs"][0, 4:8]).all())
        ((1, 20), True)
    """
    repeats = _check_int("repeats", repeats, 1)
    for key in ("inputs", "targets", "context_length"):
        if key not in data:
            raise ValueError(f"data must contain {key!r}, got keys {sorted(data)}")
    inputs, targets = np.asarray(data["inputs"]), np.asarray(data["targets"])
    lengths = np.asarray(data["context_length"])
    if inputs.shape != targets.shape or inputs.ndim != 2:
        raise ValueError(
            f"inputs and targets must both be [n, L], got {inputs.shape} and "
            f"{targets.shape}"
        )
    if lengths.shape != (inputs.shape[0],):
        raise ValueError(
            f"context_length must have shape ({inputs.shape[0]},), got {lengths.shape}"
        )
    if lengths.size == 0:
        c = 0
    else:
        c = int(lengths[0])
        if not (lengths == c).all():
            raise ValueError("context_length must be equal for every row")
    context = inputs[:, :c]
    extra_targets = np.full((inputs.shape[0], (repeats - 1) * c), IGNORE, targets.dtype)
    out = dict(data)
    out["inputs"] = np.concatenate([np.tile(context, (1, repeats)), inputs[:, c:]], 1)
    out["targets"] = np.concatenate([extra_targets, targets], axis=1)
    out["context_length"] = np.full_like(lengths, repeats * c)
    return out
