"""Pathfinder and Path-X: seeded images of dashed curves; are the two markers joined?

Each image holds two long target paths and a few short distractor paths, all drawn as
dashed curves of short straight segments ("paddles"), and two circular markers at path
ends. The label is 1 when both markers sit on the same path, 0 when they sit on the two
different target paths:

.. math:: y = [\\text{marker}_1 \\leftrightarrow \\text{marker}_2 \\text{ connected}]

Generation follows the scheme of the original generator (Linsley et al.; Kim, Linsley
et al.): the two target paths start ``seed_distance`` pixels apart near the image
centre (the first start at least ``seed_margin = 2 * seed_distance`` from the edge);
each paddle continues from the end of the previous one in a direction drawn with weight
:math:`\\cos^2(c\\,|\\Delta\\theta|)` for :math:`c\\,|\\Delta\\theta| < \\pi/2`, else 0
(``c = continuity``), among the directions that keep clear of everything drawn. The
origin marker goes on the start of one target path and the other marker on the end of
the same path (label 1) or of the other one (label 0), so both classes have the same
paths and differ only in where the second marker is.

One deliberate change makes the label checkable: the lit pixels of consecutive paddles
of a path are exactly ``gap + 1`` apart in Chebyshev distance (``gap`` blank pixels
between the dashes), and the pixels of different objects (a path with its markers) are
more than ``clearance > gap`` apart. So linking lit pixels within Chebyshev distance
``gap + 1`` recovers exactly the paths, and connectivity decides the label. (In the
original, the gap between paddles, twice the paddle margin, exceeded the separation
between paths, one margin, so its labels cannot be checked that way.) A path also keeps
``self_clearance`` blank pixels from its own non-adjacent paddles. The end markers of
both target paths are reserved while drawing, drawn or not, so distractors keep clear
of every path end in both classes.

Paddles are placed on the pixel lattice in ``num_directions`` directions from
precomputed footprints, so testing all directions for one paddle is a single gather.
The target paths grow together for three paddles, then one after the other; a dead end
undoes the last placements (further back after each consecutive failure) and the image
restarts when a budget of dead ends is spent. Distractors that find no room are left
out, as in the original (``allow_incomplete``).

Presets (:func:`config_for`) take the LRA release's "hard" settings
(``curv_contour_length_14``) per size: 32 px: paddle length 2, width 0.5, margin
(``gap``) 1, marker radius 1.5, seed distance 7, continuity 1.0, 14 paddles per target,
20 // 4 = 5 distractors of 14 // 3 = 4 paddles; 128 px (Path-X): paddle length 5
(the generator's default), width 1.5, margin 2 (LRA samples 2 or 3), marker radius 3,
seed distance 20, continuity 1.8, 14 paddles, 35 // 4 = 8 distractors of 4 paddles.
"easy" and "intermediate" use 6 and 9 paddles (``curv_baseline``,
``curv_contour_length_9``). Other sizes scale the nearest preset.

Images are uint8, flattened row-major to ``size * size`` pixel tokens (1024 for 32 px,
16384 for 128 px). Every image has its own random stream ``(seed, stream, index)``, so
images can be generated in parallel and in any order with identical results; the
labels are a seeded permutation of alternating classes, exactly balanced.

References: Linsley, Kim, Veerabadran, Windolf, Serre, "Learning long-range spatial
dependencies with horizontal gated recurrent units" (2018); Kim, Linsley, Thakkar,
Serre, "Disentangling neural mechanisms for perceptual grouping" (2020); Tay et al.,
"Long Range Arena: A Benchmark for Efficient Transformers" (2021).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
from collections.abc import Sequence

import numpy as np

from seqjax.data import sources

DIFFICULTIES = {"easy": 6, "intermediate": 9, "hard": 14}
"""Paddles per target path for each difficulty of the original release."""
SPLITS = ("train", "validation", "test")

_FREE = -1
_WALL = -2
_MULTI = -3


@dataclasses.dataclass(frozen=True)
class PathfinderConfig:
    """Geometry of a Pathfinder image (lengths in pixels).

    Attributes:
        image_size: side ``S`` of the square image.
        contour_length: paddles per target path.
        distractor_length: paddles per distractor path.
        num_distractors: distractor paths (fewer are drawn when no room is left).
        paddle_length: length of a paddle's centre line.
        paddle_width: paddle thickness; pixels within ``max(0.5, width / 2)`` of the
            centre line are lit.
        gap: blank pixels between consecutive paddles of a path.
        clearance: pixels of different objects are more than this far apart
            (Chebyshev); must exceed ``gap``.
        self_clearance: the same for non-adjacent paddles of one path.
        continuity: turning penalty ``c``; a turn is at most ``pi / (2 c)``.
        marker_radius: radius of the marker discs.
        seed_distance: distance between the starts of the two target paths.
        seed_margin: the first target path starts at least this far from the edge.
        border: no object pixel within this many pixels of the edge.
        num_directions: candidate directions per paddle.
        max_attempts: image restarts before giving up.
    """

    image_size: int = 32
    contour_length: int = 14
    distractor_length: int = 4
    num_distractors: int = 5
    paddle_length: float = 2.0
    paddle_width: float = 0.5
    gap: int = 1
    clearance: int = 2
    self_clearance: int = 1
    continuity: float = 1.0
    marker_radius: float = 1.5
    seed_distance: float = 7.0
    seed_margin: int = 14
    border: int = 1
    num_directions: int = 32
    max_attempts: int = 200

    def __post_init__(self) -> None:
        for name in ("image_size", "contour_length", "num_directions", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("distractor_length", "num_distractors", "border", "seed_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_distractors > 0 and self.distractor_length < 1:
            raise ValueError(
                "distractor_length must be >= 1 when there are distractors"
            )
        if self.gap < 1:
            raise ValueError(f"gap must be >= 1 (dashed paths), got {self.gap}")
        if self.self_clearance < 0:
            raise ValueError(f"self_clearance must be >= 0, got {self.self_clearance}")
        if self.clearance <= self.gap:
            raise ValueError(
                f"clearance must exceed gap for the label to be decidable, got "
                f"clearance={self.clearance}, gap={self.gap}"
            )
        if self.paddle_length < 1.0 or self.paddle_width <= 0:
            raise ValueError(
                f"need paddle_length >= 1 and paddle_width > 0, got "
                f"{self.paddle_length}, {self.paddle_width}"
            )
        if self.continuity <= 0 or self.marker_radius < 0 or self.seed_distance <= 0:
            raise ValueError(
                "continuity and seed_distance must be > 0 and marker_radius >= 0"
            )
        if self.image_size < 2 * self.border + 8:
            raise ValueError(f"image_size={self.image_size} is too small")

    def to_dict(self) -> dict[str, float | int]:
        """The settings as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


