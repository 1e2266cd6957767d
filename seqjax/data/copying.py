"""Selective copying and induction heads: the synthetic tasks of the Mamba paper.

**Selective copying**: ``k`` data tokens sit at random positions among noise tokens;
after them come ``k`` marker tokens, at which the model must output the data tokens
in their order of appearance. Unlike plain copying, the spacing is random, so a
time-invariant (convolutional) model cannot solve it by a fixed shift:

.. math:: x = (\\text{noise and } d_1, \\dots, d_k \\text{ at random positions}) \\Vert
   (m, \\dots, m), \\qquad y_{L-k+j} = d_{j+1}

Token ids: ``0`` is the noise token, ``V - 1`` the marker, data tokens are
``[1, V - 1)``. The Mamba paper uses length 4096, a vocabulary of 16 (noise token
included) and 16 data tokens.

**Induction heads**: uniform random tokens from ``[0, V - 1)``, a special token
``V - 1`` at a uniform position ``p \\le L - 3`` and again at the last position; the
target at the last position is the token that followed the first special token:

.. math:: x_p = x_{L-1} = s, \\qquad y_{L-1} = x_{p+1}

The special token occurs nowhere else, so the answer is unique. The Mamba paper trains
on length 256 with vocabulary 16 and tests on longer sequences.

All other targets are ``-100`` (ignored). Reference: Gu & Dao, "Mamba: Linear-Time
Sequence Modeling with Selective State Spaces" (2023), section 4.1 and appendix E.1.
"""

from __future__ import annotations

import numpy as np

from seqjax.data import mqar

IGNORE = -100
NOISE_ID = 0


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def selective_copying(
    num_examples: int,
    *,
    seed: int,
    seq_len: int = 4096,
    num_tokens: int = 16,
    vocab_size: int = 16,
    stream: int = 0,
) -> dict[str, np.ndarray]:
    """Generates selective-copying sequences.

    Args:
        num_examples: number of sequences ``n``.
        seed: random seed.
        seq_len: total length ``L`` (context of ``L - k`` tokens, then ``k`` markers).
        num_tokens: number of data tokens ``k`` to copy.
        vocab_size: vocabulary size ``V`` including the noise and marker tokens.
        stream: independent sub-stream of ``seed``.

    Returns:
        ``{"inputs": int32[n, L], "targets": int32[n, L]}``; targets are ``-100``
        except the last ``k`` positions, which hold the data tokens in order.

    Raises:
        ValueError: if ``L - k < k`` or ``V < 3``.

    Example:
        >>> d = selective_copying(2, seed=0, seq_len=12, num_tokens=3, vocab_size=6)
        >>> d["inputs"].shape, d["inputs"][:, -3:].tolist()
        ((2, 12), [[5, 5, 5], [5, 5, 5]])
    """
    n = _check_int("num_examples", num_examples, 0)
    seed = _check_int("seed", seed, 0)
    stream = _check_int("stream", stream, 0)
    length = _check_int("seq_len", seq_len, 2)
    k = _check_int("num_tokens", num_tokens, 1)
    vocab = _check_int("vocab_size", vocab_size, 3)
    context = length - k
    if context < k:
        raise ValueError(
            f"seq_len={length} must be at least 2 * num_tokens = {2 * k} (a context "
            "holding the data tokens, then one marker per token)"
        )
    marker = vocab - 1
    rng = np.random.default_rng([seed, stream])
    data = rng.integers(1, marker, size=(n, k), dtype=np.int32)
    positions = np.sort(mqar.distinct_per_row(rng, n, k, 0, context), axis=1)
    inputs = np.full((n, length), NOISE_ID, dtype=np.int32)
    inputs[np.arange(n)[:, None], positions] = data
    inputs[:, context:] = marker
    targets = np.full((n, length), IGNORE, dtype=np.int32)
    targets[:, context:] = data
    return {"inputs": inputs, "targets": targets}


def induction_heads(
    num_examples: int,
    *,
    seed: int,
    seq_len: int = 256,
    vocab_size: int = 16,
    stream: int = 0,
) -> dict[str, np.ndarray]:
    """Generates induction-head sequences (associative recall of one bigram).

    Args:
        num_examples: number of sequences ``n``.
        seed: random seed.
        seq_len: length ``L >= 3``.
        vocab_size: vocabulary size ``V >= 2``; ``V - 1`` is the special token.
        stream: independent sub-stream of ``seed``.

    Returns:
        ``{"inputs": int32[n, L], "targets": int32[n, L]}``; targets are ``-100``
        except the last position.

    Raises:
        ValueError: if ``L < 3`` or ``V < 2``.

    Example:
        >>> d = induction_heads(2, seed=0, seq_len=8, vocab_size=5)
        >>> d["inputs"][:, -1].tolist()
        [4, 4]
    """
    n = _check_int("num_examples", num_examples, 0)
    seed = _check_int("seed", seed, 0)
    stream = _check_int("stream", stream, 0)
    length = _check_int("seq_len", seq_len, 3)
    vocab = _check_int("vocab_size", vocab_size, 2)
    special = vocab - 1
    rng = np.random.default_rng([seed, stream])
    inputs = rng.integers(0, special, size=(n, length), dtype=np.int32)
    first = rng.integers(0, length - 2, size=n)
    rows = np.arange(n)
    inputs[rows, first] = special
    inputs[:, -1] = special
    targets = np.full((n, length), IGNORE, dtype=np.int32)
    targets[:, -1] = inputs[rows, first + 1]
    return {"inputs": inputs, "targets": targets}
