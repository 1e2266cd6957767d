"""MQAR, set disjointness and JRT-Prompt: answers retrievable from the context."""

import numpy as np
import pytest

from seqjax.data import mqar


def _check_retrievable(inputs, targets):
    """Every labelled position holds a key whose value is the next token after the
    key's first occurrence; returns the number of labels per row."""
    counts = []
    for row, target in zip(inputs, targets, strict=True):
        labelled = np.flatnonzero(target != mqar.IGNORE)
        for t in labelled:
            key = row[t]
            first = np.flatnonzero(row[:t] == key)
            assert first.size, f"query {key} at {t} was never shown before"
            assert target[t] == row[first[0] + 1]
        counts.append(len(labelled))
    return np.array(counts)


def test_mqar_answers_are_in_the_context():
    pairs, length, vocab = 6, 64, 50
    data = mqar.mqar(200, seed=0, seq_len=length, num_kv_pairs=pairs, vocab_size=vocab)
    inputs, targets = data["inputs"], data["targets"]
    assert inputs.shape == targets.shape == (200, length)
    assert inputs.dtype == targets.dtype == np.int32
    assert np.all(_check_retrievable(inputs, targets) == pairs)
    context = inputs[:, : 2 * pairs]
    keys, values = context[:, 0::2], context[:, 1::2]
    assert np.all((keys >= 1) & (keys < vocab // 2))
    assert np.all((values >= vocab // 2) & (values < vocab))
    for row_keys, row_values in zip(keys, values, strict=True):
        assert len(set(row_keys)) == pairs and len(set(row_values)) == pairs
    # each key is queried exactly once, at an even offset after the pairs
    for row, target in zip(inputs, targets, strict=True):
        labelled = np.flatnonzero(target != mqar.IGNORE)
        assert np.all((labelled >= 2 * pairs) & ((labelled - 2 * pairs) % 2 == 0))
        assert sorted(row[labelled]) == sorted(row[0 : 2 * pairs : 2])
    np.testing.assert_array_equal(data["context_length"], 2 * pairs)


def test_mqar_filler():
    data = mqar.mqar(
        20, seed=1, seq_len=32, num_kv_pairs=4, vocab_size=40, random_non_queries=False
    )
    rest = data["inputs"][:, 8:]
    labelled = data["targets"][:, 8:] != mqar.IGNORE
    assert np.all(rest[~labelled] == 0) and np.all(rest[labelled] > 0)
    noisy = mqar.mqar(20, seed=1, seq_len=32, num_kv_pairs=4, vocab_size=40)
    assert np.any(noisy["inputs"][:, 8:][~labelled] != 0)


def test_power_law_query_slots():
    """The first query's slot follows p(g) ∝ (g+1)^(a-1) (Zoology's distribution)."""
    n, slots, a = 40_000, 12, 0.3
    rng = np.random.default_rng(0)
    draws = mqar.power_law_slots(rng, n, slots, 3, a)
    assert np.all(np.sort(draws, axis=1)[:, 1:] != np.sort(draws, axis=1)[:, :-1])
    p = np.arange(1, slots + 1, dtype=float) ** (a - 1)
    p /= p.sum()
    freq = np.bincount(draws[:, 0], minlength=slots) / n
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p * (1 - p) / n).max())
    # the second draw is from the renormalised remainder: P(second = 0)
    expected = sum(p[g] * p[0] / (1 - p[g]) for g in range(1, slots))
    got = np.mean(draws[:, 1] == 0)
    assert abs(got - expected) < 4 * np.sqrt(expected / n)


def test_distinct_per_row_both_paths():
    rng = np.random.default_rng(0)
    sparse = mqar.distinct_per_row(rng, 500, 5, 10, 1000)
    dense = mqar.distinct_per_row(rng, 500, 30, 10, 50)
    for draws, low, high in ((sparse, 10, 1000), (dense, 10, 50)):
        assert draws.min() >= low and draws.max() < high
        assert all(len(set(r)) == draws.shape[1] for r in draws)
    # a full permutation is uniform: each value is equally likely in column 0
    perm = mqar.distinct_per_row(rng, 6000, 6, 0, 6)
    counts = np.bincount(perm[:, 0], minlength=6)
    assert np.all(np.abs(counts - 1000) < 150)


def test_same_seed_same_data():
    kwargs = dict(seq_len=32, num_kv_pairs=4, vocab_size=64)
    a = mqar.mqar(10, seed=3, **kwargs)
    b = mqar.mqar(10, seed=3, **kwargs)
    c = mqar.mqar(10, seed=4, **kwargs)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["inputs"], c["inputs"])
    d = mqar.set_disjointness(10, seed=3)
    e = mqar.set_disjointness(10, seed=3)
    f = mqar.set_disjointness(10, seed=4)
    np.testing.assert_array_equal(d["inputs"], e["inputs"])
    assert not np.array_equal(d["inputs"], f["inputs"])


@pytest.mark.parametrize("sizes", [(4, 16), (16, 4), (1, 1)])
def test_set_disjointness(sizes):
    first, second = sizes
    data = mqar.set_disjointness(
        100, seed=0, first_size=first, second_size=second, vocab_size=48
    )
    inputs, targets = data["inputs"], data["targets"]
    assert inputs.shape == (100, first + second + 3)
    assert np.all(inputs[:, 0] == mqar.SD_PREFIX)
    assert np.all(inputs[:, first + 1] == mqar.SD_SEPARATOR)
    assert np.all(inputs[:, -1] == mqar.SD_ANSWER)
    assert np.all(targets[:, :-1] == mqar.IGNORE)
    for row, answer in zip(inputs, targets[:, -1], strict=True):
        set_a = set(row[1 : 1 + first].tolist())
        set_b = set(row[2 + first : -1].tolist())
        assert len(set_a) == first and len(set_b) == second
        assert set_a & set_b == {answer}
        assert min(set_a | set_b) >= mqar.SD_NUM_SPECIAL


def test_jrt_prompt_repeats_the_context():
    data = mqar.mqar(30, seed=2, seq_len=40, num_kv_pairs=5, vocab_size=64)
    twice = mqar.jrt_prompt(data, repeats=2)
    thrice = mqar.jrt_prompt(data, repeats=3)
    c = 10
    for out, r in ((twice, 2), (thrice, 3)):
        inputs, targets = out["inputs"], out["targets"]
        assert inputs.shape == (30, 40 + (r - 1) * c)
        for copy in range(r):
            np.testing.assert_array_equal(
                inputs[:, copy * c : (copy + 1) * c], data["inputs"][:, :c]
            )
        np.testing.assert_array_equal(inputs[:, r * c :], data["inputs"][:, c:])
        np.testing.assert_array_equal(targets[:, r * c :], data["targets"][:, c:])
        assert np.all(targets[:, : r * c] == mqar.IGNORE)
        assert np.all(_check_retrievable(inputs, targets) == 5)
        np.testing.assert_array_equal(out["context_length"], r * c)
    same = mqar.jrt_prompt(data, repeats=1)
    np.testing.assert_array_equal(same["inputs"], data["inputs"])
    sets = mqar.set_disjointness(5, seed=0, first_size=3, second_size=5)
    sd = mqar.jrt_prompt(sets, repeats=2)
    c = 3 + 5 + 2  # [1] A [2] B
    assert sd["inputs"].shape == (5, 2 * c + 1)
    np.testing.assert_array_equal(sd["inputs"][:, :c], sets["inputs"][:, :c])
    np.testing.assert_array_equal(sd["inputs"][:, c:], sets["inputs"])
    np.testing.assert_array_equal(sd["targets"][:, -1], sets["targets"][:, -1])
    assert np.all(sd["targets"][:, :-1] == mqar.IGNORE)


def test_bad_settings():
    with pytest.raises(ValueError, match="seq_len"):
        mqar.mqar(1, seed=0, seq_len=16, num_kv_pairs=5, vocab_size=64)
    with pytest.raises(ValueError, match="vocab_size"):
        mqar.mqar(1, seed=0, seq_len=64, num_kv_pairs=8, vocab_size=16)
    with pytest.raises(ValueError, match="power_a"):
        mqar.mqar(1, seed=0, power_a=0.0)
    with pytest.raises(ValueError, match="halves"):
        mqar.set_disjointness(1, seed=0, first_size=10, second_size=10, vocab_size=20)
    with pytest.raises(ValueError, match="context_length"):
        mqar.jrt_prompt({"inputs": np.zeros((2, 4)), "targets": np.zeros((2, 4))})
    uneven = {
        "inputs": np.zeros((2, 4)),
        "targets": np.zeros((2, 4)),
        "context_length": np.array([1, 2]),
    }
    with pytest.raises(ValueError, match="equal"):
        mqar.jrt_prompt(uneven)
