"""Selective copying and induction heads (Mamba's synthetic tasks)."""

import numpy as np
import pytest

from seqjax.data import copying


def test_selective_copying_targets_are_the_data_tokens_in_order():
    n, length, k, vocab = 50, 40, 6, 10
    data = copying.selective_copying(
        n, seed=0, seq_len=length, num_tokens=k, vocab_size=vocab
    )
    inputs, targets = data["inputs"], data["targets"]
    assert inputs.shape == targets.shape == (n, length)
    marker = vocab - 1
    assert np.all(inputs[:, -k:] == marker)
    assert np.all(targets[:, :-k] == copying.IGNORE)
    for row, target in zip(inputs, targets, strict=True):
        context = row[:-k]
        data_tokens = [t for t in context.tolist() if t != copying.NOISE_ID]
        assert len(data_tokens) == k
        assert all(1 <= t < marker for t in data_tokens)
        assert target[-k:].tolist() == data_tokens
    # the spacing is random: the data positions differ across rows
    positions = {tuple(np.flatnonzero(r[:-k])) for r in inputs}
    assert len(positions) > n // 2


def test_induction_heads_target_follows_the_first_special_token():
    n, length, vocab = 100, 30, 8
    data = copying.induction_heads(n, seed=0, seq_len=length, vocab_size=vocab)
    inputs, targets = data["inputs"], data["targets"]
    special = vocab - 1
    assert np.all(targets[:, :-1] == copying.IGNORE)
    for row, target in zip(inputs, targets, strict=True):
        where = np.flatnonzero(row == special)
        assert len(where) == 2 and where[1] == length - 1
        assert where[0] <= length - 3
        assert target[-1] == row[where[0] + 1] != special
    firsts = [np.flatnonzero(r == special)[0] for r in inputs]
    assert len(set(firsts)) > 10


def test_same_seed_same_data():
    for make in (copying.selective_copying, copying.induction_heads):
        a = make(8, seed=5, seq_len=32)
        b = make(8, seed=5, seq_len=32)
        c = make(8, seed=6, seq_len=32)
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        np.testing.assert_array_equal(a["targets"], b["targets"])
        assert not np.array_equal(a["inputs"], c["inputs"])


def test_mamba_defaults():
    data = copying.selective_copying(2, seed=0)
    assert data["inputs"].shape == (2, 4096)
    assert np.sum(data["targets"] != copying.IGNORE) == 2 * 16
    assert copying.induction_heads(2, seed=0)["inputs"].shape == (2, 256)


def test_bad_settings():
    with pytest.raises(ValueError, match="seq_len"):
        copying.selective_copying(1, seed=0, seq_len=10, num_tokens=6)
    with pytest.raises(ValueError, match="vocab_size"):
        copying.selective_copying(1, seed=0, vocab_size=2)
    with pytest.raises(ValueError, match="seq_len"):
        copying.induction_heads(1, seed=0, seq_len=2)
