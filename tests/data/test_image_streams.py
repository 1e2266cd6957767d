"""Image transforms of the continual-learning streams against hand-built references."""

import numpy as np
import pytest

from seqjax.data import image_streams, mnist


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- permute_pixels -----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(28, 28), (5, 7), (4, 6, 3)])
def test_permute_pixels_round_trip_and_convention(shape):
    image = _image(shape)
    size = shape[0] * shape[1]
    permutation = np.random.default_rng(1).permutation(size)
    out = image_streams.permute_pixels(image, permutation)
    assert out.shape == image.shape and out.dtype == image.dtype
    # flat(out)[t] = flat(image)[pi(t)], pixel by pixel (channels move together).
    flat, flat_out = image.reshape(size, -1), out.reshape(size, -1)
    for t in range(size):
        np.testing.assert_array_equal(flat_out[t], flat[permutation[t]])
    back = image_streams.permute_pixels(out, np.argsort(permutation))
    np.testing.assert_array_equal(back, image)
    if len(shape) == 2:  # the same convention as psMNIST's to_sequences
        want = mnist.to_sequences(image[None], permutation)[0]
        np.testing.assert_array_equal(out.reshape(-1), want)


def test_permute_pixels_by_hand_and_identity():
    image = np.array([[1, 2], [3, 4]], np.uint8)
    got = image_streams.permute_pixels(image, [3, 2, 1, 0])
    np.testing.assert_array_equal(got, [[4, 3], [2, 1]])
    got = image_streams.permute_pixels(image, np.array([1, 2, 3, 0]))
    np.testing.assert_array_equal(got, [[2, 3], [4, 1]])
    np.testing.assert_array_equal(
        image_streams.permute_pixels(image, np.arange(4)), image
    )


def test_permute_pixels_errors():
    image = _image((3, 3))
    with pytest.raises(ValueError, match="permutation"):
        image_streams.permute_pixels(image, np.arange(8))
    with pytest.raises(ValueError, match="permutation"):
        image_streams.permute_pixels(image, np.zeros(9, np.int64))
    with pytest.raises(ValueError, match="permutation"):
        image_streams.permute_pixels(image, np.arange(1, 10))
    with pytest.raises(ValueError, match="permutation"):
        image_streams.permute_pixels(image, np.arange(9, dtype=np.float32))
    with pytest.raises(ValueError, match="image"):
        image_streams.permute_pixels(np.zeros(9, np.uint8), np.arange(9))
    with pytest.raises(ValueError, match="image"):
        image_streams.permute_pixels(np.zeros((1, 3, 3, 1), np.uint8), np.arange(9))


# --- rotate -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(28, 28), (5, 8), (6, 6, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_rotate_by_zero_and_full_turns_is_identity(shape, dtype):
    image = _image(shape).astype(dtype)
    for degrees in (0, 360.0, -720):
        out = image_streams.rotate(image, degrees)
        assert out.shape == image.shape and out.dtype == image.dtype
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("shape", [(28, 28), (7, 7), (6, 6, 3)])
def test_rotate_quarter_turns_are_rot90(shape):
    # For a square image the sampled positions of a quarter turn are grid points
    # (the centre maps onto itself), so bilinear interpolation is exact.
    image = _image(shape)
    for k in (1, 2, 3, -1):
        np.testing.assert_array_equal(
            image_streams.rotate(image, 90 * k), np.rot90(image, k)
        )
    image = image.astype(np.float32) / 7
    np.testing.assert_allclose(image_streams.rotate(image, 90), np.rot90(image))


def test_rotate_half_turn_of_a_rectangle():
    image = _image((5, 8, 2))
    np.testing.assert_array_equal(image_streams.rotate(image, 180), image[::-1, ::-1])


def test_rotate_by_hand_bilinear():
    # 3x3 about (1, 1) by 45 degrees: the centre stays; output (0, 0) reads the
    # input at (1 - sqrt(2), 1): between row -1 (outside: 0) and row 0.
    image = np.arange(1.0, 10.0).reshape(3, 3)
    out = image_streams.rotate(image, 45)
    assert out[1, 1] == 5.0
    frac = np.sqrt(2) - 1  # distance of row 1 - sqrt(2) above row 0
    np.testing.assert_allclose(out[0, 0], (1 - frac) * image[0, 1])
    # output (0, 1): r' = 1 - cos45, c' = 1 + sin45, between (0..1, 1..2).
    r, c = 1 - np.sqrt(0.5), 1 + np.sqrt(0.5)
    want = (
        (1 - r) * (2 - c) * image[0, 1]
        + (1 - r) * (c - 1) * image[0, 2]
        + r * (2 - c) * image[1, 1]
        + r * (c - 1) * image[1, 2]
    )
    np.testing.assert_allclose(out[0, 1], want)


