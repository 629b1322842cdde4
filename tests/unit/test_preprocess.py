"""preprocess: arrays, labels, scaling from train only, pass-through, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.config import DataParams, FetchParams, PreprocessParams, SplitParams
from quickdraw_dag.formats import read_binary
from quickdraw_dag.raster import rasterize
from tasks.fetch import fetch
from tasks.preprocess import preprocess, scaling_from_histogram
from tasks.split import split
from tests.conftest import tree_digest


def test_outputs_memory_map_with_labels_in_category_order(tiny_processed: Path) -> None:
    labels_json = json.loads((tiny_processed / "labels.json").read_text())
    assert labels_json["categories"] == ["circle", "square", "line"]
    for split_name in ("train", "val", "test"):
        images = np.load(tiny_processed / f"{split_name}_images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(tiny_processed / f"{split_name}_labels.npy", allow_pickle=False)
        assert isinstance(images, np.memmap) and images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.shape == (images.shape[0],) and set(np.unique(labels)) == {0, 1, 2}
        assert np.all(np.diff(labels) >= 0)  # grouped by class in data.categories order
    # the first training square is exactly the rasterized first square of the train shard
    interim = tiny_processed.parent / "interim"
    first_square = read_binary(interim / "train" / "square.bin").take([0])
    train_images = np.load(tiny_processed / "train_images.npy")
    train_labels = np.load(tiny_processed / "train_labels.npy")
    assert np.array_equal(train_images[np.flatnonzero(train_labels == 1)[0]], rasterize(first_square, 28)[0])


def test_scaling_uses_the_training_split_only(tiny_processed: Path) -> None:
    scaling = json.loads((tiny_processed / "scaling.json").read_text())
    train = np.load(tiny_processed / "train_images.npy").astype(float)
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
    fetch(data, FetchParams(), tmp_path / "raw")
    split(data, SplitParams(), tmp_path / "raw", tmp_path / "interim")
    preprocess(data, PreprocessParams(workers=1), tmp_path / "interim", tmp_path / "p28")
    every = np.concatenate([np.load(tmp_path / "p28" / f"{s}_images.npy") for s in ("train", "val", "test")])
    assert {r.tobytes() for r in every.reshape(-1, 784)} == {r.tobytes() for a in arrays.values() for r in a}
    preprocess(data, PreprocessParams(image_size=14, workers=1), tmp_path / "interim", tmp_path / "p14")
    assert np.load(tmp_path / "p14" / "train_images.npy").shape[1:] == (14, 14)


def test_parallel_and_repeated_runs_are_byte_identical(tmp_path: Path, tiny_processed: Path) -> None:
    interim = tiny_processed.parent / "interim"
    data = DataParams(source="synthetic", categories=("circle", "square", "line"))
    preprocess(data, PreprocessParams(workers=2), interim, tmp_path / "parallel")
    assert tree_digest(tmp_path / "parallel") == tree_digest(tiny_processed)


def test_missing_split_output_is_a_clear_error(tmp_path: Path) -> None:
    from quickdraw_dag.errors import DataError

    with pytest.raises(DataError, match="run the split stage first"):
        preprocess(DataParams(source="synthetic", categories=("circle", "line")), PreprocessParams(),
                   tmp_path / "interim", tmp_path / "processed")
    assert not (tmp_path / "processed").exists()
