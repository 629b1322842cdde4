"""Strokes as people and programs send them → the simplified strokes the rasterizer takes.

A drawing is a list of strokes in Google's ndjson layout: `[xs, ys]`
(simplified: integers 0-255) or `[xs, ys, ts]` (raw: screen coordinates at
any scale, times in ms). Raw strokes go through Google's simplification
(`formats.simplify`), exactly as the fetch stage reads raw ndjson; simplified
ones pass untouched, since simplifying twice moves points (measured on the
shipped samples: not one of 175 drawings survives a second pass unchanged).

`auto` takes a drawing as simplified only when it is in that format already
(two lists per stroke, integers 0-255), and as raw otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from quickdraw_dag.data.formats.batch import DrawingBatch
from quickdraw_dag.data.formats.ndjson import MAX_RAW_COORDINATE
from quickdraw_dag.data.formats.simplify import simplify_drawing
from quickdraw_dag.data.raster import rasterize
from quickdraw_dag.errors import excerpt

StrokeFormat = Literal["auto", "raw", "simplified"]
STROKE_FORMATS: tuple[str, ...] = ("auto", "raw", "simplified")
Strokes = list[tuple[np.ndarray, np.ndarray]]


class StrokeError(ValueError):
    """A drawing that is not a list of strokes; the message says which stroke and why."""


def parse_drawing(value: Any, fmt: StrokeFormat = "auto") -> Strokes:
    """Validate one drawing (a list of `[xs, ys]` or `[xs, ys, ts]` strokes) → simplified uint8 strokes."""
    if not isinstance(fmt, str) or fmt not in STROKE_FORMATS:
        raise StrokeError(f"format must be one of {list(STROKE_FORMATS)}, not {excerpt(fmt)}")
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise StrokeError("a drawing must be a non-empty list of strokes ([xs, ys] or [xs, ys, ts] each)")
    strokes = [_stroke(stroke, index) for index, stroke in enumerate(value)]
    is_simplified = all(
        len(stroke) == 2 and all(axis.dtype.kind in "iu" and axis.min() >= 0 and axis.max() <= 255 for axis in stroke)
        for stroke in strokes
    )
    if fmt == "simplified" and not is_simplified:
        raise StrokeError("simplified strokes are [xs, ys] of integers 0-255 (format 'raw' takes screen coordinates)")
    if fmt == "simplified" or (fmt == "auto" and is_simplified):
        return [(xs.astype(np.uint8), ys.astype(np.uint8)) for xs, ys, *_ in strokes]
    for index, (xs, ys, *_) in enumerate(strokes):
        _within_raw_limits(index, xs, ys)
    return simplify_drawing([(xs, ys) for xs, ys, *_ in strokes])


def _within_raw_limits(index: int, *axes: np.ndarray) -> None:
    """The fetch stage's limit on raw coordinates (its ndjson reader refuses the same values, with these words).

    Beyond it, scaling to the 255-pixel box keeps no detail, and near ±1e308 the arithmetic overflows.
    """
    for axis in axes:
        beyond = np.flatnonzero(np.abs(axis.astype(np.float64)) > MAX_RAW_COORDINATE)
        if beyond.size:
            value = axis[beyond[0]].item()
            raise StrokeError(f"stroke {index}: coordinate {excerpt(value)} is beyond ±{MAX_RAW_COORDINATE:g}")


def _stroke(stroke: Any, index: int) -> list[np.ndarray]:
    if not isinstance(stroke, (list, tuple)) or len(stroke) not in (2, 3):
        raise StrokeError(f"stroke {index} must be [xs, ys] or [xs, ys, ts]")
    axes = []
    for name, values in zip("xyt", stroke):
        try:
            array = np.asarray(values) if isinstance(values, (list, tuple)) else None
        except ValueError:  # ragged: lists inside the list
            array = None
        if array is None or array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iuf":
            raise StrokeError(f"stroke {index}: {name} must be a non-empty list of numbers")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise StrokeError(f"stroke {index}: {name} holds a value that is not a finite number")
        axes.append(array)
    if any(axis.size != axes[0].size for axis in axes):
        raise StrokeError(f"stroke {index}: {'x, y and t' if len(axes) == 3 else 'x and y'} differ in length")
    return axes


def rasterize_strokes(drawings: Sequence[Strokes], image_size: int, line_width: float) -> np.ndarray:
    """Simplified drawings → uint8 images, with the preprocess stage's rasterizer."""
    return rasterize(DrawingBatch.from_drawings(drawings), image_size, line_width)
