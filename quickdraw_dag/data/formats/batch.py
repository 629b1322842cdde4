"""Columnar batches of stroke drawings.

A `DrawingBatch` holds many drawings as flat arrays (the layout of Arrow's
nested lists): per-drawing metadata, `stroke_start` offsets into strokes and
`point_start` offsets into points. Parsing fills these arrays in one pass and
every later step (filtering, splitting, writing, rasterizing) works on them
without building a Python object per drawing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DrawingBatch:
    """Drawings in columnar form; coordinates are uint8 (0-255, simplified)."""

    key_id: np.ndarray  # uint64 (n,)
    countrycode: np.ndarray  # uint8 (n, 2), ASCII, zero-padded
    recognized: np.ndarray  # uint8 (n,), 0 or 1
    timestamp: np.ndarray  # uint32 (n,), seconds since the epoch
    stroke_start: np.ndarray  # int64 (n + 1,), offsets into point_start
    point_start: np.ndarray  # int64 (n_strokes + 1,), offsets into x / y
    x: np.ndarray  # uint8 (n_points,)
    y: np.ndarray  # uint8 (n_points,)
    origin: np.ndarray  # int64 (n,), byte offset or line number of each record

    def __len__(self) -> int:
        return int(self.key_id.shape[0])

    @property
    def n_strokes(self) -> int:
        return int(self.point_start.shape[0] - 1)

    @property
    def n_points(self) -> int:
        return int(self.x.shape[0])

    def strokes(self, index: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The strokes of drawing `index` as (xs, ys) array pairs."""
        first, last = self.stroke_start[index], self.stroke_start[index + 1]
        result = []
        for stroke in range(first, last):
            a, b = self.point_start[stroke], self.point_start[stroke + 1]
            result.append((self.x[a:b], self.y[a:b]))
        return result

    def countrycode_str(self, index: int) -> str:
        return bytes(self.countrycode[index]).rstrip(b"\0").decode("ascii", "replace")

    def take(self, indices: np.ndarray | Sequence[int]) -> DrawingBatch:
        """A new batch holding the drawings at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        stroke_counts = np.diff(self.stroke_start)[indices]
        stroke_index = _ranges(self.stroke_start[indices], stroke_counts)
        point_counts = np.diff(self.point_start)[stroke_index]
        point_index = _ranges(self.point_start[stroke_index], point_counts)
        return DrawingBatch(
            key_id=self.key_id[indices],
            countrycode=self.countrycode[indices],
            recognized=self.recognized[indices],
            timestamp=self.timestamp[indices],
            stroke_start=_offsets(stroke_counts),
            point_start=_offsets(point_counts),
            x=self.x[point_index],
            y=self.y[point_index],
            origin=self.origin[indices],
        )

    @staticmethod
    def empty() -> DrawingBatch:
        return DrawingBatch(
            key_id=np.zeros(0, np.uint64),
            countrycode=np.zeros((0, 2), np.uint8),
            recognized=np.zeros(0, np.uint8),
            timestamp=np.zeros(0, np.uint32),
            stroke_start=np.zeros(1, np.int64),
            point_start=np.zeros(1, np.int64),
            x=np.zeros(0, np.uint8),
            y=np.zeros(0, np.uint8),
            origin=np.zeros(0, np.int64),
        )

    @staticmethod
    def concat(batches: Iterable[DrawingBatch]) -> DrawingBatch:
        parts = [b for b in batches if len(b)]
        if not parts:
            return DrawingBatch.empty()
        if len(parts) == 1:
            return parts[0]
        return DrawingBatch(
            key_id=np.concatenate([b.key_id for b in parts]),
            countrycode=np.concatenate([b.countrycode for b in parts]),
            recognized=np.concatenate([b.recognized for b in parts]),
            timestamp=np.concatenate([b.timestamp for b in parts]),
            stroke_start=_offsets(np.concatenate([np.diff(b.stroke_start) for b in parts])),
            point_start=_offsets(np.concatenate([np.diff(b.point_start) for b in parts])),
            x=np.concatenate([b.x for b in parts]),
            y=np.concatenate([b.y for b in parts]),
            origin=np.concatenate([b.origin for b in parts]),
        )

    @staticmethod
    def from_drawings(
        drawings: Sequence[Sequence[tuple[Sequence[int], Sequence[int]]]],
        key_ids: Sequence[int] | None = None,
        countrycodes: Sequence[str] | None = None,
        recognized: Sequence[bool] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> DrawingBatch:
        """Build a batch from Python lists (tests, synthetic data, ndjson)."""
        n = len(drawings)
        stroke_counts = np.fromiter((len(d) for d in drawings), np.int64, n)
        strokes = [stroke for drawing in drawings for stroke in drawing]
        point_counts = np.fromiter((len(s[0]) for s in strokes), np.int64, len(strokes))
        if strokes:
            x = np.concatenate([np.asarray(s[0], dtype=np.int64) for s in strokes])
            y = np.concatenate([np.asarray(s[1], dtype=np.int64) for s in strokes])
        else:
            x = y = np.zeros(0, np.int64)
        codes = np.zeros((n, 2), np.uint8)
        for i, code in enumerate(countrycodes or ()):
            raw = code.encode("ascii")[:2]
            codes[i, : len(raw)] = np.frombuffer(raw, np.uint8)
        return DrawingBatch(
            key_id=np.asarray(key_ids if key_ids is not None else np.arange(n), np.uint64),
            countrycode=codes,
            recognized=np.asarray(recognized if recognized is not None else np.ones(n), np.uint8),
            timestamp=np.asarray(timestamps if timestamps is not None else np.zeros(n), np.uint32),
            stroke_start=_offsets(stroke_counts),
            point_start=_offsets(point_counts),
            x=x.astype(np.uint8),
            y=y.astype(np.uint8),
            origin=np.arange(n, dtype=np.int64),
        )

    def equals(self, other: DrawingBatch) -> bool:
        """Same drawings and metadata (the `origin` column is not compared)."""
        names = ("key_id", "countrycode", "recognized", "timestamp", "stroke_start", "point_start", "x", "y")
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in names)


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.shape[0] + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), vectorized."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    repeated_starts = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + repeated_starts
