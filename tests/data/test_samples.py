"""The real sample that ships in samples/quickdraw: what its README promises, and how fetch reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quickdraw_dag.config.schema import DataParams, FetchParams
from quickdraw_dag.data.formats import find_local_file, open_bitmaps
from tasks.fetch import fetch
from tests.helpers import SAMPLE_CATEGORIES, catalog_of


def test_the_sample_holds_1000_bitmaps_and_25_drawings_of_each_category(samples: Path) -> None:
    for category in SAMPLE_CATEGORIES:
        bitmaps = open_bitmaps(samples / "numpy_bitmap" / f"{category}.npy")
        assert bitmaps.shape == (1000, 784) and bitmaps.dtype == np.uint8
        assert 0 < np.asarray(bitmaps).mean() < 64  # white strokes on a black background
        records = [json.loads(line) for line in (samples / "simplified" / f"{category}.ndjson").read_text().splitlines()]
        assert len(records) == 25 and {r["word"] for r in records} == {category}
        assert len({r["key_id"] for r in records}) == 25
    assert sorted(p.stem for p in (samples / "numpy_bitmap").glob("*.npy")) == list(SAMPLE_CATEGORIES)
    assert "Creative Commons Attribution 4.0" in (samples / "README.md").read_text()


def test_auto_takes_the_format_with_the_most_drawings_from_googles_folders(samples: Path) -> None:
    path, fmt = find_local_file(samples, "bear")
    assert (path, fmt) == (samples / "numpy_bitmap" / "bear.npy", "numpy_bitmap")  # 1,000 bitmaps over 25 strokes
    assert find_local_file(samples, "bear", "simplified") == (samples / "simplified" / "bear.ndjson", "simplified")
    assert find_local_file(samples, "bear", "raw") is None


def test_fetch_reads_the_sample_as_the_default_source(samples: Path, tmp_path: Path) -> None:
    data = DataParams(source=str(samples), categories=("bear", "duck"))
    manifest = fetch(data, FetchParams(), catalog_of(tmp_path))
    assert {c: e["drawings"] for c, e in manifest["categories"].items()} == {"bear": 1000, "duck": 1000}
    assert manifest["categories"]["bear"]["origin"] == str(samples / "numpy_bitmap" / "bear.npy")
    strokes = fetch(data, FetchParams(local_format="simplified"), catalog_of(tmp_path / "strokes"))
    assert {c: e["format"] for c, e in strokes["categories"].items()} == {"bear": "simplified", "duck": "simplified"}
