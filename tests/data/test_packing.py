"""Packing: against a plain-Python reference, its invariants, and the grain pipeline."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from seqjax.data import packing, tokenizer

PAD = 0


def reference_pack(docs, seq_len, split_documents):
    """Row-by-row Python packing, written from the module docstring."""
    pairs = [
        [(d, s[j], s[j + 1]) for j in range(len(s) - 1)]
        for d, s in enumerate(docs)
        if len(s) >= 2
    ]
    rows = []
    if split_documents:
        flat = [p for ps in pairs for p in ps]
        rows = [flat[i : i + seq_len] for i in range(0, len(flat), seq_len)]
    else:
        current = []
        for ps in pairs:
            if current and len(ps) <= seq_len - len(current):
                current += ps
                continue
            for i in range(0, len(ps), seq_len):
                if current:
                    rows.append(current)
                current = list(ps[i : i + seq_len])
        if current:
            rows.append(current)
    out = {k: [] for k in packing.FEATURES}
    for row in rows:
        inputs, targets, seg, pos = [], [], [], []
        for c, (d, x, y) in enumerate(row):
            if c == 0 or d != row[c - 1][0]:
                seg_id = (seg[-1] if seg else 0) + 1
                p = 0
            else:
                p = pos[-1] + 1
            inputs.append(x)
            targets.append(y)
            seg.append(seg_id)
            pos.append(p)
        fill = seq_len - len(row)
        out["inputs"].append(inputs + [PAD] * fill)
        out["targets"].append(targets + [PAD] * fill)
        out["segment_ids"].append(seg + [0] * fill)
        out["positions"].append(pos + [0] * fill)
        out["loss_mask"].append([1.0] * len(row) + [0.0] * fill)
    return {
        k: np.asarray(v, np.float32 if k == "loss_mask" else np.int32).reshape(
            -1, seq_len
        )
        for k, v in out.items()
    }


docs_strategy = st.lists(
    st.lists(st.integers(3, 300), min_size=0, max_size=20), min_size=0, max_size=8
)


@hypothesis.given(docs_strategy, st.integers(1, 9), st.booleans())
def test_matches_reference(docs, seq_len, split_documents):
    docs = [np.asarray(d, np.int32) for d in docs]
    got = packing.pack_documents(docs, seq_len, split_documents=split_documents)
    want = reference_pack([d.tolist() for d in docs], seq_len, split_documents)
    for key in packing.FEATURES:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _pieces(rows):
    """Yields (row, segment, inputs, targets, positions) for every segment."""
    for r in range(len(rows["inputs"])):
        for s in np.unique(rows["segment_ids"][r]):
            if s == 0:
                continue
            m = rows["segment_ids"][r] == s
            yield (
                r,
                s,
                rows["inputs"][r][m],
                rows["targets"][r][m],
                rows["positions"][r][m],
            )


@pytest.mark.parametrize("split_documents", [True, False])
@pytest.mark.parametrize("seq_len", [1, 5, 16, 64])
def test_invariants(split_documents, seq_len):
    rng = np.random.default_rng(seq_len)
    texts = ["", "x"] + [
        "".join(rng.choice(list("abcdé \n"), size=rng.integers(0, 40)))
        for _ in range(30)
    ]
    tok = tokenizer.ByteTokenizer()
    docs = [tok.encode(t, add_bos=True, add_eos=True) for t in texts]
    rows = packing.pack_documents(texts, seq_len, split_documents=split_documents)
    n_rows = len(rows["inputs"])
    assert all(v.shape == (n_rows, seq_len) for v in rows.values())

    # No prediction lost or duplicated: one per pair (s_j, s_{j+1}).
    assert rows["loss_mask"].sum() == sum(len(d) - 1 for d in docs)
    # Masks: a loss exactly where there is a segment; padding is pad and 0.
    np.testing.assert_array_equal(rows["loss_mask"] > 0, rows["segment_ids"] > 0)
    pad = rows["segment_ids"] == 0
    assert (rows["inputs"][pad] == PAD).all() and (rows["targets"][pad] == PAD).all()
    assert (rows["positions"][pad] == 0).all()
    # Padding only at the end of a row; in the stream layout only in the last row.
    for r in range(n_rows):
        seg = rows["segment_ids"][r]
        k = int((seg > 0).sum())
        assert (seg[:k] > 0).all() and (seg[k:] == 0).all()
        # Segment ids are 1, 2, ... in order, positions restart at 0 and count up.
        assert seg[0] == 1
        assert set(np.diff(seg[:k]).tolist()) <= {0, 1}
    if split_documents:
        assert (rows["segment_ids"][:-1] > 0).all()
    # Within a segment, each target is the next input (the next token).
    same = (rows["segment_ids"][:, 1:] == rows["segment_ids"][:, :-1]) & (
        rows["segment_ids"][:, 1:] > 0
    )
    np.testing.assert_array_equal(
        rows["targets"][:, :-1][same], rows["inputs"][:, 1:][same]
    )
    # Reading the pieces in order rebuilds every document exactly.
    kept = [d for d in docs if len(d) >= 2]
    rebuilt_inputs, rebuilt_targets = [], []
    for _, _, x, y, p in _pieces(rows):
        np.testing.assert_array_equal(p, np.arange(len(p)))
        rebuilt_inputs.append(x)
        rebuilt_targets.append(y)
    np.testing.assert_array_equal(
        np.concatenate(rebuilt_inputs), np.concatenate([d[:-1] for d in kept])
    )
    np.testing.assert_array_equal(
        np.concatenate(rebuilt_targets), np.concatenate([d[1:] for d in kept])
    )
    # Targets never cross a boundary: no target is a BOS.
    assert not (rows["targets"][rows["segment_ids"] > 0] == tokenizer.BOS_ID).any()


def test_next_fit_splits_only_long_documents():
    docs = [np.arange(3, 3 + n) for n in (4, 3, 9, 2, 6, 12)]  # pairs: 3 2 8 1 5 11
    rows = packing.pack_documents(docs, 6, split_documents=False)
    # Pair counts 3+2 share a row; 8 > 6 is cut as 6 + 2, then 1 joins the 2;
    # 5 does not fit after 2+1=3 pairs, so it starts a row; 11 is cut as 6 + 5.
    np.testing.assert_array_equal(
        rows["segment_ids"],
        [
            [1, 1, 1, 2, 2, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 2, 0, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 0],
        ],
    )


def test_docstring_example_and_text_documents():
    rows = packing.pack_documents([[1, 5, 6, 2], [1, 7, 2]], seq_len=4)
    assert rows["inputs"].tolist() == [[1, 5, 6, 1], [7, 0, 0, 0]]
    assert rows["targets"].tolist() == [[5, 6, 2, 7], [2, 0, 0, 0]]
    rows = packing.pack_documents(["ab"], seq_len=4, add_bos=False, add_eos=False)
    assert rows["inputs"].tolist() == [[100, 0, 0, 0]]
    assert rows["targets"].tolist() == [[101, 0, 0, 0]]
    assert packing.pack_documents([], 4)["inputs"].shape == (0, 4)


def test_packed_source_equals_pack_documents():
    docs = ["first document", "second", "", "a third, longer document " * 3]
    for split_documents in (True, False):
        rows = packing.pack_documents(docs, 7, split_documents=split_documents)
        src = packing.PackedSource(docs, 7, split_documents=split_documents)
        assert len(src) == len(rows["inputs"])
        for i in range(len(src)):
            for key in packing.FEATURES:
                np.testing.assert_array_equal(src[i][key], rows[key][i])
        np.testing.assert_array_equal(src[-1]["inputs"], rows["inputs"][-1])
        with pytest.raises(IndexError):
            src[len(src)]


def test_errors():
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        packing.pack_documents(["a"], 0)
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        packing.pack_documents(["a"], 2.5)
    with pytest.raises(TypeError, match="single str"):
        packing.pack_documents("not a list", 4)
    with pytest.raises(ValueError, match=r"documents\[1\] must be text or a 1-D"):
        packing.pack_documents([[3, 4], np.zeros((2, 2), int)], 4)
    with pytest.raises(TypeError, match=r"documents\[0\] must hold integer"):
        packing.pack_documents([np.array([1.0, 2.0])], 4)
    with pytest.raises(ValueError, match="batch_size"):
        packing.lm_dataset(["abc"], 4, 0)
    with pytest.raises(ValueError, match="process_index"):
        packing.lm_dataset(["abc"], 4, 1, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="fewer than process_count"):
        packing.lm_dataset(["abc"], 64, 1, process_count=2)


def _row_keys(ds):
    """Identifies each row of a batched dataset by its bytes."""
    return [
        batch["inputs"][i].tobytes() + batch["targets"][i].tobytes()
        for batch in ds
        for i in range(len(batch["inputs"]))
    ]


def test_lm_dataset_sharding_shuffle_and_resume():
    # Every token is distinct, so every packed row is distinct.
    lengths = [3 + 7 * (i % 4) for i in range(40)]
    starts = np.cumsum([3] + lengths[:-1])
    docs = [np.arange(a, a + n) for a, n in zip(starts, lengths, strict=True)]
    all_rows = packing.PackedSource(docs, 8)
    n = len(all_rows)
    everything = {
        all_rows[i]["inputs"].tobytes() + all_rows[i]["targets"].tobytes()
        for i in range(n)
    }
    shards = [
        packing.lm_dataset(
            docs, 8, 2, seed=3, num_epochs=1, process_index=p, process_count=3
        )
        for p in range(3)
    ]
    keys = [_row_keys(s) for s in shards]
    # Equal shares, disjoint, all drawn from the packed rows.
    assert len({len(k) for k in keys}) == 1 and len(keys[0]) >= (n // 3) - 1
    union = set().union(*map(set, keys))
    assert len(union) == sum(len(k) for k in keys) and union <= everything
    assert shards[0][0]["inputs"].shape == (2, 8)

    # Same seed -> same order; another seed -> another order; epochs differ.
    again = packing.lm_dataset(docs, 8, 1, seed=3, num_epochs=1)
    other = packing.lm_dataset(docs, 8, 1, seed=4, num_epochs=1)
    two_epochs = _row_keys(packing.lm_dataset(docs, 8, 1, seed=3, num_epochs=2))
    first = _row_keys(again)
    assert two_epochs[: len(first)] == first
    assert two_epochs[len(first) :] != first
    assert sorted(two_epochs[len(first) :]) == sorted(first)
    assert _row_keys(again) != _row_keys(other)
    assert sorted(_row_keys(again)) == sorted(_row_keys(other))
    unshuffled = packing.lm_dataset(docs, 8, 1, shuffle=False, num_epochs=1)
    np.testing.assert_array_equal(unshuffled[0]["inputs"][0], all_rows[0]["inputs"])

    # Exact resume from the iterator state.
    ds = packing.lm_dataset(docs, 8, 4, seed=0)
    it = iter(ds.to_iter_dataset())
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    resumed = iter(ds.to_iter_dataset())
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in packing.FEATURES:
            np.testing.assert_array_equal(got[key], want[key])
