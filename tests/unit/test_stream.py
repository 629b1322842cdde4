"""Batches read from .npy files by pread equal fancy indexing, in every pattern of rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quickdraw_dag.data.stream import MemmapBatches, open_split, read_rows
from tests.helpers import catalog_of


def test_read_rows_matches_indexing(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (500, 28, 28), dtype=np.uint8)
    catalog = catalog_of(tmp_path, processed=tmp_path)
    np.save(catalog.images("train"), images)
    np.save(catalog.labels("train"), (np.arange(500) % 7).astype(np.int16))
    mapped, labels = open_split(catalog, "train")
    patterns = [
        np.array([0, 1, 2, 5, 7, 8, 499]),
        np.arange(100, 228),
        np.array([], np.int64),
        np.sort(np.random.default_rng(1).choice(500, 64, replace=False)),
        np.array([499]),
    ]
    for rows in patterns:
        np.testing.assert_array_equal(read_rows(mapped, rows), images[rows])
    np.testing.assert_array_equal(read_rows(images, patterns[0]), images[patterns[0]])  # in-memory arrays too
    batches = MemmapBatches(mapped, labels, batch_size=64, shuffle=True, seed=3)
    seen = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert sorted(seen.tolist()) == sorted((np.arange(500) % 7).tolist())
    x, y = batches[2]
    assert x.shape == (64, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int32
