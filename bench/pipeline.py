"""The whole pipeline on synthetic data, a no-op `dvc repro`, and Prefect's overhead per task.

    python -m bench.pipeline [--categories 10] [--drawings 4000] [--set key=value ...]

Copies the project into a scratch workspace (git + DVC) and times, there:
`python -m flows.pipeline` with default params on `--categories` synthetic
shapes × `--drawings` drawings (10 × 4,000 = 40,000 by default: the size
within which the whole pipeline must stay under 15 minutes on 2 cores),
then `dvc repro` with nothing changed, then a flow of 100 no-op tasks
against the same 100 plain calls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.workspace import copy_project
from quickdraw_dag.artifacts import Catalog

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def environment(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(root),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "QUICKDRAW_DAG_PROGRESS": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def prefect_overhead(tasks: int = 100) -> dict:
    """ms per task: a flow calling `tasks` no-op tasks, against the same plain calls (server start excluded)."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    def nothing(index: int) -> int:
        return index

    as_task = task(nothing, name="nothing", cache_policy=NO_CACHE)
    timings = {}

    @flow(name="overhead")
    def probe() -> None:
        as_task(0)  # first-call costs out of the way
        started = time.perf_counter()
        for index in range(tasks):
            as_task(index)
        timings["called"] = time.perf_counter() - started
        started = time.perf_counter()
        as_task.map(range(tasks)).result()
        timings["mapped"] = time.perf_counter() - started

    probe()
    started = time.perf_counter()
    for index in range(tasks):
        nothing(index)
    plain = time.perf_counter() - started
    return {
        "tasks": tasks,
        "called_ms": (timings["called"] - plain) / tasks * 1000,
        "mapped_ms": (timings["mapped"] - plain) / tasks * 1000,
    }


def measure(categories: int = 10, drawings: int = 4_000, overrides: list[str] | None = None) -> dict:
    from quickdraw_dag.config.schema import SYNTHETIC_CATEGORIES

    shapes = list(SYNTHETIC_CATEGORIES)[:categories]
    settings = [
        "data.source=synthetic",
        f"data.categories=[{', '.join(shapes)}]",
        f"fetch.synthetic_drawings={drawings}",
        *(overrides or []),  # a candidate default, timed before it becomes one
    ]
    with tempfile.TemporaryDirectory() as scratch:
        root = copy_project(Path(scratch) / "project")
        env = environment(root)
        args = [arg for setting in settings for arg in ("--set", setting)]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "flows.pipeline", *args], cwd=root, env=env, capture_output=True, text=True
        )
        pipeline_s = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"pipeline failed:\n{done.stderr[-3000:]}")
        metrics = json.loads(Catalog.under(root).metrics.read_text())
        stage_line = re.findall(r"stages run: .*", done.stdout + done.stderr)
        started = time.perf_counter()
        noop = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True, text=True)
        noop_s = time.perf_counter() - started
        if noop.returncode != 0 or "Running stage" in noop.stdout:
            raise SystemExit(f"dvc repro was not a no-op:\n{noop.stdout[-2000:]}{noop.stderr[-2000:]}")
    return {
        "categories": categories,
        "drawings": drawings,
        "settings": settings,
        "pipeline_s": pipeline_s,
        "accuracy": metrics["accuracy"],
        "stages": stage_line[-1] if stage_line else "",
        "dvc_noop_s": noop_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=10)
    parser.add_argument("--drawings", type=int, default=4_000)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--overhead-only", action="store_true", help="only Prefect's overhead per task")
    args = parser.parse_args()
    if args.overhead_only:
        o = prefect_overhead()
        print(
            json.dumps(o)
            if args.json
            else f"Prefect overhead: {o['called_ms']:.1f} ms per called task, {o['mapped_ms']:.1f} ms per mapped task"
        )
        return
    r = measure(args.categories, args.drawings, args.overrides)
    if args.json:
        print(json.dumps(r))
        return
    print(
        f"pipeline, {r['categories']} x {r['drawings']:,} synthetic: {r['pipeline_s']:.0f} s, "
        f"test accuracy {r['accuracy']:.4f} ({' '.join(r['settings'])})"
    )
    print(f"no-op dvc repro: {r['dvc_noop_s']:.2f} s")
    o = prefect_overhead()
    print(f"Prefect overhead: {o['called_ms']:.1f} ms per called task, {o['mapped_ms']:.1f} ms per mapped task")


if __name__ == "__main__":
    main()
