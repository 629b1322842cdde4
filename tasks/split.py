"""split: dedupe, filter, and assign every drawing to train, val or test.

Per category, in file order:

1. duplicate `key_id`s are dropped (the first occurrence stays); numpy_bitmap
   rows carry no id, so one is derived from the category and row index;
2. with `split.recognized_only`, drawings the game did not recognize go;
3. `split.max_per_class` keeps the first N that remain;
4. each drawing goes to the split its `key_id` hashes to, unless that split
   is already one drawing over its share of the class, in which case it goes
   to the split furthest below its share. Assignment depends only on the
   drawing's id and the drawings before it, so appending drawings never
   moves an existing one, and every class matches the fractions to within
   two drawings (stratified).

Writes one shard per split and category (`Catalog.shard`: strokes in
Google's binary format, or bitmaps with their key_ids) and the split summary
(counts per class and split, what was dropped and why). The whole directory
is swapped in atomically, and only when every class has at least
`split.min_per_split` drawings in each split: an empty validation or test
class would train silently and report a meaningless score.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

from quickdraw_dag.artifacts import SPLITS, Catalog, ClassSplit, SplitSummary, read_manifest, write_split_summary
from quickdraw_dag.config.schema import DataParams, Params, SplitParams
from quickdraw_dag.data.formats import iter_drawings, open_bitmaps
from quickdraw_dag.data.formats.binary import write_binary
from quickdraw_dag.data.formats.bitmap import BITMAP_PIXELS, derived_key_ids
from quickdraw_dag.data.hashing import unit_interval
from quickdraw_dag.errors import DataError
from quickdraw_dag.runtime.atomic import atomic_directory
from quickdraw_dag.runtime.cli import run_entry_point
from quickdraw_dag.runtime.diskspace import ensure_free, reserve
from quickdraw_dag.runtime.fanout import Mapper, serial_map
from quickdraw_dag.runtime.memory import bound_heap_growth
from quickdraw_dag.tracking.session import data_stage

log = logging.getLogger(__name__)
BITMAP_ROWS_PER_COPY = 16384


@numba.njit(cache=True)
def _assign_balanced(preferred: np.ndarray, fractions: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Follow `preferred` unless that split would go over its share by more than one."""
    n = preferred.shape[0]
    k = fractions.shape[0]
    counts = np.zeros(k, np.float64)
    out = np.empty(n, np.int8)
    for i in range(n):
        choice = preferred[i]
        if counts[choice] > fractions[choice] * (i + 1):
            best = 0
            best_deficit = -1e300
            for s in range(k):
                deficit = fractions[s] * (i + 1) - counts[s]
                if deficit > best_deficit:
                    best = s
                    best_deficit = deficit
            choice = best
        counts[choice] += 1
        out[i] = choice
    return out


def assign_splits(key_ids: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of each drawing, in file order."""
    shares = np.asarray(fractions, dtype=np.float64)
    position = unit_interval(key_ids, seed)
    preferred = np.searchsorted(np.cumsum(shares)[:-1], position, side="right").astype(np.int8)
    return _assign_balanced(preferred, shares)


def select(
    key_ids: np.ndarray, recognized: np.ndarray, params: SplitParams
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Indices kept (file order), their split, and counts of what was dropped."""
    order = np.arange(key_ids.shape[0])
    _, first = np.unique(key_ids, return_index=True)
    unique = np.zeros(key_ids.shape[0], bool)
    unique[first] = True
    keep = unique.copy()
    if params.recognized_only:
        keep &= recognized.astype(bool)
    kept = order[keep]
    over_cap = 0
    if params.max_per_class is not None and kept.shape[0] > params.max_per_class:
        over_cap = int(kept.shape[0] - params.max_per_class)
        kept = kept[: params.max_per_class]
    splits = assign_splits(key_ids[kept], list(params.fractions.as_dict().values()), params.seed)
    dropped = {
        "duplicates": int((~unique).sum()),
        "unrecognized": int((unique & ~recognized.astype(bool)).sum()) if params.recognized_only else 0,
        "over_cap": over_cap,
    }
    return kept, splits, dropped


def split_strokes(
    path: Path, fmt: str, category: str, data: DataParams, params: SplitParams, catalog: Catalog, out_dir: Path
) -> ClassSplit:
    stats: dict[str, int] = {}
    ids, flags = [], []
    # Pass 1: ids and flags only, so memory stays small for big files.
    for batch in iter_drawings(path, fmt, category=category, on_bad_record=data.on_bad_record, stats=stats):
        ids.append(batch.key_id)
        flags.append(batch.recognized)
    key_ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    recognized = np.concatenate(flags) if flags else np.zeros(0, np.uint8)
    kept, splits, dropped = select(key_ids, recognized, params)
    destination = np.full(key_ids.shape[0], -1, np.int8)
    destination[kept] = splits
    # Pass 2: stream again and append each drawing to its split's shard.
    # three files open at once, closed together in `finally`
    handles = {name: open(catalog.shard(name, category, "strokes", out_dir), "wb") for name in SPLITS}  # noqa: SIM115
    try:
        seen = 0
        for batch in iter_drawings(path, fmt, category=category, on_bad_record=data.on_bad_record):
            where = destination[seen : seen + len(batch)]
            for index, name in enumerate(SPLITS):
                chosen = np.flatnonzero(where == index)
                if chosen.size:
                    write_binary(handles[name], batch.take(chosen))
            seen += len(batch)
    finally:
        for handle in handles.values():
            handle.close()
    dropped["bad_records"] = stats.get("skipped", 0)
    return _summary(splits, dropped, "binary")


def split_bitmaps(path: Path, category: str, params: SplitParams, catalog: Catalog, out_dir: Path) -> ClassSplit:
    images = open_bitmaps(path)
    key_ids = derived_key_ids(category, images.shape[0])
    recognized = np.ones(images.shape[0], np.uint8)  # bitmaps carry no flag
    kept, splits, dropped = select(key_ids, recognized, params)
    for index, name in enumerate(SPLITS):
        rows = kept[splits == index]
        target = catalog.shard(name, category, "bitmaps", out_dir)
        np.save(catalog.shard(name, category, "key_ids", out_dir), key_ids[rows], allow_pickle=False)
        if rows.size == 0:
            np.save(target, np.zeros((0, BITMAP_PIXELS), np.uint8), allow_pickle=False)
            continue
        shard = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(rows.size, BITMAP_PIXELS))
        reserve(target, target.stat().st_size)  # no SIGBUS from writing through the map on a full disk
        for start in range(0, rows.size, BITMAP_ROWS_PER_COPY):
            chunk = rows[start : start + BITMAP_ROWS_PER_COPY]
            shard[start : start + chunk.size] = images[chunk]
        shard.flush()
        del shard
    dropped["bad_records"] = 0
    return _summary(splits, dropped, "numpy_bitmap")


