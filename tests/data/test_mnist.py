"""MNIST: the idx reader on the shared t10k files, sMNIST/psMNIST views, TFDS path."""

import gzip
import hashlib
import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqjax.data import mnist

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _shared_dir():
    env = os.environ.get(mnist.ENV_VAR)
    candidate = pathlib.Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"
    if not (candidate / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"MNIST t10k idx files not found in {candidate} (set ${mnist.ENV_VAR} "
            "to a folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)"
        )
    return candidate


@pytest.fixture(scope="module")
def t10k():
    folder = _shared_dir()
    return folder, *mnist.load_idx("test", folder)


# Computed once (2026) with `hashlib.sha256(array.tobytes()).hexdigest()` on the
# arrays this reader returns for the shared t10k files (uint8, C order); the test
# below also checks the arrays against a second, independent decoding.
IMAGES_SHA256 = "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"
LABELS_SHA256 = "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"


def test_t10k_known_facts(t10k):
    folder, images, labels = t10k
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    # Published facts about the MNIST test set.
    assert np.bincount(labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert images.min() == 0 and images.max() == 255
    assert abs(images.mean() / 255 - 0.1325) < 5e-4
    assert hashlib.sha256(images.tobytes()).hexdigest() == IMAGES_SHA256
    assert hashlib.sha256(labels.tobytes()).hexdigest() == LABELS_SHA256
    # Independent decoding: fixed 16- and 8-byte headers of the MNIST files.
    raw = gzip.open(folder / "t10k-images-idx3-ubyte.gz").read()
    np.testing.assert_array_equal(
        images, np.frombuffer(raw[16:], np.uint8).reshape(10000, 28, 28)
    )
    raw = gzip.open(folder / "t10k-labels-idx1-ubyte.gz").read()
    np.testing.assert_array_equal(labels, np.frombuffer(raw[8:], np.uint8))


def test_smnist_and_psmnist_from_idx(t10k):
    folder, images, labels = t10k
    flat = images.reshape(10000, 784)
    seq = mnist.smnist("test", source="idx", directory=folder)
    assert len(seq) == 10000
    r = seq[3]
    assert r["inputs"].dtype == np.int32 and r["inputs"].shape == (784,)
    np.testing.assert_array_equal(r["inputs"], flat[3])
    assert int(r["targets"]) == labels[3] and int(r["lengths"]) == 784
    perm = mnist.pixel_permutation(5)
    ps = mnist.smnist("test", source="idx", directory=folder, permuted=True,
                      permutation_seed=5)  # fmt: skip
    np.testing.assert_array_equal(ps[3]["inputs"], flat[3][perm])
    np.testing.assert_array_equal(
        mnist.to_sequences(images[:5], perm), flat[:5][:, perm]
    )


def test_env_var_points_at_the_folder(t10k, monkeypatch):
    folder = t10k[0]
    monkeypatch.setenv(mnist.ENV_VAR, str(folder))
    assert len(mnist.load_idx("test")[0]) == 10000
    monkeypatch.delenv(mnist.ENV_VAR)
    with pytest.raises(ValueError, match=mnist.ENV_VAR):
        mnist.load_idx("test")


def test_permutation_fixed_by_seed_and_a_true_permutation():
    p = mnist.pixel_permutation(0)
    assert p.shape == (784,)
    np.testing.assert_array_equal(np.sort(p), np.arange(784))
    np.testing.assert_array_equal(p, mnist.pixel_permutation(0))
    assert not np.array_equal(p, mnist.pixel_permutation(1))
    assert not np.array_equal(p, np.arange(784))
    with pytest.raises(ValueError, match="permutation of range"):
        mnist.to_sequences(np.zeros((1, 28, 28)), np.zeros(784, int))


def _write_idx(path, array, code, gz):
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_formats_and_errors(tmp_path, gz):
    rng = np.random.default_rng(0)
    cases = [
        (rng.integers(0, 256, (4, 3, 2)).astype(np.uint8), 0x08),
        (rng.integers(-9, 9, (5,)).astype(np.int16), 0x0B),
        (rng.standard_normal((2, 3)).astype(np.float32), 0x0D),
    ]
    for i, (array, code) in enumerate(cases):
        path = tmp_path / f"a{i}.idx{'.gz' if gz else ''}"
        _write_idx(path, array, code, gz)
        got = mnist.read_idx(path)
        assert got.dtype == array.dtype and got.dtype.isnative
        np.testing.assert_array_equal(got, array)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="needs 13 bytes"):
        mnist.read_idx(bad)
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        mnist.read_idx(bad)


def _fake_train_files(folder, n):
    """Image i is filled with the value i, so an image tells its index."""
    images = np.repeat(np.arange(n, dtype=np.uint8), 784).reshape(n, 28, 28)
    labels = (np.arange(n) % 10).astype(np.uint8)
    # Uncompressed and with the dotted names some mirrors use.
    _write_idx(folder / "train-images.idx3-ubyte", images, 0x08, gz=False)
    _write_idx(folder / "train-labels.idx1-ubyte", labels, 0x08, gz=False)


def test_idx_train_validation_carve(tmp_path):
    _fake_train_files(tmp_path, 50)
    kw = dict(source="idx", directory=tmp_path, validation_size=10, seed=3)
    train = mnist.smnist("train", **kw)
    val = mnist.smnist("validation", **kw)
    ids = lambda ds: {int(ds[i]["inputs"][0]) for i in range(len(ds))}  # noqa: E731
    assert len(train) == 40 and len(val) == 10
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(50))
    assert ids(val) == ids(mnist.smnist("validation", **kw))
    assert ids(val) != ids(mnist.smnist("validation", **{**kw, "seed": 4}))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        mnist.smnist("test", source="idx", directory=tmp_path)
    with pytest.raises(ValueError, match="source must be"):
        mnist.smnist("test", source="http")
    with pytest.raises(ValueError, match="split must be"):
        mnist.smnist("dev", source="idx", directory=tmp_path)


def test_tfds_path_with_mock_data():
    with tfds.testing.mock_data(num_examples=30):
        train = mnist.smnist("train", validation_size=6)
        val = mnist.smnist("validation", validation_size=6)
        test = mnist.smnist("test", permuted=True)
        assert (len(train), len(val), len(test)) == (24, 6, 30)
        r = train[0]
        assert r["inputs"].shape == (784,) and r["inputs"].dtype == np.int32
        assert 0 <= int(r["targets"]) < 10


def test_same_permutation_for_every_split():
    images = {
        "train": np.arange(8 * 784).reshape(8, 28, 28, 1) % 251,
        "test": (np.arange(4 * 784).reshape(4, 28, 28, 1) * 7) % 253,
    }

    def source(builder, split, **kwargs):
        return [
            {"image": im.astype(np.uint8), "label": np.int64(i % 10)}
            for i, im in enumerate(images[split])
        ]

    perm = mnist.pixel_permutation(11)
    with tfds.testing.mock_data(as_data_source_fn=source):
        for split, size in (("train", 6), ("validation", 2), ("test", 4)):
            ds = mnist.smnist(split, permuted=True, permutation_seed=11,
                              validation_size=2)  # fmt: skip
            assert len(ds) == size
            pool = images["test" if split == "test" else "train"]
            flat = pool.reshape(len(pool), 784).astype(np.uint8)
            for i in range(len(ds)):
                # Every record is some image of its pool, permuted by `perm`.
                row = ds[i]["inputs"]
                assert any(np.array_equal(row, f[perm]) for f in flat)
