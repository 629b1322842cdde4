"""Distributed tuning: trials per minute with 1 and with 2 KerasTuner workers, side by side.

    python -m bench.tune_workers [--categories 4] [--drawings 400] [--max-epochs 3] [--workers 1 2]

The same small Hyperband search (synthetic drawings; filters 8, 16 and 32, two learning rates) runs
once per worker count, each in a fresh directory on the same processed data: with one worker the
tune stage runs every trial in its own process, with N the stage is KerasTuner's chief and N worker
processes run the trials (`tune.workers`). Wall time includes every process's start-up (a worker
imports TensorFlow before its first trial). Prints trials, epochs, wall seconds and trials/min per
worker count, the speed-up against one worker, and how many trials each worker ran.

Workers share the machine's cores: on a host with C cores each TensorFlow process uses all of them,
so N workers pay off when a trial leaves cores idle (small models, input-bound trials) or when the
workers sit on other machines (`--tune-chief`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from quickdraw_dag.artifacts import Catalog, read_tuning_report
from quickdraw_dag.config.schema import DataParams, FetchParams, PreprocessParams, SearchSpace, SplitParams, TuneParams
from quickdraw_dag.runtime.fanout import serial_map
from tasks.fetch import fetch
from tasks.preprocess import preprocess
from tasks.split import split
from tasks.tune import tune

CATEGORIES = ("circle", "square", "star", "triangle", "line", "zigzag")


def prepare(root: Path, categories: int, drawings: int) -> Catalog:
    catalog = Catalog.under(root)
    data = DataParams(source="synthetic", categories=CATEGORIES[:categories])
    fetch(data, FetchParams(synthetic_drawings=drawings), catalog, serial_map)
    split(data, SplitParams(), catalog, serial_map)
    preprocess(data, PreprocessParams(), catalog, serial_map)
    return catalog


def measure(processed: Path, root: Path, workers: int, max_epochs: int) -> dict:
    catalog = Catalog.under(root)
    shutil.copytree(processed, catalog.processed)
    params = TuneParams(
        max_epochs=max_epochs,
        factor=3,
        max_seconds=None,
        train_fraction=1.0,
        batch_size=64,
        workers=workers,
        space=SearchSpace(filters=(8, 16, 32), learning_rate=(1e-3, 3e-3), batch_norm=(False,)),
    )
    started = time.perf_counter()
    tune(params, catalog)
    seconds = time.perf_counter() - started
    report = read_tuning_report(catalog)
    trials = [t for t in report["trials"] if t["status"] == "COMPLETED"]
    per_worker: dict[str, int] = {}
    for trial in trials:
        per_worker[trial["worker"]] = per_worker.get(trial["worker"], 0) + 1
    return {
        "workers": workers,
        "trials": len(trials),
        "epochs": sum(t["epochs"] - t["initial_epoch"] for t in trials),
        "seconds": seconds,
        "trials_per_min": 60 * len(trials) / seconds,
        "per_worker": per_worker,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=4)
    parser.add_argument("--drawings", type=int, default=400, help="per category")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    os.environ.pop("QUICKDRAW_TUNE_CHIEF", None)  # 127.0.0.1, a free port
    with tempfile.TemporaryDirectory(prefix="bench-tune-workers-") as scratch:
        root = Path(scratch)
        processed = prepare(root / "data", args.categories, args.drawings).processed
        rows = [measure(processed, root / f"workers-{n}", n, args.max_epochs) for n in args.workers]
    base = rows[0]["trials_per_min"]
    print(
        f"Hyperband, max_epochs={args.max_epochs}, factor 3, {args.categories} synthetic categories × "
        f"{args.drawings} drawings, {os.cpu_count()} CPU cores"
    )
    print("| workers | trials | epochs | wall s | trials/min | vs 1 worker | trials per worker |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        shares = ", ".join(f"{k}: {v}" for k, v in sorted(r["per_worker"].items()))
        print(
            f"| {r['workers']} | {r['trials']} | {r['epochs']} | {r['seconds']:.1f} | {r['trials_per_min']:.2f} | "
            f"{r['trials_per_min'] / base:.2f}× | {shares} |"
        )


if __name__ == "__main__":
    main()
