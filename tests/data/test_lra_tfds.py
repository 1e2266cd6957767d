"""LRA Text (IMDB) and LRA Image (CIFAR-10) through mocked ``tfds.data_source``."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqjax.data import lra_image, lra_text


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


def _review(split, i):
    # bytes like real TFDS text features; some longer than the cut, some not ASCII.
    text = f"{split} review {i} é " + "x" * (i % 7) * 3
    return {"text": text.encode("utf-8"), "label": np.int64(i % 2)}


def _imdb_source(builder, split, **kwargs):
    assert builder.name == "imdb_reviews"
    return FakeSplit(
        {"train": 25000, "test": 25000}[split], lambda i: _review(split, i)
    )


def test_lra_text_records_and_splits():
    with tfds.testing.mock_data(as_data_source_fn=_imdb_source):
        train = lra_text.lra_text("train", max_length=24)
        val = lra_text.lra_text("validation", max_length=24)
        test = lra_text.lra_text("test", max_length=24)
        assert (len(train), len(val), len(test)) == (22500, 2500, 25000)
        r = test[5]
        want = "test review 5 é xxxxxxxxxxxxxxx".encode()[:24]
        assert r["inputs"].shape == (24,) and r["inputs"].dtype == np.int32
        np.testing.assert_array_equal(r["inputs"], np.frombuffer(want, np.uint8) + 3)
        assert int(r["lengths"]) == 24 and int(r["targets"]) == 1
        short = test[0]  # "test review 0 é " is 17 bytes
        assert int(short["lengths"]) == 17
        assert (short["inputs"][17:] == 0).all() and (short["inputs"][:17] >= 3).all()

        # Validation is carved out of train: disjoint, seeded, deterministic.
        def texts(ds):
            return {bytes(ds[i]["inputs"][: ds[i]["lengths"]]) for i in range(len(ds))}

        small = dict(max_length=20)
        val_texts = texts(lra_text.lra_text("validation", **small))
        some_train = {
            bytes(train[i]["inputs"][: train[i]["lengths"]][:20])
            for i in range(0, 22500, 97)
        }
        assert val_texts.isdisjoint(some_train)
        assert val_texts == texts(lra_text.lra_text("validation", **small))
        other = texts(lra_text.lra_text("validation", seed=1, **small))
        assert other != val_texts
        assert lra_text.MAX_LENGTH == 4096 and lra_text.lra_text("test")[0][
            "inputs"
        ].shape == (4096,)


def test_lra_text_default_mock_and_errors():
    with tfds.testing.mock_data(num_examples=12):
        ds = lra_text.lra_text("train", validation_size=2)
        assert len(ds) == 10 and ds[0]["inputs"].shape == (4096,)
        with pytest.raises(ValueError, match="split must be"):
            lra_text.lra_text("dev")
        with pytest.raises(ValueError, match="validation_size"):
            lra_text.lra_text("train", validation_size=12)
        with pytest.raises(ValueError, match="needs validation_size > 0"):
            lra_text.lra_text("validation", validation_size=0)
        with pytest.raises(ValueError, match="max_length"):
            lra_text.lra_text("train", max_length=0)
    ids, n = lra_text.encode_padded("hi", 4)
    assert ids.tolist() == [107, 108, 0, 0] and n == 2


def _image(split, i):
    rng = np.random.default_rng(i + (0 if split == "train" else 10**6))
    return {
        "id": f"{split}_{i}",
        "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "label": np.int64(i % 10),
    }


def _cifar_source(builder, split, **kwargs):
    assert builder.name == "cifar10"
    return FakeSplit({"train": 50000, "test": 10000}[split], lambda i: _image(split, i))


def test_lra_image_records_and_splits():
    with tfds.testing.mock_data(as_data_source_fn=_cifar_source):
        train = lra_image.lra_image("train")
        val = lra_image.lra_image("validation")
        test = lra_image.lra_image("test")
        assert (len(train), len(val), len(test)) == (45000, 5000, 10000)
        r = test[7]
        gray = lra_image.lra_grayscale(_image("test", 7)["image"])
        assert r["inputs"].shape == (1024,) and r["inputs"].dtype == np.int32
        np.testing.assert_array_equal(r["inputs"], gray.reshape(-1))  # row by row
        assert int(r["targets"]) == 7 and int(r["lengths"]) == 1024
        # The 5,000 validation images are a seeded subset of train, not in train.
        fingerprint = lambda rec: rec["inputs"][:16].tobytes()  # noqa: E731
        val_ids = {fingerprint(val[i]) for i in range(0, 5000, 50)}
        train_ids = {fingerprint(train[i]) for i in range(0, 45000, 450)}
        assert val_ids.isdisjoint(train_ids)
        again = lra_image.lra_image("validation")
        assert all(fingerprint(again[i]) == fingerprint(val[i]) for i in range(20))


def test_lra_grayscale_values():
    rgb = np.array(
        [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8
    )
    # trunc(255.5 * w) for the primaries: 0.2989 -> 76, 0.5870 -> 149, 0.1140 -> 29.
    assert lra_image.lra_grayscale(rgb).tolist() == [0, 255, 76, 149, 29]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4096, 3), dtype=np.uint8)
    want = np.floor(
        255.5 * (pixels.astype(np.float64) @ [0.2989, 0.5870, 0.1140]) / 255
    )
    got = lra_image.lra_grayscale(pixels).astype(np.float64)
    # float32 vs float64 rounding may move a value across an integer boundary.
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.99
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        lra_image.lra_grayscale(np.zeros((2, 4), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        lra_image.lra_grayscale(np.zeros((2, 3), np.float32))


def test_lra_grayscale_within_one_level_of_pillow():
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pil = np.asarray(image_module.fromarray(img).convert("L")).astype(int)
    ours = lra_image.lra_grayscale(img).astype(int)
    assert np.abs(pil - ours).max() <= 1


def test_lra_image_default_mock():
    with tfds.testing.mock_data(num_examples=8):
        ds = lra_image.lra_image("train", validation_size=3)
        assert len(ds) == 5 and ds[0]["inputs"].shape == (1024,)
        assert 0 <= ds[0]["inputs"].min() and ds[0]["inputs"].max() <= 255
