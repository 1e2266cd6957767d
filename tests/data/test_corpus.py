"""Document sources: the built-in corpus, local files, TFDS text, split helpers."""

import hashlib
import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqjax.data import corpus, packing


@pytest.fixture(scope="module")
def everything():
    return corpus.builtin_corpus("all")


def _score(name):
    """The documented split score, computed independently of the module."""
    digest = hashlib.sha256(b"seqjax-heldout-v1|" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def test_builtin_corpus_has_code_and_prose(everything):
    code = [n for n in everything.names if n.startswith("stdlib:")]
    prose = [n for n in everything.names if n.startswith("pydoc:")]
    assert len(code) + len(prose) == len(everything)
    assert len(code) > 300 and len(prose) > 50
    assert "stdlib:json/decoder.py" in code and "pydoc:assert" in prose
    # Test packages, installed packages and the topics module itself are left out.
    for name in code:
        parts = name[len("stdlib:") :].split("/")
        assert not {"test", "tests", "site-packages", "pydoc_data"} & set(parts), name
    assert everything.total_bytes > 5_000_000


def test_documents_are_the_real_texts(everything):
    from pydoc_data import topics

    i = everything.names.index("pydoc:assert")
    assert everything[i] == topics.topics["assert"]
    j = everything.names.index("stdlib:json/decoder.py")
    path = os.path.join(corpus.stdlib_root(), "json", "decoder.py")
    with open(path, encoding="utf-8") as f:
        assert everything[j] == f.read()
    assert everything.locations[j] == path


def test_split_is_by_name_deterministic_and_disjoint(everything):
    for kind in ("code", "prose", "both"):
        train = corpus.builtin_corpus("train", kind=kind)
        held = corpus.builtin_corpus("validation", kind=kind)
        assert len(train) and len(held)
        assert set(train.names).isdisjoint(held.names)
        union = set(train.names) | set(held.names)
        assert union == set(corpus.builtin_corpus("all", kind=kind).names)
        assert train == corpus.builtin_corpus("train", kind=kind)  # deterministic
    # The rule: validation iff the name's score is below the fraction.
    for name in everything.names:
        want = "validation" if _score(name) < 0.1 else "train"
        assert corpus.split_of(name, 0.1) == want
    # Ordered by score, and a larger fraction only moves documents to validation.
    scores = [_score(n) for n in everything.names]
    assert scores == sorted(scores)
    small = set(corpus.builtin_corpus("validation", held_out_fraction=0.05).names)
    large = set(corpus.builtin_corpus("validation", held_out_fraction=0.2).names)
    assert small < large
    fraction = len(corpus.builtin_corpus("validation", kind="code")) / len(
        corpus.builtin_corpus("all", kind="code")
    )
    assert 0.05 < fraction < 0.15


def test_max_bytes_cap(everything):
    cap = 100_000
    capped = corpus.builtin_corpus("all", max_bytes=cap)
    assert capped.total_bytes == cap
    assert capped.names == everything.names[: len(capped)]
    texts = [capped[i] for i in range(len(capped))]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert cap - 3 <= n_bytes <= cap
    assert texts[-1] == everything[len(capped) - 1][: len(texts[-1])]
    with pytest.raises(ValueError, match="max_bytes"):
        corpus.builtin_corpus(max_bytes=0)


def test_cut_at_a_character_boundary(tmp_path):
    (tmp_path / "a.txt").write_text("aé日")  # 1 + 2 + 3 bytes
    for cap, want in [(1, "a"), (2, "a"), (3, "aé"), (5, "aé"), (6, "aé日")]:
        assert corpus.text_files(tmp_path, max_bytes=cap)[0] == want


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.builtin_corpus("dev")
    with pytest.raises(ValueError, match="kind must be one of"):
        corpus.builtin_corpus("train", kind="poetry")
    with pytest.raises(ValueError, match="held_out_fraction"):
        corpus.builtin_corpus("train", held_out_fraction=1.0)


def test_text_files(tmp_path):
    (tmp_path / "sub").mkdir()
    files = {f"doc{i}.txt": f"text number {i}\n" for i in range(30)}
    files["sub/inner.md"] = "# inner\n"
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe end")

    by_dir = corpus.text_files(tmp_path)
    assert set(by_dir.names) == set(files) | {"bad.txt"}
    by_glob = corpus.text_files(str(tmp_path / "**" / "*.md"))
    assert list(by_glob.names) == ["inner.md"] and by_glob[0] == "# inner\n"
    listed = corpus.text_files([tmp_path / "doc1.txt", str(tmp_path / "doc2.*")])
    assert sorted(listed) == ["text number 1\n", "text number 2\n"]
    bad = corpus.text_files(tmp_path / "bad.txt")
    assert bad[0] == "ok \ufffd\ufffd end"

    train = corpus.text_files(tmp_path, split="train", held_out_fraction=0.3)
    held = corpus.text_files(tmp_path, split="validation", held_out_fraction=0.3)
    assert len(held) and set(train.names).isdisjoint(held.names)
    assert set(train.names) | set(held.names) == set(by_dir.names)
    for name in held.names:
        assert _score(name) < 0.3
    with pytest.raises(FileNotFoundError, match="matches no file"):
        corpus.text_files(str(tmp_path / "*.nothing"))


def test_corpus_pickles_and_packs():
    prose = corpus.builtin_corpus("validation", kind="prose")
    clone = pickle.loads(pickle.dumps(prose))
    assert clone[0] == prose[0]
    # End to end: pack, then the targets of each document decode to its text.
    rows = packing.pack_documents(prose, 256)
    assert rows["loss_mask"].sum() == sum(len(t.encode()) + 1 for t in prose)
    text = bytes(
        (rows["targets"][rows["loss_mask"] > 0] - 3).clip(0, 255).astype(np.uint8)
    )
    assert prose[0].encode() in text


def test_holdout_indices():
    train, val = corpus.holdout_indices(100, 10, seed=0)
    assert len(train) == 90 and len(val) == 10
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    np.testing.assert_array_equal(val, corpus.holdout_indices(100, 10, seed=0)[1])
    assert not np.array_equal(val, corpus.holdout_indices(100, 10, seed=1)[1])
    assert len(corpus.holdout_indices(5, 0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match="validation_size"):
        corpus.holdout_indices(10, 10, seed=0)


def test_tfds_text_with_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        docs = corpus.tfds_text("lm1b", "train")
        assert len(docs) == 6 and all(isinstance(d, str) for d in docs)
        assert len(corpus.tfds_text("lm1b", "test", max_documents=4)) == 4
        with pytest.raises(ValueError, match="feature must be one of"):
            corpus.tfds_text("lm1b", "train", feature="sentence")
        rows = packing.pack_documents(docs, 32)
        assert rows["loss_mask"].sum() == sum(len(d.encode()) + 1 for d in docs)

    texts = [b"caf\xc3\xa9", "plain str", b"bad \xff"]

    def source(builder, split, **kwargs):
        return [{"text": t} for t in texts]

    with tfds.testing.mock_data(as_data_source_fn=source):
        docs = corpus.tfds_text("lm1b", "train")
        assert list(docs) == ["café", "plain str", "bad \ufffd"]


def test_open_tfds_error_says_what_to_do():
    with pytest.raises(RuntimeError, match="tfds build"):
        corpus.open_tfds("no_such_dataset_anywhere", "train")
