"""ArraySource (grain's random-access protocol) and the on-disk data cache."""

import json
import os
import pickle
import threading

import numpy as np
import pytest

from seqjax.data import sources


def _arrays(n=5):
    return {
        "inputs": np.arange(n * 3, dtype=np.int32).reshape(n, 3),
        "targets": np.arange(n, dtype=np.int32) * 10,
    }


# ---------------------------------------------------------------- ArraySource


def test_array_source_records():
    src = sources.ArraySource(_arrays())
    assert len(src) == 5
    record = src[2]
    assert set(record) == {"inputs", "targets"}
    np.testing.assert_array_equal(record["inputs"], [6, 7, 8])
    assert int(record["targets"]) == 20
    np.testing.assert_array_equal(src[-1]["inputs"], [12, 13, 14])
    assert int(src[np.int64(1)]["targets"]) == 10


def test_array_source_bad_input():
    with pytest.raises(ValueError, match="leading"):
        sources.ArraySource({"a": np.zeros((3, 2)), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="at least one field"):
        sources.ArraySource({})
    with pytest.raises(ValueError, match="0-d"):
        sources.ArraySource({"a": np.float32(1.0)})
    with pytest.raises(TypeError, match="mapping"):
        sources.ArraySource([np.zeros(3)])
    src = sources.ArraySource(_arrays())
    with pytest.raises(IndexError, match="out of range"):
        src[5]
    with pytest.raises(TypeError, match="int"):
        src[1.0]


def test_array_source_is_a_grain_source():
    grain = pytest.importorskip("grain")
    src = sources.ArraySource(_arrays())
    assert isinstance(src, grain.sources.RandomAccessDataSource)
    dataset = grain.MapDataset.source(src)
    assert len(dataset) == 5
    np.testing.assert_array_equal(dataset[3]["inputs"], [9, 10, 11])
    assert "ArraySource(len=5" in repr(src)
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[4]["targets"], src[4]["targets"])


# ---------------------------------------------------------------------- cache


class _Builder:
    def __init__(self, n=5):
        self.calls = 0
        self.n = n

    def __call__(self):
        self.calls += 1
        return _arrays(self.n)


def _assert_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == b[key].dtype


def test_cache_round_trip(tmp_path):
    build = _Builder()
    first = sources.cached("toy", {"n": 5, "seed": 0}, build, tmp_path)
    second = sources.cached("toy", {"seed": 0, "n": 5}, build, tmp_path)
    assert build.calls == 1  # key order does not matter; the second call reads
    _assert_equal(first, _arrays())
    _assert_equal(second, _arrays())
    files = os.listdir(tmp_path)
    assert len(files) == 1
    assert (
        files[0] == f"toy-{sources.settings_checksum('toy', {'n': 5, 'seed': 0})}.npz"
    )


def test_checksum_in_name_changes_with_settings(tmp_path):
    a = sources.cache_path("toy", {"seed": 0}, tmp_path)
    b = sources.cache_path("toy", {"seed": 1}, tmp_path)
    c = sources.cache_path("other", {"seed": 0}, tmp_path)
    d = sources.cache_path("toy", {"seed": 0, "sizes": [1, 2]}, tmp_path)
    assert len({a, b, c, d}) == 4
    checksum = sources.settings_checksum("toy", {"seed": 0})
    assert a.name == f"toy-{checksum}.npz" and len(checksum) == 16
    assert sources.cache_path("toy", {"seed": 0}, tmp_path) == a


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9])
def test_truncated_cache_file_is_rebuilt(tmp_path, keep):
    build = _Builder()
    settings = {"seed": 3}
    sources.cached("toy", settings, build, tmp_path)
    path = sources.cache_path("toy", settings, tmp_path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:cut])
    with pytest.warns(RuntimeWarning, match="regenerating"):
        again = sources.cached("toy", settings, build, tmp_path)
    assert build.calls == 2
    _assert_equal(again, _arrays())
    _assert_equal(sources.cached("toy", settings, build, tmp_path), _arrays())
    assert build.calls == 2  # the rebuilt file is good


def test_cache_file_of_other_settings_is_rebuilt(tmp_path):
    # A valid npz under the right name but written for other settings (e.g. by an
    # older format) is not trusted.
    path = sources.cache_path("toy", {"seed": 0}, tmp_path)
    np.savez(path, inputs=np.zeros(2))
    build = _Builder()
    with pytest.warns(RuntimeWarning):
        out = sources.cached("toy", {"seed": 0}, build, tmp_path)
    assert build.calls == 1
    _assert_equal(out, _arrays())


def test_crash_during_write_leaves_no_file(tmp_path, monkeypatch):
    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        sources.cached("toy", {"seed": 0}, _Builder(), tmp_path)
    assert os.listdir(tmp_path) == []  # neither a final nor a temporary file


def test_concurrent_writers(tmp_path):
    barrier = threading.Barrier(6)
    results, errors = [], []

    def build():
        barrier.wait(timeout=10)  # every thread builds, then all write at once
        return _arrays(200)

    def worker():
        try:
            results.append(sources.cached("toy", {"seed": 0}, build, tmp_path))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 6
    for result in results:
        _assert_equal(result, _arrays(200))
    assert os.listdir(tmp_path) == [sources.cache_path("toy", {"seed": 0}).name]
    later = _Builder()
    _assert_equal(sources.cached("toy", {"seed": 0}, later, tmp_path), _arrays(200))
    assert later.calls == 0


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQJAX_CACHE", str(tmp_path / "c"))
    assert sources.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SEQJAX_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.default_cache_dir() == tmp_path / ".cache" / "seqjax"
    monkeypatch.setenv("SEQJAX_CACHE", str(tmp_path / "env"))
    sources.cached("toy", {"a": 1}, _Builder(), None)
    assert len(os.listdir(tmp_path / "env")) == 1


def test_cache_bad_input(tmp_path):
    with pytest.raises(ValueError, match="name"):
        sources.cached("../escape", {}, _Builder(), tmp_path)
    with pytest.raises(TypeError, match="JSON"):
        sources.cached("toy", {"f": object()}, _Builder(), tmp_path)
    with pytest.raises(TypeError, match="object array"):
        sources.cached("toy", {}, lambda: {"x": np.array([{}, 1])}, tmp_path)
    with pytest.raises(TypeError, match="dict"):
        sources.cached("toy", {}, lambda: [np.zeros(2)], tmp_path)


def test_settings_are_canonical_json():
    # The checksum is of canonical JSON: tuples and lists agree, key order does not
    # matter, and the format version is part of it.
    a = sources.settings_checksum("x", {"b": (1, 2), "a": 1.5})
    b = sources.settings_checksum("x", json.loads('{"a": 1.5, "b": [1, 2]}'))
    assert a == b
