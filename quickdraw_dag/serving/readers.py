"""The input files `predict` takes, streamed in chunks of drawings.

- Google's `.ndjson` (simplified or raw, sniffed) and `.bin`: the pipeline's
  own readers (`quickdraw_dag.data.formats`), so raw drawings are simplified and
  every record validated exactly as the fetch stage does it;
- numpy_bitmap `.npy`: header-checked and memory-mapped, 28×28 rows;
- `.json`: strokes, as one drawing (`[[xs, ys], ...]`), a list of drawings,
  or objects with a `drawing` (or `strokes`) key;
- pictures (`.png`, `.jpg`, ...): any size, either polarity.

Each drawing carries where it came from (line, byte offset, row or index),
and every problem is a `DataError` naming the file and that place.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from quickdraw_dag.data.formats.batch import DrawingBatch
from quickdraw_dag.data.formats.binary import iter_binary
from quickdraw_dag.data.formats.bitmap import BITMAP_SIDE, open_bitmaps
from quickdraw_dag.data.formats.ndjson import iter_ndjson, sniff_ndjson_kind
from quickdraw_dag.errors import DataError
from quickdraw_dag.serving.images import read_image_file
from quickdraw_dag.serving.strokes import StrokeError, StrokeFormat, parse_drawing

STROKE_SUFFIXES = (".ndjson", ".bin", ".json")
BITMAP_SUFFIXES = (".npy",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
BITMAP_ROWS = 8192  # numpy_bitmap rows per chunk


@dataclass
class Chunk:
    """Drawings of one file: strokes (simplified) or pictures, and where each came from."""

    path: Path
    where: list[str]
    batch: DrawingBatch | None = None
    pictures: Any = None  # a uint8 (n, h, w) array or a list of 2-D arrays

    def __len__(self) -> int:
        return len(self.where)


def check_input(path: Path) -> None:
    """Fail before any output on a file that is missing or of a type `predict` does not read."""
    suffix = path.suffix.lower()
    if suffix not in STROKE_SUFFIXES + BITMAP_SUFFIXES + IMAGE_SUFFIXES:
        known = ", ".join(STROKE_SUFFIXES + BITMAP_SUFFIXES + IMAGE_SUFFIXES)
        raise DataError(f"cannot tell what this holds from its name: expected one of {known}", path=path)
    if not path.is_file():
        raise DataError("no such file", path=path)


def iter_chunks(path: Path, fmt: StrokeFormat = "auto") -> Iterator[Chunk]:
    """Stream the drawings of `path` as chunks; `fmt` applies to `.json` strokes."""
    check_input(path)
    suffix = path.suffix.lower()
    if suffix == ".ndjson":
        lines = _LineNumbers(path)
        for batch in iter_ndjson(path, sniff_ndjson_kind(path)):
            yield Chunk(path, [f"line {lines.at(offset)}" for offset in batch.origin], batch=batch)
    elif suffix == ".bin":
        for batch in iter_binary(path):
            yield Chunk(path, [f"byte offset {offset}" for offset in batch.origin], batch=batch)
    elif suffix == ".json":
        yield read_json_drawings(path, fmt)
    elif suffix == ".npy":
        rows = open_bitmaps(path)
        for start in range(0, rows.shape[0], BITMAP_ROWS):
            part = np.asarray(rows[start : start + BITMAP_ROWS]).reshape(-1, BITMAP_SIDE, BITMAP_SIDE)
            yield Chunk(path, [f"row {start + i}" for i in range(part.shape[0])], pictures=part)
    else:
        yield Chunk(path, ["image"], pictures=[read_image_file(path)])


def read_json_drawings(path: Path, fmt: StrokeFormat = "auto") -> Chunk:
    """A `.json` file of strokes: one drawing, a list of drawings, or objects with a `drawing` key."""
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise DataError(f"not valid JSON ({error.msg})", path=path, line=error.lineno, offset=error.pos) from None
    drawings = _drawings(data, path)
    parsed = []
    for index, drawing in enumerate(drawings):
        try:
            parsed.append(parse_drawing(drawing, fmt))
        except StrokeError as error:
            raise DataError(f"drawing {index}: {error}", path=path) from None
    return Chunk(path, [f"drawing {i}" for i in range(len(parsed))], batch=DrawingBatch.from_drawings(parsed))


def _drawings(data: Any, path: Path) -> list[Any]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise DataError("expected strokes ([[xs, ys], ...]) or a non-empty list of drawings", path=path)
    if _is_stroke(data[0]):
        return [data]  # one drawing
    drawings = []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            if "drawing" not in item and "strokes" not in item:
                raise DataError(f"drawing {index}: an object needs a 'drawing' or 'strokes' key", path=path)
            item = item.get("drawing", item.get("strokes"))
        drawings.append(item)
    return drawings


def _is_stroke(value: Any) -> bool:
    """[xs, ys] or [xs, ys, ts] with numbers inside (not a drawing, which holds strokes)."""
    return (
        isinstance(value, list)
        and len(value) in (2, 3)
        and all(isinstance(axis, list) and all(isinstance(v, (int, float)) for v in axis[:1]) for axis in value)
        and all(axis and not isinstance(axis[0], list) for axis in value)
    )


class _LineNumbers:
    """Line numbers of byte offsets in a text file (the ndjson reader reports offsets)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            if handle.seek(0, 2) == 0:
                self.newlines = np.zeros(0, np.int64)
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                view = np.frombuffer(data, np.uint8)
                self.newlines = np.flatnonzero(view == ord("\n"))
                del view  # the map closes only once no array points into it

    def at(self, offset: int) -> int:
        return int(np.searchsorted(self.newlines, offset)) + 1