_PUBLISHED = {
    # size: (paddle_length, paddle_width, gap, marker_radius, seed_distance,
    #        continuity, distractor paddle budget)
    32: (2.0, 0.5, 1, 1.5, 7.0, 1.0, 20),
    64: (5.0, 1.0, 1, 2.5, 12.0, 1.8, 22),
    128: (5.0, 1.5, 2, 3.0, 20.0, 1.8, 35),
    256: (5.0, 2.0, 3, 5.0, 27.0, 1.8, 30),
}


def config_for(image_size: int = 32, difficulty: str = "hard") -> PathfinderConfig:
    """The preset for ``image_size`` and ``difficulty`` (see the module docstring).

    Sizes 32, 64, 128 and 256 use the LRA release's settings; other sizes scale the
    lengths of the nearest of those.

    Args:
        image_size: image side in pixels.
        difficulty: ``"easy"`` (6 paddles), ``"intermediate"`` (9) or ``"hard"`` (14).

    Returns:
        A :class:`PathfinderConfig`.

    Raises:
        ValueError: for an unknown difficulty or a too small size.

    Example:
        >>> config_for(128).num_distractors
        8
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(
            f"difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise TypeError(f"image_size must be an int, got {image_size!r}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    base = min(_PUBLISHED, key=lambda s: abs(math.log(image_size / s)))
    length, width, gap, radius, seed_dist, continuity, budget = _PUBLISHED[base]
    scale = image_size / base
    if base != image_size:
        length = max(1.0, round(length * scale, 2))
        width = round(width * scale, 2)
        gap = max(1, round(gap * scale))
        radius = round(radius * scale, 2)
        seed_dist = round(seed_dist * scale, 2)
    contour = DIFFICULTIES[difficulty]
    distractor_length = max(1, contour // 3)
    return PathfinderConfig(
        image_size=image_size,
        contour_length=contour,
        distractor_length=distractor_length,
        num_distractors=budget // distractor_length,
        paddle_length=length,
        paddle_width=width,
        gap=gap,
        clearance=gap + 1,
        self_clearance=gap,
        continuity=continuity,
        marker_radius=radius,
        seed_distance=seed_dist,
        seed_margin=int(2 * seed_dist),
        border=1,
        num_directions=32 if image_size <= 48 else 48,
    )


def _square(radius: int) -> np.ndarray:
    span = np.arange(-radius, radius + 1)
    return np.stack(np.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2)


class _Geometry:
    """Everything about the drawing that does not depend on the random draws.

    Paddles live on the pixel lattice. A paddle in direction ``k`` (angle
    ``2 pi k / K``) starts at a pixel centre and runs ``paddle_length`` along
    ``u_k``; its lit pixels are those within ``max(0.5, width / 2)`` of the centre
    line. ``step[j, k]`` is where a paddle in direction ``k`` starts after one in
    direction ``j``: the integer offset nearest the ideal continuation for which the
    two footprints are exactly ``gap + 1`` apart in Chebyshev distance; turns that
    cannot be linked that way get weight 0. All offsets are kept as flat indices into
    a padded ``width x width`` grid, so a candidate test is one gather.
    """

    def __init__(self, cfg: PathfinderConfig) -> None:
        k = cfg.num_directions
        angles = 2 * np.pi * np.arange(k) / k
        units = np.stack([np.sin(angles), np.cos(angles)], axis=1)
        radius = max(0.5, cfg.paddle_width / 2.0)
        box = _square(int(math.ceil(cfg.paddle_length + radius)) + 1)
        shapes, shades = [], []
        for unit in units:
            t = np.clip(box @ unit, 0.0, cfg.paddle_length)
            dist = np.linalg.norm(box - t[:, None] * unit, axis=1)
            lit = dist <= radius + 1e-9
            shapes.append(box[lit])
            shade = 1.0 - 0.5 * dist[lit] / (radius + 0.5)
            shades.append(np.clip(np.rint(255.0 * shade), 1, 255).astype(np.uint8))
        ends = np.rint(cfg.paddle_length * units).astype(np.int64)
        steps = np.zeros((k, k, 2), dtype=np.int64)
        linked = np.zeros((k, k), dtype=bool)
        for j in range(k):
            end = cfg.paddle_length * units[j]
            for i in range(k):
                for s in np.arange(0.5, cfg.gap + 3.0, 0.25):
                    off = np.rint(end + s * units[i]).astype(np.int64)
                    moved = shapes[i] + off
                    cheb = np.abs(moved[:, None, :] - shapes[j][None]).max(-1).min()
                    if cheb == cfg.gap + 1:
                        steps[j, i] = off
                        linked[j, i] = True
                        break
        turn = np.abs((angles[None, :] - angles[:, None] + np.pi) % (2 * np.pi) - np.pi)
        bent = turn * cfg.continuity
        weight = np.where(bent < np.pi / 2, np.cos(bent) ** 2, 0.0)
        self.weight = np.where(linked, weight, 0.0)

        r = int(math.floor(cfg.marker_radius))
        disc = _square(r)
        disc = disc[(disc**2).sum(1) <= cfg.marker_radius**2 + 1e-9]
        # An end marker is linked to its path when it touches the last paddle.
        self.end_linked = np.array(
            [
                np.abs((disc + ends[i])[:, None] - shapes[i][None]).max(-1).min()
                <= cfg.gap + 1
                for i in range(k)
            ]
        )

        reach = max(int(np.abs(o).max()) for o in shapes)
        self.pad = reach + int(np.abs(steps).max()) + max(cfg.clearance, r) + r + 2
        self.width = cfg.image_size + 2 * self.pad
        w = self.width

        def flat(offsets: np.ndarray) -> np.ndarray:
            return (offsets[..., 0] * w + offsets[..., 1]).astype(np.int64)

        self.shapes = [flat(o) for o in shapes]
        self.shades = shades
        most = max(len(o) for o in shapes)
        # One width for all shapes, repeating the first pixel (harmless for tests
        # that every pixel is free).
        self.padded = np.stack(
            [np.concatenate([o, np.repeat(o[:1], most - len(o))]) for o in self.shapes]
        )
        self.ends = flat(ends)
        self.steps = flat(steps)
        self.disc = flat(disc)
        self.halo = flat(_square(cfg.clearance))
        self.self_halo = flat(_square(cfg.self_clearance))
        grid = np.full((w, w), _WALL, dtype=np.int32)
        inner = slice(self.pad + cfg.border, self.pad + cfg.image_size - cfg.border)
        grid[inner, inner] = _FREE
        self.empty = grid.reshape(-1)

    def to_flat(self, yx: np.ndarray) -> int:
        return int((yx[0] + self.pad) * self.width + yx[1] + self.pad)

    def to_yx(self, index: int) -> np.ndarray:
        y, x = divmod(int(index), self.width)
        return np.array([y - self.pad, x - self.pad], dtype=np.int32)


_GEOMETRY_CACHE: dict[PathfinderConfig, _Geometry] = {}


def _geometry(cfg: PathfinderConfig) -> _Geometry:
    if cfg not in _GEOMETRY_CACHE:
        _GEOMETRY_CACHE[cfg] = _Geometry(cfg)
    return _GEOMETRY_CACHE[cfg]


class _Canvas:
    """One image under construction: pixels, two occupancy grids, an undo log.

    ``obj`` holds, for every cell within ``clearance`` (Chebyshev) of a drawn or
    reserved pixel, the object it belongs to (``_MULTI`` when several objects);
    ``part`` does the same per paddle within ``self_clearance`` (``_MULTI`` when
    several), which keeps a path from running into itself. Cells outside the drawable
    area are ``_WALL``. Every write is logged so that :meth:`rollback` can undo it.
    """

    def __init__(self, cfg: PathfinderConfig) -> None:
        self.cfg = cfg
        self.geo = _geometry(cfg)
        self.obj = self.geo.empty.copy()
        self.part = self.geo.empty.copy()
        self.image = np.zeros(self.geo.width**2, dtype=np.uint8)
        self.num_parts = 0
        self.log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def checkpoint(self) -> tuple[int, int]:
        return len(self.log), self.num_parts

    def rollback(self, point: tuple[int, int]) -> None:
        size, self.num_parts = point
        while len(self.log) > size:
            array, cells, old = self.log.pop()
            array[cells] = old

    def _write(self, array: np.ndarray, cells: np.ndarray, new: np.ndarray) -> None:
        self.log.append((array, cells, array[cells]))
        array[cells] = new

    def _mark(self, grid: np.ndarray, pixels: np.ndarray, ident: int, halo) -> None:
        # Repeated cells get the same value from the same reading, so no dedup.
        cells = (pixels[:, None] + halo[None, :]).reshape(-1)
        current = grid[cells]
        keep = (current == ident) | (current == _WALL)
        new = np.where(current == _FREE, ident, np.where(keep, current, _MULTI))
        self._write(grid, cells, new)

    def disc_ok(self, centre: int, obj: int) -> bool:
        values = self.obj[centre + self.geo.disc]
        return bool(np.all((values == _FREE) | (values == obj)))

    def add_disc(self, centre: int, obj: int) -> None:
        """Reserves a marker disc for ``obj`` (drawn later, if chosen)."""
        self._mark(self.obj, centre + self.geo.disc, obj, self.geo.halo)

    def paint_disc(self, centre: int) -> None:
        self._write(self.image, centre + self.geo.disc, np.uint8(255))

    def add_paddle(self, start: int, direction: int, obj: int) -> int:
        geo = self.geo
        pixels = start + geo.shapes[direction]
        ident = self.num_parts
        self.num_parts += 1
        self._mark(self.obj, pixels, obj, geo.halo)
        self._mark(self.part, pixels, ident, geo.self_halo)
        self._write(
            self.image, pixels, np.maximum(self.image[pixels], geo.shades[direction])
        )
        return ident

    def free_directions(
        self, starts: np.ndarray, obj: int, prev_part: int, end_disc: bool
    ) -> np.ndarray:
        """Which directions ``k`` can hold a paddle starting at ``starts[k]``."""
        cells = starts[:, None] + self.geo.padded
        obj_v = self.obj[cells]
        part_v = self.part[cells]
        ok = ((obj_v == _FREE) | (obj_v == obj)) & (
            (part_v == _FREE) | (part_v == prev_part)
        )
        valid = ok.all(1)
        if end_disc:
            values = self.obj[(starts + self.geo.ends)[:, None] + self.geo.disc]
            valid &= ((values == _FREE) | (values == obj)).all(1)
            valid &= self.geo.end_linked
        return valid

    def pixels(self) -> np.ndarray:
        p, s = self.geo.pad, self.cfg.image_size
        return self.image.reshape(self.geo.width, -1)[p : p + s, p : p + s]


class _Path:
    """Growth state of one path: its last paddle's start, direction and id."""

    __slots__ = ("obj", "start", "length", "count", "direction", "part")

    def __init__(self, obj: int, start: int, length: int) -> None:
        self.obj, self.start, self.length = obj, start, length
        self.count, self.direction = 0, -1
        self.part = _FREE  # matches no paddle id

    def save(self) -> tuple[int, int, int, int]:
        return self.start, self.count, self.direction, self.part

    def load(self, state: tuple[int, int, int, int]) -> None:
        self.start, self.count, self.direction, self.part = state


