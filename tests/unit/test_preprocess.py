"""preprocess: arrays, labels, scaling from train only, pass-through, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import SPLITS, Catalog, read_categories
from quickdraw_dag.config.schema import DataParams, FetchParams, PreprocessParams, SplitParams
from quickdraw_dag.data.formats import read_binary
from quickdraw_dag.data.raster import rasterize
from quickdraw_dag.runtime.fanout import process_map, serial_map
from tasks.fetch import fetch
from tasks.preprocess import preprocess, scaling_from_histogram
from tasks.split import split
from tests.helpers import catalog_of, tree_digest


def test_outputs_memory_map_with_labels_in_category_order(tiny_processed: Catalog) -> None:
    assert read_categories(tiny_processed) == ["circle", "square", "line"]
    for split_name in SPLITS:
        images = np.load(tiny_processed.images(split_name), mmap_mode="r", allow_pickle=False)
        labels = np.load(tiny_processed.labels(split_name), allow_pickle=False)
        assert isinstance(images, np.memmap) and images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.shape == (images.shape[0],) and set(np.unique(labels)) == {0, 1, 2}
        assert np.all(np.diff(labels) >= 0)  # grouped by class in data.categories order
    # the first training square is exactly the rasterized first square of the train shard
    first_square = read_binary(tiny_processed.shard("train", "square", "strokes")).take([0])
    train_images = np.load(tiny_processed.images("train"))
    train_labels = np.load(tiny_processed.labels("train"))
    assert np.array_equal(train_images[np.flatnonzero(train_labels == 1)[0]], rasterize(first_square, 28)[0])


def test_scaling_uses_the_training_split_only(tiny_processed: Catalog) -> None:
    scaling = json.loads(tiny_processed.scaling.read_text())
    train = np.load(tiny_processed.images("train")).astype(float)
    assert scaling["stats"]["mean"] == pytest.approx(train.mean())
    assert scaling["stats"]["std"] == pytest.approx(train.std())
    assert scaling["stats"]["pixels"] == train.size


@pytest.mark.parametrize("method", ["minmax", "zscore", "robust"])
def test_scaling_formulas(method: str) -> None:
    values = np.concatenate([np.zeros(800), np.full(150, 100), np.full(50, 255)]).astype(np.uint8)
    counts = np.bincount(values, minlength=256)
    result = scaling_from_histogram(method, counts)
    scaled = values * result["scale"] + result["offset"]
    if method == "minmax":
        assert scaled.min() == pytest.approx(0) and scaled.max() == pytest.approx(1)
    elif method == "zscore":
        assert scaled.mean() == pytest.approx(0, abs=1e-9) and scaled.std() == pytest.approx(1)
    else:
        # IQR is 0 here (mostly background), so the 1st-99th percentile range is used
        assert "note" in result and np.median(scaled) == pytest.approx(0)
        assert result["scale"] == pytest.approx(1 / 255)


def test_bitmaps_pass_through_untouched_and_resize_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "google"
    source.mkdir()
    rng = np.random.default_rng(0)
    arrays = {c: rng.integers(0, 256, (200, 784), dtype=np.uint8) for c in ("cat", "dog")}
    for category, array in arrays.items():
        np.save(source / f"{category}.npy", array)
    data = DataParams(source=str(source), categories=("cat", "dog"))
    catalog = catalog_of(tmp_path, processed=tmp_path / "p28")
    fetch(data, FetchParams(), catalog)
    split(data, SplitParams(), catalog)
    preprocess(data, PreprocessParams(), catalog, serial_map)
    every = np.concatenate([np.load(catalog.images(s)) for s in SPLITS])
    assert {r.tobytes() for r in every.reshape(-1, 784)} == {r.tobytes() for a in arrays.values() for r in a}
    small = catalog_of(tmp_path, processed=tmp_path / "p14")
    preprocess(data, PreprocessParams(image_size=14), small, serial_map)
    assert np.load(small.images("train")).shape[1:] == (14, 14)


def test_parallel_and_repeated_runs_are_byte_identical(tmp_path: Path, tiny_processed: Catalog) -> None:
    data = DataParams(source="synthetic", categories=("circle", "square", "line"))
    parallel = catalog_of(tmp_path, interim=tiny_processed.interim, processed=tmp_path / "parallel")
    preprocess(data, PreprocessParams(), parallel, process_map(2))
    assert tree_digest(parallel.processed) == tree_digest(tiny_processed.processed)


def test_missing_split_output_is_a_clear_error(tmp_path: Path) -> None:
    from quickdraw_dag.errors import DataError

    with pytest.raises(DataError, match="run the split stage first"):
        preprocess(
            DataParams(source="synthetic", categories=("circle", "line")), PreprocessParams(), catalog_of(tmp_path)
        )
    assert not (tmp_path / "processed").exists()
