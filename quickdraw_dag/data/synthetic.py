"""Seeded procedural doodles in Quick, Draw!'s stroke format.

For an offline demo and for tests; never used unless `data.source` says
`synthetic`. Each shape class starts from a clean outline, then gets what
makes people's drawings varied: rotation, uneven scaling, wobbly lines,
corners that overshoot or fall short, strokes split where a pen would lift,
and a few unrecognized scribbles. The result goes through Google's own
simplification, so it looks like the simplified dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from quickdraw_dag.config.schema import SYNTHETIC_CATEGORIES
from quickdraw_dag.data.formats.batch import DrawingBatch
from quickdraw_dag.data.formats.simplify import simplify_drawing
from quickdraw_dag.data.hashing import splitmix64, text_seed

Outline = list[np.ndarray]  # strokes, each (n, 2) float in roughly [-1, 1]
BASE_TIMESTAMP = 1_490_000_000  # March 2017, when the dataset was collected
UNRECOGNIZED_RATE = 0.05


def _polygon(rng: np.random.Generator, corners: int, star: bool = False) -> Outline:
    angles = np.linspace(0, 2 * math.pi, corners, endpoint=False) + rng.uniform(0, 2 * math.pi)
    radius = np.ones(corners)
    if star:
        radius[1::2] = rng.uniform(0.35, 0.5)
    radius = radius * rng.normal(1.0, 0.06, corners)
    points = np.stack([np.cos(angles) * radius, np.sin(angles) * radius], axis=1)
    closing = points[:1] + rng.normal(0, 0.05, (1, 2))  # the pen rarely meets its start
    return [np.concatenate([points, closing])]


def _circle(rng: np.random.Generator) -> Outline:
    turns = rng.uniform(0.92, 1.1)
    angles = np.linspace(0, 2 * math.pi * turns, rng.integers(24, 48)) + rng.uniform(0, 2 * math.pi)
    wobble = 1 + 0.05 * np.sin(angles * rng.integers(2, 4) + rng.uniform(0, 6))
    return [np.stack([np.cos(angles) * wobble, np.sin(angles) * wobble], axis=1)]


def _square(rng: np.random.Generator) -> Outline:
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], float)
    return [corners + rng.normal(0, 0.06, corners.shape)]


def _diamond(rng: np.random.Generator) -> Outline:
    width = rng.uniform(0.45, 0.7)
    corners = np.array([[0, -1], [width, 0], [0, 1], [-width, 0], [0, -1]], float)
    return [corners + rng.normal(0, 0.05, corners.shape)]


def _triangle(rng: np.random.Generator) -> Outline:
    return _polygon(rng, 3)


def _star(rng: np.random.Generator) -> Outline:
    return _polygon(rng, 10, star=True)


def _hexagon(rng: np.random.Generator) -> Outline:
    return _polygon(rng, 6)


def _octagon(rng: np.random.Generator) -> Outline:
    return _polygon(rng, 8)


def _zigzag(rng: np.random.Generator) -> Outline:
    teeth = int(rng.integers(3, 7))
    xs = np.linspace(-1, 1, 2 * teeth + 1)
    ys = np.where(np.arange(xs.size) % 2 == 0, -0.35, 0.35) * rng.uniform(0.6, 1.4)
    return [np.stack([xs, ys], axis=1) + rng.normal(0, 0.04, (xs.size, 2))]


def _line(rng: np.random.Generator) -> Outline:
    t = np.linspace(-1, 1, 12)
    bend = rng.normal(0, 0.05) * (1 - t**2)
    return [np.stack([t, bend], axis=1)]


def _moon(rng: np.random.Generator) -> Outline:
    outer = np.linspace(-0.5 * math.pi, 0.5 * math.pi, 30)
    depth = rng.uniform(0.2, 0.6)
    inner = outer[::-1]
    arc_out = np.stack([np.cos(outer), np.sin(outer)], axis=1)
    arc_in = np.stack([depth * np.cos(inner), np.sin(inner)], axis=1)
    return [np.concatenate([arc_out, arc_in])]


SHAPES: dict[str, Callable[[np.random.Generator], Outline]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "zigzag": _zigzag,
    "line": _line,
    "hexagon": _hexagon,
    "octagon": _octagon,
    "diamond": _diamond,
    "moon": _moon,
}
assert tuple(SHAPES) == SYNTHETIC_CATEGORIES, "config and generator must agree"


def _humanize(rng: np.random.Generator, outline: Outline) -> Outline:
    """Rotate, stretch, wobble and lift the pen like a person would."""
    angle = rng.normal(0, 0.25)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.diag(rng.uniform(0.75, 1.25, 2))
    strokes: Outline = []
    for stroke in outline:
        dense = _densify(stroke, 40)
        drift = np.cumsum(rng.normal(0, 0.012, dense.shape), axis=0)
        drift -= np.linspace(0, 1, len(dense))[:, None] * drift[-1]  # wobble, not a slide
        moved = (dense + drift) @ (rotation @ stretch).T
        cuts = (
            sorted(rng.choice(np.arange(5, len(moved) - 5), size=rng.integers(0, 2), replace=False))
            if len(moved) > 12
            else []
        )
        for piece in np.split(moved, cuts):
            if len(piece) >= 2:
                strokes.append(piece)
    return strokes


def _densify(points: np.ndarray, per_unit: int) -> np.ndarray:
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        steps = max(1, int(np.hypot(*(b - a)) * per_unit / 2))
        t = np.linspace(0, 1, steps + 1)[1:, None]
        out.append(a + (b - a) * t)
    return np.concatenate(out)


def _scribble(rng: np.random.Generator) -> Outline:
    return [np.cumsum(rng.normal(0, 0.3, (int(rng.integers(5, 15)), 2)), axis=0)]


def generate(category: str, count: int, seed: int = 0) -> DrawingBatch:
    """`count` drawings of `category`, identical for the same (category, seed)."""
    if category not in SHAPES:
        raise ValueError(f"the synthetic source cannot draw {category!r}; it draws {list(SHAPES)}")
    rng = np.random.default_rng([seed, int(text_seed(category) % np.uint64(2**32))])
    drawings = []
    recognized = rng.random(count) >= UNRECOGNIZED_RATE
    for index in range(count):
        outline = SHAPES[category](rng) if recognized[index] else _scribble(rng)
        strokes = _humanize(rng, outline)
        # Screen coordinates, as the raw data has them, then Google's pipeline.
        screen = [(s[:, 0] * 200 + 400, s[:, 1] * 200 + 300) for s in strokes]
        drawings.append(simplify_drawing(screen))
    ids = splitmix64(np.arange(count, dtype=np.uint64) ^ text_seed(f"{category}:{seed}"))
    timestamps = BASE_TIMESTAMP + np.arange(count, dtype=np.int64) * 37
    return DrawingBatch.from_drawings(
        drawings,
        key_ids=ids,
        countrycodes=["ZZ"] * count,  # ISO 3166 user-assigned: "no country"
        recognized=recognized,
        timestamps=timestamps,
    )
