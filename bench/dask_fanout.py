"""Per-category preparation (fetch, split, preprocess) in one process against a 2-worker Dask cluster.

    python -m bench.dask_fanout [--categories 10] [--drawings 100000] [--workers 2]

The input is a local directory of Google-format `.bin` files, one per
category, each `--drawings` real-shaped drawings (tiled from the shared
samples, distinct key_ids), as a user with downloaded files has. The same
stage functions run twice on the same params in two directories:
once with the serial mapper (one process), once with a mapper over a local
Dask cluster (`--workers` single-threaded worker processes, started before
the clock so its start-up is reported on its own). Prints both times, the
speed-up, and whether every output file is byte-identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from quickdraw.names import QUICK_DRAWING_NAMES

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.schema import DataParams, FetchParams, PreprocessParams, SplitParams
from quickdraw_dag.runtime.fanout import Mapper, dask_map, serial_map
from tasks.fetch import fetch
from tasks.preprocess import preprocess
from tasks.split import split


def prepare(root: Path, data: DataParams, mapper: Mapper) -> float:
    started = time.perf_counter()
    catalog = Catalog.under(root)
    fetch(data, FetchParams(), catalog, mapper)
    fetched = time.perf_counter()
    split(data, SplitParams(), catalog, mapper)
    splitted = time.perf_counter()
    preprocess(data, PreprocessParams(), catalog, mapper)
    done = time.perf_counter()
    PHASES.append((root.name, fetched - started, splitted - fetched, done - splitted))
    return done - started


PHASES: list[tuple[str, float, float, float]] = []


def digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def measure(categories: int = 10, drawings: int = 100_000, workers: int = 2) -> dict:
    from distributed import Client, LocalCluster

    from bench.corpus import seed_drawings
    from bench.streaming import binary_file

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        seed, _ = seed_drawings()
        names = list(QUICK_DRAWING_NAMES)[:categories]
        for name in names:
            binary_file(root / "source" / f"{name}.bin", drawings, seed)
        data = DataParams(source=str(root / "source"), categories=names)
        warm = data.model_copy(update={"categories": names[:2]})
        prepare(root / "warmup", warm, serial_map)
        one_process = prepare(root / "serial", data, serial_map)
        started = time.perf_counter()
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            startup = time.perf_counter() - started
            prepare(root / "warm_dask", warm, dask_map(client))  # imports and numba caches in the workers
            on_dask = prepare(root / "dask", data, dask_map(client))
        serial, parallel = digest(root / "serial"), digest(root / "dask")
        identical = serial == parallel
        files = len(serial)
    return {
        "categories": categories,
        "drawings": drawings,
        "workers": workers,
        "one_process_s": one_process,
        "dask_s": on_dask,
        "startup_s": startup,
        "speedup": one_process / on_dask,
        "identical": identical,
        "files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--categories", type=int, default=10)
    parser.add_argument("--drawings", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    r = measure(args.categories, args.drawings, args.workers)
    if args.json:
        print(json.dumps(r, default=str))
        return
    print(
        f"{r['categories']} categories x {r['drawings']:,} drawings: one process {r['one_process_s']:.1f} s, "
        f"Dask {r['workers']} workers {r['dask_s']:.1f} s (+{r['startup_s']:.1f} s cluster start), "
        f"speed-up {r['speedup']:.2f}x, {r['files']} output files {'identical' if r['identical'] else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
