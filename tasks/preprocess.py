"""preprocess: rasterize each split into memory-mappable uint8 arrays, and scale.

Stroke shards are rasterized anti-aliased at `preprocess.image_size` with
`preprocess.line_width`, numpy_bitmap style (`quickdraw_dag.data.raster`);
numpy_bitmap shards pass through, resized only when the size differs.
Each split's images (uint8 N×H×W) and labels are allocated at their final
size first (rows in `data.categories` order, counts from the split summary);
one job per category then rasterizes straight into its own rows, so
categories run in parallel (processes, threads or Dask) and write the same
bytes in any order. The scaling (`minmax`, `zscore` or `robust`) is computed
from the training split only and applied by a layer inside the model, so
there is no train/serve skew.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_dag.artifacts import SPLITS, Catalog, read_split_summary, write_label_names
from quickdraw_dag.config.schema import DataParams, Params, PreprocessParams
from quickdraw_dag.data.formats.binary import iter_binary
from quickdraw_dag.data.formats.bitmap import BITMAP_SIDE
from quickdraw_dag.data.raster import rasterize, resize_bitmaps
from quickdraw_dag.errors import DataError
from quickdraw_dag.runtime.atomic import atomic_directory, write_json_atomic
from quickdraw_dag.runtime.cli import run_entry_point
from quickdraw_dag.runtime.diskspace import ensure_free, reserve
from quickdraw_dag.runtime.fanout import Mapper, default_workers, process_map
from quickdraw_dag.runtime.memory import bound_heap_growth
from quickdraw_dag.tracking.session import data_stage

log = logging.getLogger(__name__)
COPY_ROWS = 16384


def preprocess_category(
    category: str,
    fmt: str,
    counts: dict[str, int],
    catalog: Catalog,
    out_dir: Path,
    starts: dict[str, int],
    image_size: int,
    line_width: float,
) -> dict[str, Any]:
    """Write this category's rows of every split's image array (in `out_dir`), at `starts[split]`.

    The arrays exist already (created by `preprocess` with their final size);
    each job fills only its own slice, so jobs run in any order, in any
    process, and the bytes are the same. Returns the counts and the training
    pixel histogram (for scaling), so nothing is re-read afterwards.
    """
    written: dict[str, Any] = {}
    histogram = np.zeros(256, np.int64)
    for split in SPLITS:
        expected = counts[split]
        written[split] = expected
        if expected == 0:
            continue
        out = np.load(catalog.images(split, out_dir), mmap_mode="r+", allow_pickle=False)
        at, filled = starts[split], 0
        if fmt == "numpy_bitmap":
            source = catalog.shard(split, category, "bitmaps")
            rows = np.load(source, mmap_mode="r", allow_pickle=False)
            chunks = (
                resize_bitmaps(np.asarray(rows[i : i + COPY_ROWS]).reshape(-1, BITMAP_SIDE, BITMAP_SIDE), image_size)
                for i in range(0, rows.shape[0], COPY_ROWS)
            )
        else:
            source = catalog.shard(split, category, "strokes")
            chunks = (rasterize(batch, image_size, line_width) for batch in iter_binary(source))
        for images in chunks:
            if filled + images.shape[0] > expected:
                raise DataError(f"more drawings than the split summary says ({expected})", path=source)
            out[at + filled : at + filled + images.shape[0]] = images
            if split == "train":
                histogram += np.bincount(images.ravel(), minlength=256)
            filled += images.shape[0]
        out.flush()
        del out
        if filled != expected:
            raise DataError(f"{filled} drawings, the split summary says {expected}", path=source)
    written["train_histogram"] = histogram.tolist()
    return written


def allocate_split(target: Path, total: int, image_size: int) -> None:
    """The split's image array at its final size, its blocks reserved on disk (filled by the category jobs).

    Reserved, not sparse: the jobs write through memory maps, and a write
    through a map that finds the disk full is a SIGBUS, not an error.
    """
    if total == 0:
        np.save(target, np.zeros((0, image_size, image_size), np.uint8), allow_pickle=False)
    else:
        np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(total, image_size, image_size)).flush()
        reserve(target, target.stat().st_size)


def output_bytes(totals: dict[str, int], image_size: int) -> int:
    """What the processed folder will take: uint8 images and int16 labels per split (headers and JSON aside)."""
    return sum(count * (image_size * image_size + 2) for count in totals.values())


def scaling_from_histogram(method: str, counts: np.ndarray) -> dict[str, Any]:
    """Scale and offset such that model input = pixel * scale + offset."""
    values = np.arange(256, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        raise DataError("the training split is empty: nothing to compute scaling from")
    present = np.flatnonzero(counts)
    low, high = float(present[0]), float(present[-1])
    mean = float((values * counts).sum() / total)
    std = float(np.sqrt(((values - mean) ** 2 * counts).sum() / total))
    cumulative = np.cumsum(counts) / total

    def quantile(q: float) -> float:
        return float(np.searchsorted(cumulative, q, side="left"))

    stats = {
        "min": low,
        "max": high,
        "mean": mean,
        "std": std,
        "median": quantile(0.5),
        "q1": quantile(0.25),
        "q3": quantile(0.75),
        "p01": quantile(0.01),
        "p99": quantile(0.99),
        "pixels": int(total),
    }
    note = None
    if method == "minmax":
        center, spread = low, high - low
    elif method == "zscore":
        center, spread = mean, std
    else:
        center, spread = stats["median"], stats["q3"] - stats["q1"]
        if spread == 0:
            # Doodles are mostly background: the IQR is often 0. Fall back to
            # the 1st–99th percentile range, still robust to outliers.
            spread = stats["p99"] - stats["p01"]
            note = "interquartile range is 0 (mostly background); used the 1st-99th percentile range"
    if spread <= 0:
        spread, note = 1.0, "all training pixels are equal; scale left at 1"
    result = {"method": method, "scale": 1.0 / spread, "offset": -center / spread + 0.0, "stats": stats}
    if note:
        result["note"] = note
    return result


def preprocess(
    data: DataParams, params: PreprocessParams, catalog: Catalog, mapper: Mapper | None = None
) -> dict[str, Any]:
    """Run the preprocess stage, one job per category; returns its summary.

    Without a `mapper`, categories run on `QUICKDRAW_WORKERS` processes (default: the CPU count).
    """
    classes = read_split_summary(catalog)["classes"]
    missing = [c for c in data.categories if c not in classes]
    if missing:
        raise DataError(f"no split data for {missing}: rerun split", path=catalog.split_summary)
    counts = {s: sum(classes[c]["counts"][s] for c in data.categories) for s in SPLITS}
    ensure_free(catalog.processed.parent, output_bytes(counts, params.image_size), "preprocess")
    with atomic_directory(catalog.processed, owns=catalog.owns("processed")) as out_dir:
        # Rows of each split in data.categories order: category i starts after categories < i.
        totals, starts = {}, {c: {} for c in data.categories}
        for split in SPLITS:
            at = 0
            for category in data.categories:
                starts[category][split] = at
                at += classes[category]["counts"][split]
            totals[split] = at
            allocate_split(catalog.images(split, out_dir), at, params.image_size)
            labels = np.concatenate(
                [np.full(classes[c]["counts"][split], i, np.int16) for i, c in enumerate(data.categories)]
            )
            np.save(catalog.labels(split, out_dir), labels, allow_pickle=False)
        jobs = [
            (
                c,
                classes[c]["format"],
                classes[c]["counts"],
                catalog,
                out_dir,
                starts[c],
                params.image_size,
                params.line_width,
            )
            for c in data.categories
        ]
        results = (mapper or process_map(default_workers()))(preprocess_category, jobs, "rasterize")
        histogram = np.sum([np.asarray(r.pop("train_histogram"), np.int64) for r in results], axis=0)
        scaling = scaling_from_histogram(params.scaling, histogram)
        # Written into the folder being built; each name comes from the catalog.
        write_json_atomic(out_dir / catalog.scaling.name, scaling)
        write_label_names(out_dir / catalog.label_names.name, data.categories, params.image_size, params.line_width)
        summary = {"counts": totals, "per_class": dict(zip(data.categories, results)), "image_size": params.image_size}
        write_json_atomic(out_dir / catalog.preprocess_summary.name, summary)
    log.info("preprocess: %s images at %dx%d, scaling %s", totals, params.image_size, params.image_size, params.scaling)
    return summary


def run(params: Params, mapper: Mapper | None = None) -> dict[str, Any]:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    with data_stage("preprocess"):  # marks the pipeline run's start under dvc repro; no MLflow here
        return preprocess(params.data, params.preprocess, Catalog.from_paths(params.paths), mapper)


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.preprocess", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    bound_heap_growth()  # this process only: flat memory however big the files (quickdraw_dag.runtime.memory)
    sys.exit(main())
