"""Continual-learning task streams on the offline t10k MNIST files and mocked TFDS."""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqjax import config as config_lib
from seqjax.cl import streams
from seqjax.data import corpus, image_streams, mnist, parity

MNIST_DIR = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
MNIST_DIR = MNIST_DIR / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"no offline MNIST t10k files in {MNIST_DIR}",
)


def _config(stream, *, options=None, train=64, test=32, **cl):
    config = config_lib.Config()
    config.cl.stream = stream
    config.cl.train_examples, config.cl.eval_examples = train, test
    for key, value in cl.items():
        setattr(config.cl, key, value)
    if options is None:
        options = {"mnist_dir": str(MNIST_DIR), "splits": "t10k"}
    config.data.options = options
    return config


def _uint8(inputs):
    """Back from [0, 1] floats to the uint8 pixels they were made of."""
    return np.rint(np.asarray(inputs) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def t10k():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no offline MNIST t10k files in {MNIST_DIR}")
    return mnist.load_idx("test", MNIST_DIR)


def _find(images, image):
    """The positions of ``image`` among ``images``."""
    return np.flatnonzero((images == image).all(axis=(1, 2)))


# --- permuted MNIST -----------------------------------------------------------------


@needs_mnist
def test_permuted_tasks_are_one_image_set_under_different_permutations(t10k):
    images, labels = t10k
    stream = streams.make_stream(_config("permuted_mnist", num_tasks=3))
    assert (stream.name, stream.setting) == ("permuted_mnist", "domain")
    assert (stream.num_classes, stream.seq_len, stream.input_features) == (10, 28, 28)
    assert [e.name for e in stream.experiences] == ["perm 0", "perm 1", "perm 2"]
    assert all(e.classes == tuple(range(10)) for e in stream.experiences)
    p0, p1 = (streams.task_permutation(0, k) for k in (0, 1))
    assert not np.array_equal(p0, np.arange(784))  # task 0 is permuted too
    assert not np.array_equal(p0, p1)
    e0, e1 = stream.experiences[:2]
    assert (len(e0.train), len(e0.test)) == (64, 32)
    for split in ("train", "test"):
        for i in (0, 7, 31):
            r0, r1 = getattr(e0, split)[i], getattr(e1, split)[i]
            assert r0["inputs"].shape == (28, 28) and r0["inputs"].dtype == np.float32
            assert r0["lengths"].dtype == np.int32 and int(r0["lengths"]) == 28
            assert (int(r0["task"]), int(r1["task"])) == (0, 1)
            assert r0["targets"].dtype == np.int32
            assert int(r0["targets"]) == int(r1["targets"])
            # Task 0's record, un-permuted, is a real t10k image with that label...
            raw = image_streams.permute_pixels(_uint8(r0["inputs"]), np.argsort(p0))
            found = _find(images, raw)
            assert len(found) >= 1 and labels[found[0]] == int(r0["targets"])
            # ... and task 1's record is the same image under task 1's permutation.
            want = image_streams.permute_pixels(raw, p1)
            np.testing.assert_array_equal(_uint8(r1["inputs"]), want)


@needs_mnist
def test_pixel_order_and_full_t10k_split():
    config = _config(
        "permuted_mnist",
        num_tasks=1,
        train=0,
        test=0,
        options={"mnist_dir": str(MNIST_DIR), "splits": "t10k", "order": "pixels"},
    )
    stream = streams.make_stream(config)
    assert (stream.seq_len, stream.input_features) == (784, 1)
    e = stream.experiences[0]
    assert (len(e.train), len(e.test)) == (8000, 2000)  # carved out of t10k
    r = e.train[0]
    assert r["inputs"].shape == (784, 1) and int(r["lengths"]) == 784
    rows = _config("permuted_mnist", num_tasks=1, train=0, test=0)
    r_rows = streams.make_stream(rows).experiences[0].train[0]
    np.testing.assert_array_equal(r["inputs"][:, 0], r_rows["inputs"].reshape(-1))


@needs_mnist
def test_same_config_same_records_and_seed_changes_them():
    def records(seed, stream="permuted_mnist"):
        config = _config(stream, num_tasks=2, train=16, test=8)
        config.data.seed = seed
        s = streams.make_stream(config)
        return [
            (e.train[i], e.test[i % 8]) for e in s.experiences for i in range(0, 16, 5)
        ]

    for stream in ("permuted_mnist", "split_mnist", "rotated_mnist"):
        first, again = records(0, stream), records(0, stream)
        for (a_train, a_test), (b_train, b_test) in zip(first, again, strict=True):
            for a, b in ((a_train, b_train), (a_test, b_test)):
                assert a.keys() == b.keys()
                for key in a:
                    np.testing.assert_array_equal(a[key], b[key])
    other = records(1)
    assert any(
        not np.array_equal(a[0]["inputs"], b[0]["inputs"])
        for a, b in zip(records(0), other, strict=True)
    )


@needs_mnist
def test_task_setting_offsets_labels():
    domain = streams.make_stream(_config("permuted_mnist", num_tasks=3))
    task = streams.make_stream(_config("permuted_mnist", num_tasks=3, setting="task"))
    assert task.setting == "task" and task.num_classes == 30
    for k, (d, t) in enumerate(zip(domain.experiences, task.experiences, strict=True)):
        assert t.classes == tuple(range(10 * k, 10 * k + 10))
        for i in range(0, 64, 9):
            assert int(t.train[i]["targets"]) == int(d.train[i]["targets"]) + 10 * k
            np.testing.assert_array_equal(t.train[i]["inputs"], d.train[i]["inputs"])
        targets = [int(t.test[i]["targets"]) for i in range(len(t.test))]
        assert min(targets) >= 10 * k and max(targets) < 10 * k + 10


# --- rotated MNIST ------------------------------------------------------------------


@needs_mnist
def test_rotated_stream_angles(t10k):
    images, _ = t10k
    stream = streams.make_stream(_config("rotated_mnist", num_tasks=4))
    assert [e.name for e in stream.experiences] == [
        "rot 0",
        "rot 45",
        "rot 90",
        "rot 135",
    ]
    assert stream.num_classes == 10 and stream.setting == "domain"
    default = streams.make_stream(_config("rotated_mnist", train=2, test=2))
    assert len(default.experiences) == 10 and default.experiences[1].name == "rot 18"
    for i in (0, 5, 20):
        records = [e.train[i] for e in stream.experiences]
        upright = _uint8(records[0]["inputs"])  # task 0: unrotated
        assert len(_find(images, upright)) >= 1
        np.testing.assert_array_equal(_uint8(records[2]["inputs"]), np.rot90(upright))
        for k, degrees in ((1, 45.0), (3, 135.0)):
            want = image_streams.rotate(upright, degrees)
            np.testing.assert_array_equal(_uint8(records[k]["inputs"]), want)
        assert len({int(r["targets"]) for r in records}) == 1
    task = streams.make_stream(_config("rotated_mnist", num_tasks=4, setting="task"))
    assert task.num_classes == 40 and int(task.experiences[2].train[0]["targets"]) >= 20


# --- split MNIST --------------------------------------------------------------------


@needs_mnist
def test_split_mnist_classes_and_labels(t10k):
    _, labels = t10k
    config = _config("split_mnist", train=0, test=0)
    stream = streams.make_stream(config)
    assert stream.setting == "task" and stream.num_classes == 10
    assert [e.name for e in stream.experiences] == [
        f"digits {2 * k}-{2 * k + 1}" for k in range(5)
    ]
    train_idx, test_idx = corpus.holdout_indices(len(labels), 2000, config.data.seed)
    for k, e in enumerate(stream.experiences):
        assert e.classes == (2 * k, 2 * k + 1) and e.index == k
        for split, idx in ((e.train, train_idx), (e.test, test_idx)):
            assert len(split) == int(np.isin(labels[idx], e.classes).sum())
        targets = {int(e.test[i]["targets"]) for i in range(len(e.test))}
        assert targets == set(e.classes)  # the digits themselves, both present
        assert {int(e.test[i]["task"]) for i in range(0, len(e.test), 50)} == {k}
    classes = streams.make_stream(_config("split_mnist", setting="class", num_tasks=3))
    assert classes.setting == "class" and classes.num_classes == 10
    assert len(classes.experiences) == 3
    e = classes.experiences[2]
    assert {int(e.train[i]["targets"]) for i in range(len(e.train))} == {4, 5}


@needs_mnist
def test_split_limits_are_seeded_subsets():
    stream = streams.make_stream(_config("split_mnist", num_tasks=2, train=20, test=10))
    full = streams.make_stream(_config("split_mnist", num_tasks=2, train=0, test=0))
    for small, big in zip(stream.experiences, full.experiences, strict=True):
        assert (len(small.train), len(small.test)) == (20, 10)
        # the first n of the same seeded shuffle
        for i in range(20):
            np.testing.assert_array_equal(
                small.train[i]["inputs"], big.train[i]["inputs"]
            )


# --- errors ---------------------------------------------------------------------------


@needs_mnist
def test_setting_and_stream_errors():
    with pytest.raises(config_lib.ConfigError, match="cl.setting") as info:
        streams.make_stream(_config("permuted_mnist", setting="class"))
    message = str(info.value)
    assert "permuted_mnist" in message and "domain" in message and "task" in message
    assert "\n" not in message
    with pytest.raises(config_lib.ConfigError, match="cl.setting"):
        streams.make_stream(_config("split_mnist", setting="domain"))
    with pytest.raises(config_lib.ConfigError, match="cl.setting"):
        streams.make_stream(_config("rotated_mnist", setting="incremental"))
    with pytest.raises(config_lib.ConfigError, match="cl.stream.*permuted_mnist"):
        streams.make_stream(_config("permuted_cifar"))
    with pytest.raises(config_lib.ConfigError, match="cl.stream"):
        streams.make_stream(_config(""))
    with pytest.raises(config_lib.ConfigError, match="cl.num_tasks"):
        streams.make_stream(_config("split_mnist", num_tasks=6))
    with pytest.raises(config_lib.ConfigError, match="mnist_dir.*splits.*order"):
        streams.make_stream(_config("split_mnist", options={"shuffle": True}))
    bad = {"mnist_dir": str(MNIST_DIR), "splits": "t10k", "order": "columns"}
    with pytest.raises(config_lib.ConfigError, match="order"):
        streams.make_stream(_config("split_mnist", options=bad))
    bad = {"mnist_dir": str(MNIST_DIR), "splits": "all"}
    with pytest.raises(config_lib.ConfigError, match="splits"):
        streams.make_stream(_config("permuted_mnist", options=bad))
    assert set(streams.STREAMS) == {
        "permuted_mnist",
        "rotated_mnist",
        "split_mnist",
        "split_cifar10",
        "split_cifar100",
        "parity_stream",
    }
    info = streams.STREAMS["permuted_mnist"]
    assert info.default_setting == "domain" and info.default_num_tasks == 10


# --- the parity stream ----------------------------------------------------------------


def _parity_config(**cl):
    config = _config("parity_stream", options={"sizes": [64, 32]}, **cl)
    config.data.seq_len = 12
    return config


def test_parity_stream_labels():
    stream = streams.make_stream(_parity_config(num_tasks=3, train=0, test=0))
    assert (stream.setting, stream.num_classes) == ("domain", 2)
    assert (stream.seq_len, stream.input_features) == (12, 1)
    assert [e.name for e in stream.experiences] == ["N=2", "N=3", "N=4"]
    for k, e in enumerate(stream.experiences):
        n = 2 + k
        assert e.classes == (0, 1) and (len(e.train), len(e.test)) == (64, 32)
        for split in (e.train, e.test):
            bits = np.stack([split[i]["inputs"] for i in range(len(split))])
            assert bits.shape == (len(split), 12, 1) and bits.dtype == np.float32
            assert set(np.unique(bits)) <= {0.0, 1.0}
            targets = np.array([int(split[i]["targets"]) for i in range(len(split))])
            direct = bits[:, -n:, 0].sum(axis=1).astype(int) % 2
            np.testing.assert_array_equal(targets, direct)
            np.testing.assert_array_equal(
                targets, parity.labels(bits[..., 0], [n], "parity")[:, 0]
            )
            assert int(split[0]["lengths"]) == 12 and int(split[0]["task"]) == k
    again = streams.make_stream(_parity_config(num_tasks=3, train=0, test=0))
    np.testing.assert_array_equal(
        again.experiences[1].train[5]["inputs"],
        stream.experiences[1].train[5]["inputs"],
    )


def test_parity_stream_task_setting_and_errors():
    stream = streams.make_stream(_parity_config(setting="task", train=8, test=4))
    assert stream.num_classes == 10 and len(stream.experiences) == 5  # N = 2..6
    for k, e in enumerate(stream.experiences):
        assert e.classes == (2 * k, 2 * k + 1) and len(e.train) == 8
        assert {int(e.train[i]["targets"]) for i in range(8)} <= set(e.classes)
    short = _parity_config()
    short.data.seq_len = 5  # the default 5 tasks need N up to 6
    with pytest.raises(config_lib.ConfigError, match="data.seq_len"):
        streams.make_stream(short)
    with pytest.raises(config_lib.ConfigError, match="cl.setting"):
        streams.make_stream(_parity_config(setting="class"))
    bad = _parity_config()
    bad.data.options = {"sizes": [10]}
    with pytest.raises(config_lib.ConfigError, match="sizes"):
        streams.make_stream(bad)
    bad.data.options = {"order": "rows"}
    with pytest.raises(config_lib.ConfigError, match="valid keys: sizes"):
        streams.make_stream(bad)


# --- split CIFAR through mocked TFDS --------------------------------------------------


class FakeSplit:
    """A lazy TFDS-like split: ``len`` and ``[i] -> example``."""

    def __init__(self, n, make):
        self.n, self.make = n, make

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.make(int(i))


def _cifar_example(split, i, classes):
    rng = np.random.default_rng(i + (0 if split == "train" else 10**6))
    return {
        "id": f"{split}_{i}",
        "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "label": np.int64(i % classes),
        "coarse_label": np.int64(i % 20),
    }


_CIFAR = {"cifar10": (10, {"train": 200, "test": 60}), "cifar100": (100, None)}
_CIFAR100_SIZES = {"train": 500, "test": 200}


def _cifar_source(builder, split, **kwargs):
    classes, sizes = _CIFAR[builder.name]
    sizes = sizes or _CIFAR100_SIZES
    return FakeSplit(sizes[split], lambda i: _cifar_example(split, i, classes))


def test_split_cifar10_with_mock_data():
    with tfds.testing.mock_data(as_data_source_fn=_cifar_source):
        stream = streams.make_stream(_config("split_cifar10", options={}, train=0))
        assert (stream.seq_len, stream.input_features) == (32, 96)
        assert stream.setting == "task" and stream.num_classes == 10
        assert [e.classes for e in stream.experiences] == [
            (0, 1),
            (2, 3),
            (4, 5),
            (6, 7),
            (8, 9),
        ]
        e = stream.experiences[1]
        assert e.name == "classes 2-3" and len(e.train) == 40 and len(e.test) == 12
        # exactly the training images of classes 2 and 3, as rows of RGB values
        want = {
            _cifar_example("train", i, 10)["image"].tobytes()
            for i in range(200)
            if i % 10 in (2, 3)
        }
        got = set()
        for i in range(len(e.train)):
            r = e.train[i]
            assert r["inputs"].shape == (32, 96) and int(r["targets"]) in (2, 3)
            got.add(_uint8(r["inputs"]).reshape(32, 32, 3).tobytes())
        assert got == want
        options = {"order": "pixels"}
        pixels = streams.make_stream(
            _config("split_cifar10", options=options, setting="class", num_tasks=2)
        )
        assert (pixels.seq_len, pixels.input_features) == (1024, 3)
        assert pixels.setting == "class" and len(pixels.experiences) == 2
        assert pixels.experiences[0].test[0]["inputs"].shape == (1024, 3)
        with pytest.raises(config_lib.ConfigError, match="cl.num_tasks"):
            streams.make_stream(_config("split_cifar10", options={}, num_tasks=6))
        with pytest.raises(config_lib.ConfigError, match="valid keys"):
            streams.make_stream(_config("split_cifar10", options={"splits": "t10k"}))


def test_split_cifar100_with_mock_data():
    with tfds.testing.mock_data(as_data_source_fn=_cifar_source):
        stream = streams.make_stream(_config("split_cifar100", options={}, train=0))
        assert len(stream.experiences) == 10 and stream.num_classes == 100
        e = stream.experiences[3]
        assert e.classes == tuple(range(30, 40)) and e.name == "classes 30-39"
        assert len(e.train) == 50
        assert {int(e.train[i]["targets"]) for i in range(50)} == set(range(30, 40))
        twenty = streams.make_stream(
            _config("split_cifar100", options={}, num_tasks=20)
        )
        assert twenty.experiences[19].classes == (95, 96, 97, 98, 99)
        with pytest.raises(config_lib.ConfigError, match="cl.num_tasks"):
            streams.make_stream(_config("split_cifar100", options={}, num_tasks=7))


# --- batching -------------------------------------------------------------------------


@needs_mnist
@pytest.mark.parametrize("stream", ["permuted_mnist", "split_mnist", "parity_stream"])
def test_records_batch_through_classification(stream):
    classification = pytest.importorskip("seqjax.tasks.classification")
    config = (
        _parity_config(num_tasks=2)
        if stream == "parity_stream"
        else _config(stream, num_tasks=2)
    )
    config.data.batch_size, config.data.eval_batch_size = 8, 12
    s = streams.make_stream(config)
    e = s.experiences[1]
    train, test = classification.batched(config, e.train, e.test, 0, 1)
    batch = train[0]
    t, f = s.seq_len, s.input_features
    assert batch["inputs"].shape == (8, t, f) and batch["inputs"].dtype == np.float32
    for key in ("lengths", "targets", "task", "weights"):
        assert batch[key].shape == (8,)
    assert (batch["lengths"] == t).all() and (batch["task"] == 1).all()
    assert set(batch["targets"].tolist()) <= set(e.classes)
    batches = [test[i] for i in range(len(test))]
    assert len(batches) == 3  # 32 test records padded to 36
    assert sum(float(b["weights"].sum()) for b in batches) == 32.0
    assert batches[-1]["inputs"].shape == (12, t, f)
