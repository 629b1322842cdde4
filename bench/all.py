"""`make bench`: every performance figure measured in one run, as one markdown table.

    python -m bench.all [--skip pipeline,streaming,...]

Each benchmark runs in a fresh process (`python -m bench.<name> --json`), so
one's memory, threads and TensorFlow state never colour another's; ratios
are between figures measured side by side inside one benchmark. Each row
names the command that reproduces it. Targets: parse ≥ 20×, raster ≥ 5×,
input ≥ 10× training consumption, train memory growth ≤ 20% at 10× data,
Dask ≥ 1.6× with identical outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHES = ("parse", "raster", "throughput", "streaming", "dask_fanout", "pipeline", "overhead")


def run(module: str, *args: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "QUICKDRAW_DAG_PROGRESS": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args, "--json"], cwd=REPO, env=env, capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"bench.{module} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    print(f"  bench.{module}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads(lines[-1])


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(BENCHES)}")
    args = parser.parse_args()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    rows = ["| figure | ours | compared with | ratio | target | command |", "|---|---:|---|---:|---|---|"]
    missed = 0

    def row(figure: str, ours: str, other: str, ratio: str, target: str, command: str, ok: bool | None = None) -> None:
        nonlocal missed
        if ok is not None:
            target = f"{target}: {verdict(ok)}"
            missed += not ok
        rows.append(f"| {figure} | {ours} | {other} | {ratio} | {target} | `{command}` |")

    print("measuring (each in its own process):", file=sys.stderr)
    if "parse" not in skip:
        r = run("parse")
        row(
            f"binary parsing, {r['drawings']:,} drawings ({r['size_mb']:.0f} MB)",
            f"{r['ours_rate']:,.0f} drawings/s",
            f"quickdraw.QuickDrawDataGroup {r['theirs_rate']:,.0f} drawings/s",
            f"{r['ratio']:.1f}×",
            "≥ 20×",
            "make bench-parse",
            r["ratio"] >= 20,
        )
    if "raster" not in skip:
        r = run("raster")
        row(
            f"rasterizing {r['drawings']:,} drawings at 28×28",
            f"{r['ours_rate']:,.0f} drawings/s",
            f"quickdraw image → L → resize {r['theirs_rate']:,.0f} drawings/s",
            f"{r['ratio']:.1f}×",
            "≥ 5×",
            "make bench-raster",
            r["ratio"] >= 5,
        )
    if "throughput" not in skip:
        r = run("throughput")
        row(
            "input pipeline against training (batch 128, 28×28)",
            f"{r['input_batches_per_s']:,.0f} batches/s served",
            f"training consumes {r['train_steps_per_s']:,.1f} steps/s",
            f"{r['ratio']:,.0f}×",
            "≥ 10×",
            "python -m bench.throughput",
            r["ratio"] >= 10,
        )
        row(
            f"training on CPU ({r['backend']}, default network: {r['filters']} filters, batch norm "
            f"{r['batch_norm']}, batch {r['batch_size']}, {r['precision']})",
            f"{r['images_per_s']:,.0f} images/s = {r['train_gflops']:.1f} GFLOP/s",
            f"{r['peak_type']} matmul peak {r['peak_gflops']:.1f} GFLOP/s",
            f"{r['train_of_peak']:.0%}",
            "≥ 50% of peak",
            "python -m bench.throughput",
            r["train_of_peak"] >= 0.5,
        )
        row(
            f"prediction on CPU (default network, batch 512, {r['precision']})",
            f"{r['predict_images_per_s']:,.0f} images/s = {r['predict_gflops']:.1f} GFLOP/s",
            f"{r['peak_type']} matmul peak {r['peak_gflops']:.1f} GFLOP/s",
            f"{r['predict_of_peak']:.0%}",
            "",
            "python -m bench.throughput",
        )
    if "streaming" not in skip:
        r = run("streaming")
        small, large = r["sizes"]
        row(
            f"train peak RSS, {small:,} → {large:,} drawings",
            f"{r['train'][0]:,.0f} → {r['train'][1]:,.0f} MB",
            "10× the data",
            f"{r['train_growth']:+.1%}",
            "≤ +20%",
            "python -m bench.streaming",
            r["train_growth"] <= 0.20,
        )
        for stage in ("fetch", "split"):
            row(
                f"{stage} peak RSS, {r['file_mb'][0]:.0f} MB → {r['file_mb'][1]:.0f} MB file",
                f"{r[stage][0]:,.0f} → {r[stage][1]:,.0f} MB",
                "10× the file",
                f"{r[f'{stage}_growth']:+.1%}",
                "does not grow with file size",
                "python -m bench.streaming",
                r[f"{stage}_growth"] <= 0.20,
            )
    if "dask_fanout" not in skip:
        r = run("dask_fanout")
        row(
            f"preparation of {r['categories']} categories × {r['drawings']:,} drawings",
            f"Dask, {r['workers']} workers: {r['dask_s']:.1f} s (+{r['startup_s']:.1f} s cluster start)",
            f"one process: {r['one_process_s']:.1f} s; {r['files']} files {'identical' if r['identical'] else 'DIFFER'}",
            f"{r['speedup']:.2f}×",
            "≥ 1.6×, identical",
            "python -m bench.dask_fanout",
            r["speedup"] >= 1.6 and r["identical"],
        )
    if "pipeline" not in skip:
        r = run("pipeline")
        row(
            f"whole pipeline, {r['categories']} synthetic categories × {r['drawings']:,}",
            f"{r['pipeline_s']:.0f} s, test accuracy {r['accuracy']:.3f}",
            "default params",
            "",
            "",
            "python -m bench.pipeline",
        )
        row(
            "no-op `dvc repro` after it",
            f"{r['dvc_noop_s']:.2f} s",
            "7 stages up to date",
            "",
            "",
            "python -m bench.pipeline",
        )
    if "overhead" not in skip:
        r = run("pipeline", "--overhead-only")
        row(
            f"Prefect overhead per task ({r['tasks']} no-op tasks)",
            f"{r['called_ms']:.1f} ms called, {r['mapped_ms']:.1f} ms mapped",
            "plain function calls",
            "",
            "",
            "python -m bench.pipeline --overhead-only",
        )
    print(f"\nmeasured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs\n")
    print("\n".join(rows))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
