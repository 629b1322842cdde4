"""split: disjoint, stratified, stable, deterministic; dedupe, filter and cap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import SPLITS, Catalog
from quickdraw_dag.config.schema import DataParams, FetchParams, SplitFractions, SplitParams
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats import DrawingBatch, raw_file_name, read_binary
from quickdraw_dag.data.formats.binary import encode_binary
from tasks.fetch import fetch
from tasks.split import assign_splits, split
from tests.helpers import catalog_of, tree_digest


def ids_in(catalog: Catalog, category: str) -> dict[str, np.ndarray]:
    out = {}
    for name in SPLITS:
        path = catalog.shard(name, category, "strokes")
        if path.exists():
            out[name] = read_binary(path).key_id
        else:
            out[name] = np.load(catalog.shard(name, category, "key_ids"), allow_pickle=False)
    return out


def at(tmp_path: Path, interim: str = "interim") -> Catalog:
    """The shared raw folder, with split's output in `tmp_path/interim`."""
    return catalog_of(tmp_path, interim=tmp_path / interim)


def write_raw(catalog: Catalog, category: str, batch: DrawingBatch) -> None:
    """A raw dir as fetch leaves it, written directly (tests of split alone)."""
    catalog.raw.mkdir(parents=True, exist_ok=True)
    name = raw_file_name(category, "binary")
    catalog.raw_file(name).write_bytes(encode_binary(batch))
    manifest = json.loads(catalog.manifest.read_text()) if catalog.manifest.exists() else {"categories": {}}
    manifest["categories"][category] = {"file": name, "format": "binary"}
    catalog.manifest.write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def circles() -> DrawingBatch:
    return synthetic.generate("circle", 1500, seed=11)


def test_assignment_is_stratified_to_within_two_drawings() -> None:
    for n in (10, 101, 1000, 25_000):
        ids = np.random.default_rng(n).integers(0, 2**63, n, dtype=np.uint64)
        splits = assign_splits(ids, [0.8, 0.1, 0.1], seed=0)
        for index, share in enumerate([0.8, 0.1, 0.1]):
            assert abs((splits == index).sum() - share * n) <= 2


def test_assignment_mostly_follows_the_hash() -> None:
    ids = np.arange(20_000, dtype=np.uint64)
    a = assign_splits(ids, [0.8, 0.1, 0.1], seed=0)
    b = assign_splits(ids, [0.8, 0.1, 0.1], seed=1)
    assert (a != b).mean() > 0.2  # the seed matters: assignment is by hash, not position


def test_splits_are_disjoint_sized_and_complete(tmp_path: Path, circles: DrawingBatch) -> None:
    squares = synthetic.generate("square", 1200, seed=12)
    write_raw(at(tmp_path), "circle", circles)
    write_raw(at(tmp_path), "square", squares)
    data = DataParams(source="synthetic", categories=("circle", "square"))
    params = SplitParams(fractions=SplitFractions(train=0.7, val=0.15, test=0.15))
    summary = split(data, params, at(tmp_path, "interim"))
    for category, batch in (("circle", circles), ("square", squares)):
        ids = ids_in(at(tmp_path, "interim"), category)
        sets = {name: set(v.tolist()) for name, v in ids.items()}
        assert (
            not (sets["train"] & sets["val"])
            and not (sets["train"] & sets["test"])
            and not (sets["val"] & sets["test"])
        )
        kept = batch.key_id[batch.recognized == 1]
        assert set().union(*sets.values()) == set(kept.tolist())
        total = len(kept)
        assert total >= 1000
        for name, share in params.fractions.as_dict().items():
            assert abs(len(sets[name]) / total - share) <= 0.01
            assert summary["classes"][category]["counts"][name] == len(sets[name])
        assert summary["classes"][category]["dropped"]["unrecognized"] == int((batch.recognized == 0).sum())
    on_disk = json.loads(at(tmp_path).split_summary.read_text())
    assert on_disk["totals"] == summary["totals"]


def test_outputs_are_byte_identical_across_runs(tmp_path: Path, circles: DrawingBatch) -> None:
    write_raw(at(tmp_path), "circle", circles)
    write_raw(at(tmp_path), "line", synthetic.generate("line", 300, seed=2))
    data = DataParams(source="synthetic", categories=("circle", "line"))
    split(data, SplitParams(), at(tmp_path, "a"))
    split(data, SplitParams(), at(tmp_path, "b"))
    first, second = tree_digest(at(tmp_path, "a").interim), tree_digest(at(tmp_path, "b").interim)
    assert first == second and len(first) == 7


