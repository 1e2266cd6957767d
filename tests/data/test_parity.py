"""N-parity / N-DMS streams (labels recomputed by loops) and the curricula."""

import numpy as np
import pytest

from seqjax.data import parity


def _reference(bits, n, task):
    row = [int(b) for b in bits]
    if task == "parity":
        return sum(row[len(row) - n :]) % 2
    return int(row[len(row) - n] == row[-1])


@pytest.mark.parametrize("task", ["parity", "dms"])
def test_labels_match_a_loop(task):
    rng = np.random.default_rng(0)
    ns = [2, 3, 5, 8]
    for _ in range(5):
        batch = parity.make_batch(rng, ns, 32, task=task)
        inputs, targets = batch["inputs"], batch["targets"]
        assert inputs.dtype == np.float32 and targets.dtype == np.int32
        assert inputs.shape[0] == 32 and inputs.shape[2] == 1
        assert targets.shape == (32, len(ns))
        assert set(np.unique(inputs)) <= {0.0, 1.0}
        for row, labels in zip(inputs[..., 0], targets, strict=True):
            expected = [_reference(row, n, task) for n in ns]
            assert labels.tolist() == expected


def test_length_range():
    rng = np.random.default_rng(1)
    lengths = {
        parity.make_batch(rng, [2, 4], 2, task="dms")["inputs"].shape[1]
        for _ in range(300)
    }
    assert min(lengths) == 6 and max(lengths) == 4 * 4 + 1  # N_max + 2 .. 4 N_max + 1
    fixed = parity.make_batch(rng, [3], 4, length=11)
    assert fixed["inputs"].shape == (4, 11, 1)
    half = {
        parity.make_batch(rng, [4], 1, length_factor=1.5)["inputs"].shape[1]
        for _ in range(200)
    }
    assert max(half) == 4 + 1 + 6


def test_bit_statistics():
    rng = np.random.default_rng(2)
    bits = parity.make_batch(rng, [2], 400, task="parity", length=200)["inputs"]
    row_means = bits[:, :, 0].mean(1)
    assert row_means.std() > 0.2  # p ~ U(0, 1) per sequence
    dms = parity.make_batch(rng, [2], 400, task="dms", length=200)["inputs"]
    assert abs(dms.mean() - 0.5) < 0.01 and dms[:, :, 0].mean(1).std() < 0.06


def test_same_seed_same_batch():
    a = parity.make_batch(np.random.default_rng(7), [2, 3], 8)
    b = parity.make_batch(np.random.default_rng(7), [2, 3], 8)
    c = parity.make_batch(np.random.default_rng(8), [2, 3], 8)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    np.testing.assert_array_equal(a["targets"], b["targets"])
    assert a["inputs"].shape != c["inputs"].shape or not np.array_equal(
        a["inputs"], c["inputs"]
    )


def test_single_head_curriculum():
    c = parity.Curriculum("single")
    state = c.init()
    assert c.ns(state) == (2,)
    assert c.update(state, [0.97]) == state
    state = c.update(state, [0.99])
    assert c.ns(state) == (3,)
    state = c.update(state, [0.985])
    assert c.ns(state) == (4,)


def test_multi_head_curriculum():
    c = parity.Curriculum("multi")
    state = c.init()
    state = c.update(state, [0.99])
    assert c.ns(state) == (2, 3)
    # mean above 98 % but the largest N below: no advance
    assert c.update(state, [1.0, 0.975]) == state
    # largest N above but mean below: no advance
    assert c.update(state, [0.9, 0.99]) == state
    state = c.update(state, [0.975, 1.0])  # mean 0.9875, last 1.0
    assert c.ns(state) == (2, 3, 4)
    two = parity.Curriculum("multi", init_heads=2, add_heads=3)
    assert two.ns(two.init()) == (2, 3)
    assert two.ns(two.update(two.init(), [1, 1])) == (2, 3, 4, 5, 6)


def test_sliding_curriculum_and_cap():
    c = parity.Curriculum("sliding", init_heads=3, forget_heads=2)
    state = c.update(c.init(), [1, 1, 1])
    assert c.ns(state) == (4, 5, 6)
    capped = parity.Curriculum("single", max_n=3)
    state = capped.update(capped.init(), [1.0])
    assert capped.ns(state) == (3,)
    assert capped.update(state, [1.0]) == state


def test_curriculum_drives_batches():
    c = parity.Curriculum("multi")
    state = c.init()
    rng = np.random.default_rng(0)
    for _ in range(3):
        ns = c.ns(state)
        batch = parity.make_batch(rng, ns, 4, task="dms")
        assert batch["targets"].shape == (4, len(ns))
        state = c.update(state, np.ones(len(ns)))
    assert c.ns(state) == (2, 3, 4, 5)


def test_bad_input():
    with pytest.raises(ValueError, match="task"):
        parity.make_batch(np.random.default_rng(0), [2], 1, task="xor")
    with pytest.raises(ValueError, match=">= 2"):
        parity.make_batch(np.random.default_rng(0), [1], 1, task="dms")
    with pytest.raises(ValueError, match="shorter"):
        parity.make_batch(np.random.default_rng(0), [5], 1, length=4)
    with pytest.raises(ValueError, match="kind"):
        parity.Curriculum("growing")
    with pytest.raises(ValueError, match="accuracies"):
        parity.Curriculum().update(parity.CurriculumState(0), [0.99, 0.99])
    with pytest.raises(ValueError, match="threshold"):
        parity.Curriculum(threshold=98.0)
