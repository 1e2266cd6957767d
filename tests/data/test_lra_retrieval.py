"""LRA Retrieval: parsing the release's TSV layout, streaming, random access."""

import io

import numpy as np
import pytest

from seqjax.data import lra_retrieval


def _line(label, text1, text2, id1="P1", id2="P2"):
    """One line as the LRA release writes it: texts as Python bytes literals."""
    fields = [label, id1, id2, repr(text1), repr(text2)]
    return ("\t".join(fields) + "\n").encode("ascii")


def _pairs(n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t1 = f"Paper {i}\nAbstract: caf\u00e9 'quoted'\t".encode() * (1 + i % 3)
        t2 = bytes(rng.integers(32, 127, size=rng.integers(0, 60)).tolist())
        out.append((("1.0", "0.0", "1", "0")[i % 4], t1, t2))
    return out


def _write(path, pairs, extra=b""):
    with open(path, "wb") as f:
        for label, t1, t2 in pairs:
            f.write(_line(label, t1, t2))
        f.write(extra)
    return path


def _expect(field: bytes, max_length):
    ids = np.zeros(max_length, np.int32)
    kept = np.frombuffer(field, np.uint8)[:max_length].astype(np.int32) + 3
    ids[: len(kept)] = kept
    return ids, len(kept)


@pytest.mark.parametrize("text_format", ["raw", "decoded"])
def test_records(tmp_path, text_format):
    pairs = _pairs(12)
    path = _write(tmp_path / "p.tsv", pairs)
    records = list(
        lra_retrieval.iter_aan_pairs(path, max_length=40, text_format=text_format)
    )
    assert len(records) == 12
    for (label, t1, t2), r in zip(pairs, records, strict=True):
        for k, text in ((1, t1), (2, t2)):
            # raw: the characters of the bytes literal, as LRA fed them.
            field = repr(text).encode() if text_format == "raw" else text
            ids, n = _expect(field, 40)
            np.testing.assert_array_equal(r[f"inputs{k}"], ids)
            assert int(r[f"lengths{k}"]) == n and r[f"inputs{k}"].dtype == np.int32
        assert int(r["targets"]) == int(float(label))
    assert records[0]["inputs1"][:2].tolist() == (
        [ord("b") + 3, ord('"') + 3] if text_format == "raw" else [83, 100]
    )


def test_default_length_is_4000(tmp_path):
    path = _write(tmp_path / "p.tsv", [("1", b"a" * 5000, b"b")])
    (r,) = lra_retrieval.iter_aan_pairs(path)
    assert r["inputs1"].shape == (4000,) and int(r["lengths1"]) == 4000
    assert int(r["lengths2"]) == 4  # b'b'


def test_malformed_lines_name_the_line(tmp_path):
    good = _line("1", b"x", b"y")
    cases = [
        (b"1\tP1\tP2\tb'x'\n", "expected 5 tab-separated fields"),
        (b"2\tP1\tP2\tb'x'\tb'y'\n", "label must be 0 or 1"),
        (b"yes\tP1\tP2\tb'x'\tb'y'\n", "label must be 0 or 1"),
    ]
    for bad, message in cases:
        path = tmp_path / "bad.tsv"
        path.write_bytes(good + b"\n" + bad)
        with pytest.raises(ValueError, match=f"bad.tsv:3: {message}"):
            list(lra_retrieval.iter_aan_pairs(path))
    path.write_bytes(b"1\tP1\tP2\tb'x\tb'y'\n")
    with pytest.raises(ValueError, match="not a valid bytes literal"):
        list(lra_retrieval.iter_aan_pairs(path, text_format="decoded"))
    with pytest.raises(ValueError, match="text_format"):
        list(lra_retrieval.iter_aan_pairs(path, text_format="latin1"))


class CountingReader(io.RawIOBase):
    """A raw file that counts the bytes handed out."""

    def __init__(self, data: bytes):
        self.data, self.position, self.served = data, 0, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self.data[self.position : self.position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        self.served += len(chunk)
        return len(chunk)


def test_streams_without_reading_the_whole_file(tmp_path):
    pairs = _pairs(2000)
    path = _write(tmp_path / "big.tsv", pairs, extra=b"not\ta\tvalid line\n")
    data = path.read_bytes()
    assert len(data) > 250_000
    raw = CountingReader(data)
    records = lra_retrieval.iter_aan_pairs(
        io.BufferedReader(raw, buffer_size=8192), max_length=16
    )
    first = next(records)
    assert int(first["targets"]) == 1
    assert raw.served <= 16384  # one or two buffers, not the file
    for _ in range(1000):
        next(records)
    assert raw.served < len(data) * 0.6
    # The malformed last line is only reached at the end: records came lazily.
    with pytest.raises(ValueError, match="4 tab-separated|5 tab-separated"):
        for _ in records:
            pass
    assert raw.served == len(data)


def test_random_access_matches_streaming_and_caches_offsets(tmp_path, monkeypatch):
    pairs = _pairs(30)
    path = _write(tmp_path / "new_aan_pairs.eval.tsv", pairs, extra=b"\n\n")
    streamed = list(lra_retrieval.iter_aan_pairs(path, max_length=32))
    source = lra_retrieval.AanPairs(path, max_length=32, cache_dir=tmp_path / "c")
    assert len(source) == 30  # blank lines skipped
    for i in (0, 7, 29, -1):
        for key, value in streamed[i].items():
            np.testing.assert_array_equal(source[i][key], value)
    with pytest.raises(IndexError):
        source[30]
    assert len(list((tmp_path / "c").glob("*.offsets.npy"))) == 1

    def no_scan(path):
        raise AssertionError("the cached offsets should be used")

    monkeypatch.setattr(lra_retrieval, "line_offsets", no_scan)
    again = lra_retrieval.AanPairs(path, max_length=32, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.offsets, source.offsets)


def test_lra_retrieval_splits(tmp_path):
    for split, n in (("train", 9), ("validation", 4), ("test", 5)):
        _write(tmp_path / lra_retrieval.FILES[split], _pairs(n))
    for split, n in (("train", 9), ("validation", 4), ("test", 5)):
        ds = lra_retrieval.lra_retrieval(tmp_path, split, max_length=8)
        assert len(ds) == n and ds[0]["inputs2"].shape == (8,)
    shuffled = lra_retrieval.lra_retrieval(tmp_path, "train", max_length=8).shuffle(
        seed=0
    )
    assert sorted(int(shuffled[i]["lengths1"]) for i in range(9)) == sorted(
        int(r["lengths1"])
        for r in lra_retrieval.iter_aan_pairs(
            tmp_path / lra_retrieval.FILES["train"], max_length=8
        )
    )
    with pytest.raises(ValueError, match="split must be one of"):
        lra_retrieval.lra_retrieval(tmp_path, "eval")
    with pytest.raises(FileNotFoundError, match="new_aan_pairs.test.tsv"):
        lra_retrieval.lra_retrieval(tmp_path / "missing", "test")
