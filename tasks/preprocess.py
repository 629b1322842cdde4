"""preprocess: rasterize each split into memory-mappable uint8 arrays, and scale.

Stroke shards are rasterized anti-aliased at `preprocess.image_size` with
`preprocess.line_width`, numpy_bitmap style (`quickdraw_dag.raster`);
numpy_bitmap shards pass through, resized only when the size differs.
Categories are processed in parallel worker processes, then concatenated
into `<split>_images.npy` (uint8 N×H×W) and `<split>_labels.npy` in the
order of `data.categories`. `scaling.json` holds the chosen scaling
(`minmax`, `zscore` or `robust`) with statistics of the training split only;
the model applies it as a layer, so there is no train/serve skew.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from quickdraw_dag.atomic import atomic_directory, write_json_atomic
from quickdraw_dag.cli import run_entry_point
from quickdraw_dag.config import DataParams, Params, PreprocessParams
from quickdraw_dag.errors import DataError
from quickdraw_dag.fanout import Mapper, process_map
from quickdraw_dag.formats.binary import iter_binary
from quickdraw_dag.formats.bitmap import BITMAP_SIDE
from quickdraw_dag.raster import rasterize, resize_bitmaps
from tasks.split import SPLITS, SUMMARY_NAME

log = logging.getLogger(__name__)
COPY_ROWS = 16384


def preprocess_category(
    category: str, fmt: str, counts: dict[str, int], interim_dir: Path, parts_dir: Path,
    image_size: int, line_width: float,
) -> dict[str, int]:
    """Write `<parts>/<split>/<category>.npy` for every split; returns the counts."""
    written = {}
    for split in SPLITS:
        target = Path(parts_dir) / split / f"{category}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        expected = counts[split]
        out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(expected, image_size, image_size)) if expected else None
        filled = 0
        if fmt == "numpy_bitmap":
            rows = np.load(Path(interim_dir) / split / f"{category}.npy", mmap_mode="r", allow_pickle=False)
            for start in range(0, rows.shape[0], COPY_ROWS):
                chunk = np.asarray(rows[start : start + COPY_ROWS]).reshape(-1, BITMAP_SIDE, BITMAP_SIDE)
                images = resize_bitmaps(chunk, image_size)
                out[filled : filled + images.shape[0]] = images
                filled += images.shape[0]
        else:
            for batch in iter_binary(Path(interim_dir) / split / f"{category}.bin"):
                images = rasterize(batch, image_size, line_width)
                if filled + images.shape[0] > expected:
                    raise DataError(f"more drawings than split.json says ({expected})", path=Path(interim_dir) / split / f"{category}.bin")
                out[filled : filled + images.shape[0]] = images
                filled += images.shape[0]
        if filled != expected:
            raise DataError(f"{filled} drawings, split.json says {expected}", path=Path(interim_dir) / split / category)
        if out is None:
            np.save(target, np.zeros((0, image_size, image_size), np.uint8), allow_pickle=False)
        else:
            out.flush()
            del out
        written[split] = filled
    return written


def concatenate_split(split: str, categories: Sequence[str], parts_dir: Path, out_dir: Path, image_size: int) -> int:
    """Stream the per-category parts into one array, labels in category order."""
    parts = [np.load(Path(parts_dir) / split / f"{c}.npy", mmap_mode="r", allow_pickle=False) for c in categories]
    total = sum(p.shape[0] for p in parts)
    labels = np.concatenate([np.full(p.shape[0], index, np.int16) for index, p in enumerate(parts)]) if parts else np.zeros(0, np.int16)
    target = out_dir / f"{split}_images.npy"
    if total == 0:
        np.save(target, np.zeros((0, image_size, image_size), np.uint8), allow_pickle=False)
    else:
        out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(total, image_size, image_size))
        at = 0
        for part in parts:
            for start in range(0, part.shape[0], COPY_ROWS):
                chunk = part[start : start + COPY_ROWS]
                out[at : at + chunk.shape[0]] = chunk
                at += chunk.shape[0]
        out.flush()
        del out
    np.save(out_dir / f"{split}_labels.npy", labels, allow_pickle=False)
    return total


def pixel_histogram(images: np.ndarray) -> np.ndarray:
    counts = np.zeros(256, np.int64)
    for start in range(0, images.shape[0], COPY_ROWS):
        counts += np.bincount(np.asarray(images[start : start + COPY_ROWS]).ravel(), minlength=256)
    return counts


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

    stats = {"min": low, "max": high, "mean": mean, "std": std, "median": quantile(0.5),
             "q1": quantile(0.25), "q3": quantile(0.75), "p01": quantile(0.01), "p99": quantile(0.99), "pixels": int(total)}
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
    data: DataParams, params: PreprocessParams, interim_dir: Path, processed_dir: Path, mapper: Mapper | None = None
) -> dict[str, Any]:
    """Run the preprocess stage, one job per category; returns its summary.

    Without a `mapper`, categories run on `preprocess.workers` processes.
    """
    try:
        split_summary = json.loads((Path(interim_dir) / SUMMARY_NAME).read_text())
    except FileNotFoundError:
        raise DataError("missing: run the split stage first", path=Path(interim_dir) / SUMMARY_NAME) from None
    classes = split_summary["classes"]
    missing = [c for c in data.categories if c not in classes]
    if missing:
        raise DataError(f"no split data for {missing}: rerun split", path=Path(interim_dir) / SUMMARY_NAME)
    with atomic_directory(processed_dir) as out_dir:
        parts_dir = out_dir / ".parts"
        jobs = [(c, classes[c]["format"], classes[c]["counts"], Path(interim_dir), parts_dir,
                 params.image_size, params.line_width) for c in data.categories]
        results = (mapper or process_map(params.workers))(preprocess_category, jobs, "rasterize")
        totals = {split: concatenate_split(split, data.categories, parts_dir, out_dir, params.image_size) for split in SPLITS}
        for path in sorted(parts_dir.rglob("*.npy")):
            path.unlink()
        for folder in sorted(parts_dir.rglob("*"), reverse=True):
            folder.rmdir()
        parts_dir.rmdir()
        train_images = np.load(out_dir / "train_images.npy", mmap_mode="r", allow_pickle=False)
        scaling = scaling_from_histogram(params.scaling, pixel_histogram(train_images))
        del train_images
        write_json_atomic(out_dir / "scaling.json", scaling)
        write_json_atomic(out_dir / "labels.json", {"categories": list(data.categories), "image_size": params.image_size})
        summary = {"counts": totals, "per_class": dict(zip(data.categories, results)), "image_size": params.image_size}
        write_json_atomic(out_dir / "summary.json", summary)
    log.info("preprocess: %s images at %dx%d, scaling %s", totals, params.image_size, params.image_size, params.scaling)
    return summary


def run(params: Params, mapper: Mapper | None = None) -> dict[str, Any]:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    return preprocess(params.data, params.preprocess, Path(params.paths.interim), Path(params.paths.processed), mapper)


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.preprocess", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
