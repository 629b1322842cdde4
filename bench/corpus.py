"""Benchmark corpora: realistic drawings, many of them, built offline."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats import DrawingBatch, iter_drawings
from quickdraw_dag.data.hashing import splitmix64

SHARED_SIMPLIFIED = Path(os.environ.get("QUICKDRAW_SHARED", "../shared/data/quickdraw")) / "simplified"


def seed_drawings() -> tuple[DrawingBatch, str]:
    """Real drawings from ../shared when present, else synthetic ones."""
    files = sorted(glob.glob(str(SHARED_SIMPLIFIED / "*.ndjson")))
    if files:
        batches = [b for f in files for b in iter_drawings(f, "simplified")]
        return DrawingBatch.concat(batches), f"{len(files)} real categories from {SHARED_SIMPLIFIED}"
    shapes = ["circle", "square", "star", "zigzag", "moon", "hexagon"]
    return DrawingBatch.concat(synthetic.generate(s, 500) for s in shapes), "synthetic doodles"


def tiled(seed: DrawingBatch, count: int) -> DrawingBatch:
    """`count` drawings by repeating `seed`, each with its own key_id."""
    index = np.resize(np.arange(len(seed)), count)
    batch = seed.take(index)
    fresh = splitmix64(np.arange(count, dtype=np.uint64))
    return DrawingBatch(**{**batch.__dict__, "key_id": fresh})