def _summary(splits: np.ndarray, dropped: dict[str, int], fmt: str) -> ClassSplit:
    counts = {name: int((splits == index).sum()) for index, name in enumerate(SPLITS)}
    return {"counts": counts, "dropped": dropped, "format": fmt}


def split_category(
    category: str, entry: dict[str, Any], catalog: Catalog, data: DataParams, params: SplitParams, out_dir: Path
) -> ClassSplit:
    """Split one category's fetched file into its shards under `out_dir` (the interim folder being built)."""
    path = catalog.raw_file(entry["file"])
    if entry["format"] == "numpy_bitmap":
        summary = split_bitmaps(path, category, params, catalog, out_dir)
    else:
        summary = split_strokes(path, entry["format"], category, data, params, catalog, out_dir)
    log.info("split: %s %s", category, summary["counts"])
    return summary


def too_few(per_class: dict[str, ClassSplit], minimum: int) -> list[str]:
    """'circle: train 2, val 0, test 0 (...)' for each class below `minimum` in some split."""
    lines = []
    for category, summary in per_class.items():
        counts = summary["counts"]
        if min(counts.values()) < minimum:
            reasons = {"over_cap": "over split.max_per_class", "bad_records": "bad records"}
            dropped = ", ".join(f"{n} {reasons.get(why, why)}" for why, n in summary["dropped"].items() if n)
            shown = ", ".join(f"{name} {counts[name]}" for name in SPLITS)
            lines.append(f"{category}: {shown}{f' (dropped: {dropped})' if dropped else ''}")
    return lines


def split(data: DataParams, params: SplitParams, catalog: Catalog, mapper: Mapper = serial_map) -> SplitSummary:
    """Run the split stage; returns the split summary."""
    manifest = read_manifest(catalog)
    missing = [c for c in data.categories if c not in manifest.get("categories", {})]
    if missing:
        raise DataError(
            f"no fetched data for {missing}: run the fetch stage for these categories first",
            path=catalog.manifest,
        )
    # Shards are subsets of the fetched files (bitmaps and binary strokes: at most their size).
    entries = [manifest["categories"][c] for c in data.categories]
    needed = sum(int(e.get("bytes", 0)) for e in entries if e.get("format") in ("binary", "numpy_bitmap"))
    ensure_free(catalog.interim.parent, needed, "split")
    with atomic_directory(catalog.interim, owns=catalog.owns("interim")) as out_dir:
        for name in SPLITS:
            (out_dir / name).mkdir()
        jobs = [(c, manifest["categories"][c], catalog, data, params, out_dir) for c in data.categories]
        per_class = dict(zip(data.categories, mapper(split_category, jobs, "split")))
        short = too_few(per_class, params.min_per_split)
        if short:
            shown = "; ".join(short[:10]) + (f"; and {len(short) - 10} more" if len(short) > 10 else "")
            raise DataError(
                f"every class needs at least split.min_per_split={params.min_per_split} drawing(s) in each of "
                f"train, val and test; too few: {shown}. Add drawings, or raise or remove split.max_per_class",
                path=catalog.manifest,
            )
        summary: SplitSummary = {
            "fractions": params.fractions.as_dict(),
            "seed": params.seed,
            "recognized_only": params.recognized_only,
            "max_per_class": params.max_per_class,
            "categories": list(data.categories),
            "classes": per_class,
            "totals": {name: sum(c["counts"][name] for c in per_class.values()) for name in SPLITS},
        }
        write_split_summary(out_dir / catalog.split_summary.name, summary)
    log.info("split: totals %s", summary["totals"])
    return summary


def run(params: Params, mapper: Mapper = serial_map) -> SplitSummary:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    with data_stage("split"):  # marks the pipeline run's start under dvc repro; no MLflow here
        return split(params.data, params.split, Catalog.from_paths(params.paths), mapper)


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.split", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    bound_heap_growth()  # this process only: flat memory however big the files (quickdraw_dag.runtime.memory)
    sys.exit(main())
