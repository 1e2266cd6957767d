"""Pathfinder / Path-X: labels against a connectivity check on the rendered pixels."""

import numpy as np
import pytest

from seqjax.data import pathfinder


def _components(image, link):
    """Labels the lit pixels: two lit pixels are joined when their Chebyshev distance
    is at most ``link`` (bridging dash gaps of ``link - 1`` blank pixels). Plain BFS,
    independent of the generator's grids."""
    lit = [tuple(p) for p in np.argwhere(image > 0)]
    index = {p: i for i, p in enumerate(lit)}
    offsets = [
        (dy, dx)
        for dy in range(-link, link + 1)
        for dx in range(-link, link + 1)
        if (dy, dx) != (0, 0)
    ]
    label = [-1] * len(lit)
    count = 0
    for i in range(len(lit)):
        if label[i] >= 0:
            continue
        label[i] = count
        stack = [i]
        while stack:
            y, x = lit[stack.pop()]
            for dy, dx in offsets:
                j = index.get((y + dy, x + dx))
                if j is not None and label[j] < 0:
                    label[j] = count
                    stack.append(j)
        count += 1
    return {p: label[i] for i, p in enumerate(lit)}


def _check_labels(data, cfg):
    size, link = cfg.image_size, cfg.gap + 1
    # the smallest paddle footprint bounds a target path's pixel count from below
    smallest = min(len(s) for s in pathfinder._geometry(cfg).shapes)
    for flat, label, markers in zip(
        data["inputs"], data["targets"], data["markers"], strict=True
    ):
        image = flat.reshape(size, size)
        components = _components(image, link)
        a, b = (tuple(int(v) for v in m) for m in markers)
        assert image[a] == 255 and image[b] == 255
        assert (components[a] == components[b]) == bool(label)
        for marker in (a, b):  # each marker sits on a long (target) path
            members = sum(c == components[marker] for c in components.values())
            assert members >= cfg.contour_length * smallest


def test_checker_can_see_a_connection():
    image = np.zeros((8, 8), np.uint8)
    image[1, 1:3] = 200  # a dash
    image[1, 4:6] = 200  # one blank pixel later: the same path
    image[5, 5] = 200  # three blank pixels below (1, 5): another object
    comps = _components(image, link=2)
    assert comps[(1, 1)] == comps[(1, 5)] != comps[(5, 5)]
    image[3, 5] = 200  # now (1, 5) - (3, 5) - (5, 5) are each one blank pixel apart
    comps = _components(image, link=2)
    assert comps[(1, 1)] == comps[(5, 5)]


def test_pathfinder32_labels_match_connectivity():
    cfg = pathfinder.config_for(32, "hard")
    data = pathfinder.generate(40, seed=0, config=cfg)
    assert data["inputs"].shape == (40, 1024) and data["inputs"].dtype == np.uint8
    assert data["targets"].dtype == np.int32 and data["markers"].shape == (40, 2, 2)
    assert data["targets"].sum() == 20  # exactly balanced
    _check_labels(data, cfg)


def test_pathx128_labels_match_connectivity():
    cfg = pathfinder.config_for(128, "hard")
    data = pathfinder.generate(4, seed=1, config=cfg)
    assert data["inputs"].shape == (4, 16384)
    assert data["targets"].sum() == 2
    _check_labels(data, cfg)


@pytest.mark.parametrize("size,difficulty", [(32, "easy"), (48, "intermediate")])
def test_other_presets(size, difficulty):
    cfg = pathfinder.config_for(size, difficulty)
    assert cfg.contour_length == pathfinder.DIFFICULTIES[difficulty]
    data = pathfinder.generate(6, seed=2, config=cfg)
    assert data["inputs"].shape == (6, size * size)
    _check_labels(data, cfg)


def test_published_presets():
    pf32 = pathfinder.config_for(32)
    assert (pf32.contour_length, pf32.paddle_length, pf32.gap) == (14, 2.0, 1)
    assert (pf32.num_distractors, pf32.distractor_length) == (5, 4)
    assert (pf32.marker_radius, pf32.seed_distance, pf32.continuity) == (1.5, 7, 1)
    px = pathfinder.config_for(128)
    assert (px.contour_length, px.paddle_length, px.gap, px.marker_radius) == (
        14,
        5.0,
        2,
        3.0,
    )
    assert px.seed_distance == 20 and px.continuity == 1.8
    for cfg in (pf32, px):
        assert cfg.clearance > cfg.gap


def test_same_seed_same_images():
    a = pathfinder.generate(6, seed=3)
    b = pathfinder.generate(6, seed=3)
    c = pathfinder.generate(6, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["inputs"], c["inputs"])


def test_images_do_not_depend_on_the_batch():
    """Image i has its own stream: the paths of an image are the same in a longer
    run (labels are a permutation of the whole run, so only markers may move)."""
    cfg = pathfinder.config_for(32)
    short = pathfinder.generate(4, seed=5, config=cfg)
    long = pathfinder.generate(8, seed=5, config=cfg)
    rng = np.random.default_rng([5, 0, 2])
    image, markers = pathfinder.render(cfg, int(long["targets"][2]), rng)
    np.testing.assert_array_equal(image.reshape(-1), long["inputs"][2])
    np.testing.assert_array_equal(markers, long["markers"][2])
    same_label = short["targets"][:4] == long["targets"][:4]
    for i in np.flatnonzero(same_label):
        np.testing.assert_array_equal(short["inputs"][i], long["inputs"][i])


def test_load_splits_caches(tmp_path):
    splits = pathfinder.load_splits(sizes=(4, 2, 2), cache_dir=tmp_path)
    assert [len(splits[s]["targets"]) for s in pathfinder.SPLITS] == [4, 2, 2]
    assert not np.array_equal(splits["validation"]["inputs"], splits["test"]["inputs"])
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("pathfinder32-")
    again = pathfinder.load_splits(sizes=(4, 2, 2), cache_dir=tmp_path)
    np.testing.assert_array_equal(again["train"]["inputs"], splits["train"]["inputs"])


@pytest.mark.slow
def test_workers_give_the_same_images():
    cfg = pathfinder.config_for(32)
    one = pathfinder.generate(16, seed=6, config=cfg)
    two = pathfinder.generate(16, seed=6, config=cfg, num_workers=2)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])


def test_bad_settings():
    with pytest.raises(ValueError, match="clearance"):
        pathfinder.PathfinderConfig(gap=2, clearance=2)
    with pytest.raises(ValueError, match="difficulty"):
        pathfinder.config_for(32, "impossible")
    with pytest.raises(ValueError, match="label"):
        pathfinder.render(pathfinder.config_for(32), 2, np.random.default_rng(0))
    tiny = pathfinder.PathfinderConfig(image_size=12, contour_length=40, max_attempts=2)
    with pytest.raises(RuntimeError, match="could not fit"):
        pathfinder.generate(1, seed=0, config=tiny)