def _grow(
    canvas: _Canvas, rng: np.random.Generator, path: _Path, end_disc: bool
) -> bool:
    """Adds one paddle to ``path``; returns False when no direction is valid."""
    geo = canvas.geo
    if path.count == 0:
        starts = np.full(len(geo.ends), path.start)
        weights = np.ones(len(geo.ends))
    else:
        starts = path.start + geo.steps[path.direction]
        weights = geo.weight[path.direction]
    last = path.count + 1 == path.length
    valid = canvas.free_directions(starts, path.obj, path.part, end_disc and last)
    cumulative = np.cumsum(np.where(valid, weights, 0.0))
    if cumulative[-1] <= 1e-12:
        return False
    k = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    k = min(k, len(cumulative) - 1)
    path.start = int(starts[k])
    path.direction = k
    path.part = canvas.add_paddle(path.start, k, path.obj)
    path.count += 1
    if end_disc and last:
        canvas.add_disc(path.start + int(geo.ends[k]), path.obj)
    return True


def _targets(canvas: _Canvas, rng: np.random.Generator) -> list[int] | None:
    """Draws the two target paths; returns marker centres ``[o0, o1, e0, e1]``."""
    cfg, geo = canvas.cfg, canvas.geo
    size = cfg.image_size
    lo = max(cfg.border, min(cfg.seed_margin, size // 2 - 1))
    hi = max(lo + 1, size - lo)
    first_yx = rng.integers(lo, hi, size=2)
    first = geo.to_flat(first_yx)
    if not canvas.disc_ok(first, 0):
        return None
    canvas.add_disc(first, 0)
    for _ in range(20):
        phi = rng.integers(0, 360) * np.pi / 180
        offset = cfg.seed_distance * np.array([np.sin(phi), np.cos(phi)])
        second_yx = np.rint(first_yx + offset).astype(np.int64)
        second = geo.to_flat(second_yx)
        inside = np.all((second_yx >= 0) & (second_yx < size))
        if inside and canvas.disc_ok(second, 1):
            break
    else:
        return None
    canvas.add_disc(second, 1)
    paths = [
        _Path(0, first, cfg.contour_length),
        _Path(1, second, cfg.contour_length),
    ]
    # One path after the other. A dead end undoes the last placements and retries
    # them, backing up further after each consecutive failure, within a budget.
    head = min(3, cfg.contour_length)
    order = (
        [0, 1] * head
        + [0] * (cfg.contour_length - head)
        + [1] * (cfg.contour_length - head)
    )
    stack: list[tuple[tuple[int, int], tuple[int, int, int, int]]] = []
    budget = 4 * cfg.contour_length
    step = failures = 0
    while step < len(order):
        path = paths[order[step]]
        saved = (canvas.checkpoint(), path.save())
        if _grow(canvas, rng, path, end_disc=True):
            stack.append(saved)
            step += 1
            failures = 0
            continue
        budget -= 1
        failures += 1
        if budget < 0:
            return None
        for _ in range(min(failures, len(stack))):
            point, state = stack.pop()
            step -= 1
            paths[order[step]].load(state)
            canvas.rollback(point)
    ends = [p.start + int(geo.ends[p.direction]) for p in paths]
    return [first, second, *ends]


def _distractors(canvas: _Canvas, rng: np.random.Generator) -> int:
    """Draws up to ``num_distractors`` short paths; returns how many fit."""
    cfg = canvas.cfg
    drawn = 0
    for index in range(cfg.num_distractors):
        for _ in range(4):
            free = np.flatnonzero(canvas.obj == _FREE)
            if len(free) == 0:
                return drawn
            point = canvas.checkpoint()
            start = int(free[rng.integers(len(free))])
            path = _Path(2 + index, start, cfg.distractor_length)
            if all(
                _grow(canvas, rng, path, end_disc=False)
                for _ in range(cfg.distractor_length)
            ):
                drawn += 1
                break
            canvas.rollback(point)
    return drawn


def render(
    cfg: PathfinderConfig, label: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one image with the given label.

    Args:
        cfg: geometry.
        label: 1 (markers on one path) or 0 (markers on different paths).
        rng: random generator.

    Returns:
        ``(image uint8[S, S], markers int32[2, 2])`` with the marker centres
        ``(row, col)``, the origin marker first.

    Raises:
        ValueError: if ``label`` is not 0 or 1.
        RuntimeError: if no image fits in ``cfg.max_attempts`` attempts.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    for _ in range(cfg.max_attempts):
        canvas = _Canvas(cfg)
        centres = _targets(canvas, rng)
        if centres is None:
            continue
        _distractors(canvas, rng)
        first = int(rng.integers(0, 2))
        second = first if label == 1 else 1 - first
        chosen = [centres[first], centres[2 + second]]
        for centre in chosen:
            canvas.paint_disc(centre)
        markers = np.stack([canvas.geo.to_yx(c) for c in chosen])
        return canvas.pixels().copy(), markers
    raise RuntimeError(
        f"could not fit two paths of {cfg.contour_length} paddles into a "
        f"{cfg.image_size}-pixel image in {cfg.max_attempts} attempts; use a larger "
        "image or shorter paths"
    )


def _labels(num_examples: int, seed: int, stream: int) -> np.ndarray:
    rng = np.random.default_rng([seed, stream])
    return rng.permutation(np.arange(num_examples) % 2).astype(np.int32)


def _render_range(
    cfg: PathfinderConfig, seed: int, stream: int, labels: np.ndarray, start: int
) -> tuple[np.ndarray, np.ndarray]:
    size = cfg.image_size
    images = np.empty((len(labels), size * size), dtype=np.uint8)
    markers = np.empty((len(labels), 2, 2), dtype=np.int32)
    for offset, label in enumerate(labels):
        rng = np.random.default_rng([seed, stream, start + offset])
        image, marks = render(cfg, int(label), rng)
        images[offset] = image.reshape(-1)
        markers[offset] = marks
    return images, markers


def generate(
    num_examples: int,
    *,
    seed: int,
    config: PathfinderConfig | None = None,
    stream: int = 0,
    num_workers: int = 1,
) -> dict[str, np.ndarray]:
    """Generates ``n`` labelled images, exactly balanced (``n // 2`` of label 1).

    Args:
        num_examples: number of images ``n``.
        seed: random seed.
        config: geometry; ``None`` means ``config_for(32, "hard")``.
        stream: independent sub-stream of ``seed`` (used for splits).
        num_workers: processes to render with; the result does not depend on it.

    Returns:
        ``{"inputs": uint8[n, S*S]`` (row-major pixels), ``"targets": int32[n]``,
        ``"markers": int32[n, 2, 2]`` (marker centres, row and column)``}``.

    Raises:
        ValueError: for a negative ``num_examples`` or ``num_workers < 1``.

    Example:
        >>> data = generate(4, seed=0)
        >>> data["inputs"].shape, int(data["targets"].sum())
        ((4, 1024), 2)
    """
    if isinstance(num_examples, bool) or not isinstance(num_examples, int):
        raise TypeError(f"num_examples must be an int, got {num_examples!r}")
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    cfg = config_for(32, "hard") if config is None else config
    labels = _labels(num_examples, seed, stream)
    if num_workers == 1 or num_examples < 2 * num_workers:
        images, markers = _render_range(cfg, seed, stream, labels, 0)
    else:
        bounds = np.linspace(0, num_examples, 4 * num_workers + 1).astype(int)
        # "spawn": forking a process that runs JAX threads can deadlock.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(num_workers, context) as pool:
            futures = [
                pool.submit(_render_range, cfg, seed, stream, labels[a:b], int(a))
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
                if b > a
            ]
            parts = [f.result() for f in futures]
        images = np.concatenate([p[0] for p in parts])
        markers = np.concatenate([p[1] for p in parts])
    return {"inputs": images, "targets": labels, "markers": markers}


def load_splits(
    *,
    image_size: int = 32,
    difficulty: str = "hard",
    seed: int = 0,
    sizes: Sequence[int] = (160_000, 20_000, 20_000),
    config: PathfinderConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    num_workers: int = 1,
) -> dict[str, dict[str, np.ndarray]]:
    """Train/validation/test splits, generated once and cached on disk.

    The default sizes split the original 200K images per difficulty 80/10/10, as S4
    and S5 do. Each split is its own stream, so held-out splits do not depend on the
    train size.

    Args:
        image_size: 32 (Pathfinder), 128 (Path-X) or any size.
        difficulty: ``"easy"``, ``"intermediate"`` or ``"hard"``.
        seed: random seed.
        sizes: ``(train, validation, test)``.
        config: overrides the preset of ``image_size`` and ``difficulty``.
        cache_dir: cache directory; ``None`` means ``$SEQJAX_CACHE`` or
            ``~/.cache/seqjax``.
        num_workers: processes to render with on a cache miss.

    Returns:
        ``{"train": ..., "validation": ..., "test": ...}`` as :func:`generate`.
    """
    cfg = config_for(image_size, difficulty) if config is None else config
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) != 3:
        raise ValueError(f"sizes must be (train, validation, test), got {sizes}")
    settings = {"seed": seed, "sizes": list(sizes), "config": cfg.to_dict()}

    def build() -> dict[str, np.ndarray]:
        flat = {}
        for index, split in enumerate(SPLITS):
            data = generate(
                sizes[index],
                seed=seed,
                config=cfg,
                stream=index + 1,
                num_workers=num_workers,
            )
            flat.update({f"{split}_{key}": value for key, value in data.items()})
        return flat

    flat = sources.cached(f"pathfinder{cfg.image_size}", settings, build, cache_dir)
    return {
        split: {key: flat[f"{split}_{key}"] for key in ("inputs", "targets", "markers")}
        for split in SPLITS
    }