def test_appending_drawings_never_moves_existing_ones(tmp_path: Path, circles: DrawingBatch) -> None:
    data = DataParams(source="synthetic", categories=("circle", "line"))
    lines = synthetic.generate("line", 200, seed=5)
    write_raw(at(tmp_path), "line", lines)
    write_raw(at(tmp_path), "circle", circles.take(np.arange(1000)))
    split(data, SplitParams(), at(tmp_path, "before"))
    write_raw(at(tmp_path), "circle", circles)  # 500 more drawings appended
    split(data, SplitParams(), at(tmp_path, "after"))
    before, after = ids_in(at(tmp_path, "before"), "circle"), ids_in(at(tmp_path, "after"), "circle")
    for name in SPLITS:
        assert set(before[name].tolist()) <= set(after[name].tolist())
        assert np.array_equal(after[name][: len(before[name])], before[name])


def test_duplicates_dropped_filter_and_cap(tmp_path: Path, circles: DrawingBatch) -> None:
    base = circles.take(np.arange(100))
    doubled = DrawingBatch.concat([base, base.take(np.arange(30))])
    write_raw(at(tmp_path), "circle", doubled)
    write_raw(at(tmp_path), "line", synthetic.generate("line", 50, seed=5))
    data = DataParams(source="synthetic", categories=("circle", "line"))
    summary = split(data, SplitParams(recognized_only=False), at(tmp_path, "all"))
    assert summary["classes"]["circle"]["dropped"]["duplicates"] == 30
    assert sum(summary["classes"]["circle"]["counts"].values()) == 100
    capped = split(data, SplitParams(max_per_class=40), at(tmp_path, "cap"))
    assert sum(capped["classes"]["circle"]["counts"].values()) == 40
    kept = base.key_id[base.recognized == 1][:40]
    got = np.concatenate(list(ids_in(at(tmp_path, "cap"), "circle").values()))
    assert set(got.tolist()) == set(kept.tolist())


def test_bitmap_sources_split_with_derived_ids(tmp_path: Path) -> None:
    source = tmp_path / "google"
    source.mkdir()
    images = {
        c: np.random.default_rng(i).integers(0, 256, (1000, 784), dtype=np.uint8) for i, c in enumerate(["cat", "dog"])
    }
    for category, array in images.items():
        np.save(source / f"full_numpy_bitmap_{category}.npy", array)
    data = DataParams(source=str(source), categories=("cat", "dog"))
    manifest = fetch(data, FetchParams(), at(tmp_path))
    assert manifest["categories"]["cat"]["format"] == "numpy_bitmap"
    summary = split(data, SplitParams(), at(tmp_path, "interim"))
    rows = {name: np.load(at(tmp_path).shard(name, "cat", "bitmaps"), allow_pickle=False) for name in SPLITS}
    assert sum(r.shape[0] for r in rows.values()) == 1000
    assert summary["classes"]["cat"]["counts"]["train"] == rows["train"].shape[0]
    assert abs(rows["train"].shape[0] - 800) <= 2
    every_row = np.concatenate(list(rows.values()))
    assert len({r.tobytes() for r in every_row}) == 1000  # every source row exactly once
    assert {r.tobytes() for r in every_row} == {r.tobytes() for r in images["cat"]}


def test_split_on_real_samples_is_disjoint(tmp_path: Path, samples: Path) -> None:
    data = DataParams(source=str(samples / "simplified"), categories=("bear", "duck", "frog"))
    fetch(data, FetchParams(), at(tmp_path))
    summary = split(data, SplitParams(recognized_only=False), at(tmp_path, "interim"))
    for category in data.categories:
        ids = ids_in(at(tmp_path, "interim"), category)
        all_ids = np.concatenate(list(ids.values()))
        assert len(all_ids) == len(set(all_ids.tolist())) == 25
        counts = summary["classes"][category]["counts"]
        assert {name: len(ids[name]) for name in SPLITS} == counts
        assert abs(counts["train"] - 20) <= 2 and counts["val"] >= 1 and counts["test"] >= 1
