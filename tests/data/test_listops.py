"""ListOps: labels against an independent evaluator, LRA's limits, seeds, splits."""

import statistics

import numpy as np
import pytest

from seqjax.data import listops

SMALL = dict(min_length=10, max_length=200)


def _evaluate(tokens, max_depth, max_args):
    """Independent evaluator: parses the bracketed prefix expression and evaluates it.

    Also checks the structure: balanced brackets, argument counts and depth.
    """
    ops = {
        "[MIN": min,
        "[MAX": max,
        "[MED": lambda xs: int(statistics.median(xs)),
        "[SM": lambda xs: sum(xs) % 10,
    }
    stack = []  # frames: [operator, args]
    deepest = 0
    result = None
    for i, token in enumerate(tokens):
        assert result is None, f"tokens after the end of the expression at {i}"
        if token in ops:
            stack.append([token, []])
            deepest = max(deepest, len(stack))
        elif token == "]":
            op, args = stack.pop()
            assert 2 <= len(args) <= max_args, f"{op} has {len(args)} arguments"
            value = ops[op](args)
            if stack:
                stack[-1][1].append(value)
            else:
                result = value
        else:
            digit = int(token)
            assert 0 <= digit <= 9 and stack, "a digit outside any operator"
            stack[-1][1].append(digit)
            deepest = max(deepest, len(stack) + 1)  # a digit is one level below
    assert result is not None and not stack, "unbalanced brackets"
    assert deepest <= max_depth
    return result


def _check(data, max_depth, max_args, min_length, max_length):
    inputs, lengths, targets = data["inputs"], data["lengths"], data["targets"]
    assert inputs.dtype == lengths.dtype == targets.dtype == np.int32
    assert inputs.shape == (len(targets), max_length)
    assert np.all((lengths > min_length) & (lengths < max_length))
    for row, length, target in zip(inputs, lengths, targets, strict=True):
        assert np.all(row[length:] == listops.PAD_ID)
        assert np.all(row[:length] != listops.PAD_ID)
        tokens = listops.decode(row).split()
        assert len(tokens) == length
        assert _evaluate(tokens, max_depth, max_args) == target


def test_labels_match_an_independent_evaluator():
    data = listops.generate(300, seed=0, **SMALL)
    _check(data, 10, 10, **SMALL)
    assert len(np.unique(data["targets"])) == 10


def test_lra_lengths_and_other_limits():
    data = listops.generate(12, seed=1)  # LRA defaults: 500 < length < 2000
    _check(data, 10, 10, 500, 2000)
    shallow = listops.generate(50, seed=2, max_depth=4, max_args=3, **SMALL)
    _check(shallow, 4, 3, **SMALL)


def test_same_seed_same_data_and_other_seed_other_data():
    a = listops.generate(20, seed=7, **SMALL)
    b = listops.generate(20, seed=7, **SMALL)
    c = listops.generate(20, seed=8, **SMALL)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["inputs"], c["inputs"])


def test_examples_are_distinct_and_exclusions_hold():
    data = listops.generate(200, seed=0, min_length=4, max_length=12)
    keys = [
        r[:n].tobytes() for r, n in zip(data["inputs"], data["lengths"], strict=True)
    ]
    assert len(set(keys)) == len(keys)
    more = listops.generate(
        200, seed=0, stream=1, min_length=4, max_length=12, exclude=keys
    )
    others = {
        r[:n].tobytes() for r, n in zip(more["inputs"], more["lengths"], strict=True)
    }
    assert not others & set(keys)


def test_splits_are_disjoint_and_held_out_splits_fixed():
    kwargs = dict(seed=3, min_length=4, max_length=14)
    splits = listops.make_splits(sizes=(60, 20, 20), **kwargs)
    assert [len(splits[s]["targets"]) for s in listops.SPLITS] == [60, 20, 20]
    seen = set()
    for split in listops.SPLITS:
        data = splits[split]
        rows = {
            r[:n].tobytes()
            for r, n in zip(data["inputs"], data["lengths"], strict=True)
        }
        assert not rows & seen
        seen |= rows
    bigger = listops.make_splits(sizes=(90, 20, 20), **kwargs)
    np.testing.assert_array_equal(bigger["test"]["inputs"], splits["test"]["inputs"])
    np.testing.assert_array_equal(
        bigger["validation"]["targets"], splits["validation"]["targets"]
    )


def test_load_splits_uses_the_cache(tmp_path, monkeypatch):
    kwargs = dict(seed=0, sizes=(6, 2, 2), min_length=10, max_length=60)
    first = listops.load_splits(cache_dir=tmp_path, **kwargs)
    assert len(list(tmp_path.iterdir())) == 1

    def fail(**_):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(listops, "make_splits", fail)
    second = listops.load_splits(cache_dir=tmp_path, **kwargs)
    for split in listops.SPLITS:
        for key in ("inputs", "lengths", "targets"):
            np.testing.assert_array_equal(first[split][key], second[split][key])


def test_vocabulary():
    assert listops.VOCAB_SIZE == 16 and listops.VOCAB[listops.PAD_ID] == "<pad>"
    assert listops.VOCAB[listops.CLOSE_ID] == "]"
    assert [listops.VOCAB[i] for i in range(11, 15)] == ["[MIN", "[MAX", "[MED", "[SM"]
    assert listops.decode([12, 3, 10, 15, 0, 0]) == "[MAX 2 9 ]"
    with pytest.raises(ValueError, match="token ids"):
        listops.decode([16])


def test_bad_settings():
    with pytest.raises(ValueError, match="min_length"):
        listops.generate(1, seed=0, min_length=10, max_length=11)
    with pytest.raises(ValueError, match="max_args"):
        listops.generate(1, seed=0, max_args=1)
    with pytest.raises(TypeError, match="num_examples"):
        listops.generate(1.5, seed=0)
    with pytest.raises(ValueError, match="sizes"):
        listops.make_splits(sizes=(1, 2))