def test_rotate_rounds_and_keeps_uint8():
    image = np.zeros((4, 4), np.uint8)
    image[1:3, 1:3] = 255
    out = image_streams.rotate(image, 30)
    assert out.dtype == np.uint8 and out.max() <= 255
    want = np.rint(image_streams.rotate(image.astype(np.float64), 30))
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("shape", [(28, 28), (17, 23), (32, 32, 3)])
@pytest.mark.parametrize("degrees", [10.0, 33.3, -45.0, 120.0])
def test_rotate_matches_scipy(shape, degrees):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = _image(shape, seed=2)
    ours = image_streams.rotate(image, degrees).astype(int)
    # Pixels outside count as 0 inside the interpolation: scipy's "grid-constant".
    grid = ndimage.rotate(
        image, degrees, reshape=False, order=1, mode="grid-constant"
    ).astype(int)
    assert np.abs(ours - grid).max() <= 1
    # scipy's default mode differs only where the source lies outside the image:
    # compare inside the inscribed disk, which rotates onto itself.
    default = ndimage.rotate(image, degrees, reshape=False, order=1).astype(int)
    rows, cols = np.indices(shape[:2])
    radius = np.hypot(rows - (shape[0] - 1) / 2, cols - (shape[1] - 1) / 2)
    inside = radius <= (min(shape[:2]) - 1) / 2 - 1
    assert inside.sum() > 0.3 * inside.size
    assert np.abs(ours - default)[inside].max() <= 1


def test_rotate_errors():
    with pytest.raises(ValueError, match="degrees"):
        image_streams.rotate(_image((4, 4)), float("nan"))
    with pytest.raises(ValueError, match="image"):
        image_streams.rotate(np.zeros(16, np.uint8), 10)
    with pytest.raises(ValueError, match="image"):
        image_streams.rotate(np.zeros((4, 4), bool), 10)


# --- to_sequence ----------------------------------------------------------------------


def test_to_sequence_gray():
    image = _image((28, 28))
    rows = image_streams.to_sequence(image, "rows")
    assert rows.shape == (28, 28) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, image / 255.0, rtol=1e-6)
    pixels = image_streams.to_sequence(image, "pixels")
    assert pixels.shape == (784, 1) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels[:, 0], rows.reshape(-1))
    assert pixels[28 * 3 + 5, 0] == np.float32(image[3, 5]) / np.float32(255)
    # [H, W, 1] is the same as [H, W].
    np.testing.assert_array_equal(
        image_streams.to_sequence(image[..., None], "rows"), rows
    )
    assert image_streams.to_sequence(image).shape == (28, 28)  # rows by default


def test_to_sequence_rgb():
    image = _image((32, 32, 3))
    rows = image_streams.to_sequence(image, "rows")
    assert rows.shape == (32, 96)
    # row t: R, G, B of pixel 0, then of pixel 1, ...
    np.testing.assert_allclose(rows[4, 3 * 7 : 3 * 7 + 3], image[4, 7] / 255.0)
    pixels = image_streams.to_sequence(image, "pixels")
    assert pixels.shape == (1024, 3)
    np.testing.assert_allclose(pixels[32 * 4 + 7], image[4, 7] / 255.0)
    extremes = np.array([[0, 255]], np.uint8)
    assert image_streams.to_sequence(extremes, "pixels")[:, 0].tolist() == [0.0, 1.0]


def test_to_sequence_errors():
    with pytest.raises(ValueError, match="order"):
        image_streams.to_sequence(_image((4, 4)), "columns")
    with pytest.raises(ValueError, match="uint8"):
        image_streams.to_sequence(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="image"):
        image_streams.to_sequence(np.zeros(16, np.uint8))


# --- class_subset_indices and rotation_angles -----------------------------------------


def test_class_subset_indices():
    labels = np.array([3, 1, 2, 1, 0, 9, 2])
    assert image_streams.class_subset_indices(labels, [1, 0]).tolist() == [1, 3, 4]
    got = image_streams.class_subset_indices(labels, (2,))
    assert got.dtype == np.int64 and got.tolist() == [2, 6]
    assert image_streams.class_subset_indices(labels, [7]).tolist() == []
    rng = np.random.default_rng(0)
    many = rng.integers(0, 10, 1000)
    want = [i for i, y in enumerate(many) if y in (4, 5)]
    assert image_streams.class_subset_indices(many, [4, 5]).tolist() == want


def test_class_subset_indices_errors():
    with pytest.raises(ValueError, match="classes"):
        image_streams.class_subset_indices(np.arange(4), [])
    with pytest.raises(ValueError, match="classes"):
        image_streams.class_subset_indices(np.arange(4), [1, 1])
    with pytest.raises(ValueError, match="classes"):
        image_streams.class_subset_indices(np.arange(4), [1.5])
    with pytest.raises(ValueError, match="labels"):
        image_streams.class_subset_indices(np.zeros((2, 2), int), [0])
    with pytest.raises(ValueError, match="labels"):
        image_streams.class_subset_indices(np.zeros(3, np.float32), [0])


def test_rotation_angles():
    np.testing.assert_allclose(
        image_streams.rotation_angles(4), [0.0, 45.0, 90.0, 135.0]
    )
    angles = image_streams.rotation_angles(10)
    assert angles.shape == (10,) and angles[0] == 0.0 and angles.max() < 180.0
    np.testing.assert_allclose(np.diff(angles), 18.0)
    assert image_streams.rotation_angles(1).tolist() == [0.0]
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="num_tasks"):
            image_streams.rotation_angles(bad)
