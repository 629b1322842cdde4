"""How cost grows: a row per doubling of categories, drawings per category and image size.

    python -m bench.scaling

Data preparation (fetch from a local directory of real-shaped `.bin` files,
split, preprocess; one process) is timed at each size; for image size, the
training throughput of the default model (64 filters) is timed as well, and
an epoch's cost follows from it (drawings ÷ images/s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from quickdraw.names import QUICK_DRAWING_NAMES

from bench.corpus import seed_drawings
from bench.streaming import binary_file
from quickdraw_dag.config import DataParams, PreprocessParams, SplitParams
from quickdraw_dag.fanout import serial_map


def prepare_seconds(root: Path, categories: int, drawings: int, image_size: int = 28) -> float:
    import time

    from quickdraw_dag.artifacts import Catalog
    from quickdraw_dag.config import FetchParams
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
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
