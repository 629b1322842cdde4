"""How cost grows: a row per doubling of categories, drawings per category and image size.

    python -m bench.scaling
    python -m bench.scaling --plan     # the full dataset on paper (docs/SCALING.md), from figures measured here

Data preparation (fetch from a local directory of real-shaped `.bin` files,
split, preprocess; one process) is timed at each size; for image size, the
training throughput of the default model (64 filters) is timed as well, and
an epoch's cost follows from it (drawings ÷ images/s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

from quickdraw.names import QUICK_DRAWING_NAMES

from bench.corpus import seed_drawings
from bench.streaming import binary_file
from quickdraw_dag.config.schema import DataParams, PreprocessParams, SplitParams
from quickdraw_dag.runtime.fanout import serial_map


def prepare_seconds(root: Path, categories: int, drawings: int, image_size: int = 28) -> float:
    import time

    from quickdraw_dag.artifacts import Catalog
    from quickdraw_dag.config.schema import FetchParams
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split

    seed, _ = seed_drawings()
    names = list(QUICK_DRAWING_NAMES)[:categories]
    source = root / f"source_{categories}_{drawings}"
    for name in names:
        binary_file(source / f"{name}.bin", drawings, seed)
    data = DataParams(source=str(source), categories=names)
    work = root / f"work_{categories}_{drawings}_{image_size}"
    started = time.perf_counter()
    catalog = Catalog.under(work)
    fetch(data, FetchParams(), catalog, serial_map)
    split(data, SplitParams(), catalog, serial_map)
    preprocess(data, PreprocessParams(image_size=image_size), catalog, serial_map)
    return time.perf_counter() - started


def measure() -> list[dict]:
    from bench.throughput import measure as throughput

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        prepare_seconds(root, 2, 500)  # compile once
        for categories in (5, 10, 20):
            rows.append(
                {
                    "axis": "categories",
                    "value": categories,
                    "drawings": 20_000 * categories,
                    "prepare_s": prepare_seconds(root, categories, 20_000),
                }
            )
        for drawings in (10_000, 20_000, 40_000):
            rows.append(
                {
                    "axis": "drawings per category",
                    "value": drawings,
                    "drawings": 5 * drawings,
                    "prepare_s": prepare_seconds(root, 5, drawings),
                }
            )
        for size in (28, 56, 112):
            speed = throughput(filters=64, steps=10, image_size=size, drawings=5000)
            rows.append(
                {
                    "axis": "image size",
                    "value": size,
                    "drawings": 5 * 10_000,
                    "prepare_s": prepare_seconds(root, 5, 10_000, size),
                    "train_images_per_s": speed["images_per_s"],
                }
            )
    return rows


FULL_CATEGORIES = 345
FULL_DRAWINGS = 50_000_000  # Google's count for the whole dataset (its README: "50 million drawings")


def bytes_per_drawing() -> dict[str, float]:
    """Bytes on disk per drawing in each format, measured on the shared real drawings (simplified ndjson)."""
    import numpy as np

    from bench.corpus import SHARED_SIMPLIFIED, seed_drawings
    from quickdraw_dag.data.formats.bitmap import BITMAP_PIXELS

    files = sorted(SHARED_SIMPLIFIED.glob("*.ndjson"))
    ndjson_bytes = sum(f.stat().st_size for f in files)
    ndjson_count = sum(sum(1 for _ in f.open("rb")) for f in files)
    seed, _ = seed_drawings()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "drawings.bin"
        binary_file(path, len(seed), seed)
        binary = path.stat().st_size / len(seed)
    return {
        "simplified .ndjson": ndjson_bytes / ndjson_count,
        "binary .bin (strokes; also split's shards)": binary,
        "numpy_bitmap .npy / processed images (28x28 uint8)": float(BITMAP_PIXELS),
        "processed labels (int16)": float(np.dtype(np.int16).itemsize),
    }


def peak_bytes(function, *args) -> int:  # noqa: ANN001 - a bench helper
    """Peak bytes NumPy allocates while `function(*args)` runs (NumPy reports to tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def memory_per_drawing(classes: int = FULL_CATEGORIES, count: int = 100_000) -> dict[str, float]:
    """Bytes per drawing of what grows with drawings, measured at `count` drawings (peak NumPy allocations)."""
    import numpy as np

    from quickdraw_dag.data.stream import MemmapBatches
    from tasks.evaluate import classification_metrics
    from tasks.split import select

    rng = np.random.default_rng(0)
    key_ids = rng.integers(0, 2**63, count, dtype=np.uint64)
    recognized = np.ones(count, np.uint8)
    labels = rng.integers(0, classes, count).astype(np.int16)
    probabilities = rng.random((count, classes), dtype=np.float32)
    images = np.zeros((count, 1, 1), np.uint8)

    def batches() -> None:
        MemmapBatches(images, labels, batch_size=128, shuffle=True).set_epoch(1)

    def evaluate() -> None:
        classification_metrics(labels.astype(np.int64), probabilities, classes)

    return {
        "split: de-duplication and assignment (per category process)": (
            peak_bytes(select, key_ids, recognized, SplitParams()) + key_ids.nbytes + recognized.nbytes
        )
        / count,
        "train/tune: the epoch's shuffled order (per training drawing)": peak_bytes(batches) / count,
        # model.predict's output is held whole, then ranked: at 345 classes this is the largest by far
        f"evaluate: probabilities + top-3 ranking at {classes} classes (per test drawing)": (
            peak_bytes(evaluate) + probabilities.nbytes
        )
        / count,
    }


def hyperband_plan(max_epochs: int, factor: int, iterations: int = 1) -> tuple[int, int]:
    """(trials, epochs trained) of one Hyperband search, by KerasTuner's own bracket arithmetic."""
    import keras_tuner as kt

    oracle = kt.oracles.HyperbandOracle(kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor)
    trials = epochs = 0
    for bracket in range(oracle._get_num_brackets()):
        before = 0
        for round_ in range(oracle._get_num_rounds(bracket)):
            size = oracle._get_size(bracket, round_)
            now = oracle._get_epochs(bracket, round_)
            trials += size
            epochs += size * (now - before)  # a promoted trial continues from its parent's checkpoint
            before = now
    return trials * iterations, epochs * iterations


def plan() -> None:
    """The whole dataset on paper: every figure below is measured in this run or computed from one that is."""
    from bench.throughput import measure as throughput
    from quickdraw_dag.config.schema import TuneParams

    fractions = SplitParams().fractions.as_dict()
    sizes = bytes_per_drawing()
    with tempfile.TemporaryDirectory() as scratch:
        prepare_seconds(Path(scratch), 2, 500)  # compile once
        drawings = 5 * 20_000
        per_core = drawings / prepare_seconds(Path(scratch), 5, 20_000)
    memory = memory_per_drawing()
    speeds = {f: throughput(filters=f, steps=20)["images_per_s"] for f in (32, 64)}
    train = FULL_DRAWINGS * fractions["train"]
    test = FULL_DRAWINGS * fractions["test"]

    print(f"Full dataset: {FULL_CATEGORIES} categories, {FULL_DRAWINGS:,} drawings at 28x28; split {fractions}")
    # The machine is shared: the load says how far the timings below sit from an idle machine's.
    print(f"Measured on {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of the run")
    print("\n| format | bytes per drawing (measured) | whole dataset |")
    print("|---|---:|---:|")
    for name, size in sizes.items():
        print(f"| {name} | {size:,.0f} | {size * FULL_DRAWINGS / 1e9:,.1f} GB |")
    print("\n| preparation (fetch from local files, split, preprocess; one process) | figure |")
    print("|---|---:|")
    print(f"| drawings/s per core (5 categories x 20,000 real-shaped drawings) | {per_core:,.0f} |")
    print(f"| core-hours for {FULL_DRAWINGS:,} drawings | {FULL_DRAWINGS / per_core / 3600:,.1f} |")
    print(f"| single-core workers for a one-hour preparation | {math.ceil(FULL_DRAWINGS / per_core / 3600)} |")
    print(
        f"| categories per worker at that count (jobs are per category) | "
        f"{FULL_CATEGORIES / math.ceil(FULL_DRAWINGS / per_core / 3600):.1f} |"
    )
    largest = 2 * FULL_DRAWINGS / FULL_CATEGORIES  # assume the largest category holds twice the mean
    print("\n| memory that grows with drawings (measured bytes per drawing) | bytes/drawing | at full scale |")
    print("|---|---:|---:|")
    for name, per in memory.items():
        if name.startswith("split"):
            count, where = largest, f"{largest:,.0f} drawings (a category of twice the mean)"
        elif name.startswith("train"):
            count, where = train, f"{train:,.0f} training drawings"
        else:
            count, where = test, f"{test:,.0f} test drawings"
        print(f"| {name} | {per:,.1f} | {per * count / 1e9:,.2f} GB for {where} |")
    print("\n| training at 28x28, batch 128, this CPU (tensorflow) | images/s | one epoch of the train split |")
    print("|---|---:|---:|")
    for filters, speed in speeds.items():
        print(f"| {filters} filters | {speed:,.0f} | {train / speed / 3600:,.1f} h |")
    print("\n| Hyperband (KerasTuner's brackets) | trials | epochs trained | on the tuning fraction |")
    print("|---|---:|---:|---:|")
    tune_images = train * TuneParams().train_fraction
    for max_epochs in (3, 9, 27):
        trials, epochs = hyperband_plan(max_epochs, 3)
        print(
            f"| max_epochs={max_epochs}, factor 3 | {trials} | {epochs} | "
            f"{epochs * tune_images / 1e9:,.2f} G images ({epochs * tune_images / speeds[32] / 3600:,.0f} h at "
            f"32 filters here) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plan", action="store_true", help="the full dataset on paper (docs/SCALING.md)")
    args = parser.parse_args()
    if args.plan:
        plan()
        return
    rows = measure()
    if args.json:
        print(json.dumps(rows))
        return
    print(
        "| doubling | value | drawings | prepare s | prepare drawings/s | train images/s (64 filters) | epoch of 100k drawings |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        speed = r.get("train_images_per_s")
        epoch = f"{100_000 / speed / 60:.1f} min" if speed else ""
        print(
            f"| {r['axis']} | {r['value']:,} | {r['drawings']:,} | {r['prepare_s']:.2f} | "
            f"{r['drawings'] / r['prepare_s']:,.0f} | {f'{speed:,.0f}' if speed else ''} | {epoch} |"
        )


if __name__ == "__main__":
    main()
