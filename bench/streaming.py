"""Streaming proof: peak memory of train, fetch and split when the data grows 10×.

    python -m bench.streaming [--small 100000] [--factor 10]

Each measurement is a fresh process (`bench.peak`) whose peak RSS is read
from the kernel. train: the stage's input path and default model
(`bench.train_probe`, 100 steps of 128 over a shuffled split of `small` and
`small × factor` drawings at 28×28). fetch and split: the real stage CLIs on
a local directory holding an `apple.bin` of `small` and `small × factor`
real-shaped drawings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.corpus import seed_drawings, tiled
from quickdraw_dag.data.formats import DrawingBatch
from quickdraw_dag.data.formats.binary import write_binary
from quickdraw_dag.data.hashing import splitmix64
from quickdraw_dag.data.raster import rasterize

REPO = Path(__file__).resolve().parents[1]
CHUNK = 100_000


def peak_mb(module: str, *args: str, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "QUICKDRAW_DAG_PROGRESS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.peak", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    found = re.findall(r"peak_rss_mb=([\d.]+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{module} failed:\n{done.stderr[-3000:]}")
    return float(found[-1])


def processed_dir(root: Path, count: int, tile: np.ndarray) -> Path:
    """A project layout below `root` whose training split holds `count` images (tiles of real renderings)."""
    from quickdraw_dag.artifacts import Catalog, write_label_names

    catalog = Catalog.under(root)
    catalog.processed.mkdir(parents=True)
    images = np.lib.format.open_memmap(catalog.images("train"), mode="w+", dtype=np.uint8, shape=(count, 28, 28))
    for start in range(0, count, tile.shape[0]):
        chunk = min(tile.shape[0], count - start)
        images[start : start + chunk] = tile[:chunk]
    images.flush()
    del images
    np.save(catalog.labels("train"), (np.arange(count) % 6).astype(np.int16), allow_pickle=False)
    write_label_names(catalog.label_names, [f"c{i}" for i in range(6)], 28, 16.0)
    return root


def binary_file(path: Path, count: int, seed: DrawingBatch) -> None:
    """`count` drawings with distinct key_ids, written in chunks (the writer never holds them all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for start in range(0, count, CHUNK):
            batch = tiled(seed, min(CHUNK, count - start))
            ids = splitmix64(np.arange(start, start + len(batch), dtype=np.uint64))
            write_binary(handle, DrawingBatch(**{**batch.__dict__, "key_id": ids}))


def measure(small: int = 100_000, factor: int = 10) -> dict:
    seed, origin = seed_drawings()
    sizes = (small, small * factor)
    result: dict = {"sizes": sizes, "origin": origin}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tile = rasterize(tiled(seed, 20_000), 28)
        result["train"] = []
        for count in sizes:
            directory = processed_dir(root / f"processed_{count}", count, tile)
            result["train"].append(peak_mb("bench.train_probe", str(directory), "--steps", "100", cwd=root))
            shutil.rmtree(directory)
        result["fetch"], result["split"], result["file_mb"] = [], [], []
        for count in sizes:
            source = root / f"source_{count}"
            binary_file(source / "apple.bin", count, seed)
            binary_file(source / "banana.bin", 1000, seed)
            result["file_mb"].append((source / "apple.bin").stat().st_size / 1e6)
            workspace = root / f"workspace_{count}"
            workspace.mkdir()
            shutil.copy(REPO / "params.yaml", workspace / "params.yaml")
            args = ("--set", f"data.source={source}", "--set", "data.categories=[apple, banana]")
            result["fetch"].append(peak_mb("tasks.fetch", *args, cwd=workspace))
            result["split"].append(peak_mb("tasks.split", *args, cwd=workspace))
            shutil.rmtree(workspace)
            shutil.rmtree(source)
    for stage in ("train", "fetch", "split"):
        small_mb, large_mb = result[stage]
        result[f"{stage}_growth"] = large_mb / small_mb - 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--factor", type=int, default=10)
    args = parser.parse_args()
    r = measure(args.small, args.factor)
    if args.json:
        print(json.dumps(r, default=str))
        return
    small, large = r["sizes"]
    print(f"| stage | peak RSS at {small:,} drawings | at {large:,} drawings | growth |")
    print("|---|---:|---:|---:|")
    for stage in ("train", "fetch", "split"):
        print(f"| {stage} | {r[stage][0]:,.0f} MB | {r[stage][1]:,.0f} MB | {r[f'{stage}_growth']:+.1%} |")
    print(f"(apple.bin: {r['file_mb'][0]:.0f} MB and {r['file_mb'][1]:.0f} MB; drawings from {r['origin']})")


if __name__ == "__main__":
    main()
