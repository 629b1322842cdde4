"""Using the model: per-guess latency at the page's endpoint and at `mlflow models serve`, and predict's batch rate.

    python -m bench.predict [--model URI] [--guesses 300] [--drawings 20000]

The model is `--model`, else the champion of the local store (`make demo`
registers one), else a model of the demo's shape (32 filters, the sample's
7 categories) trained for one epoch into a scratch store: latency and
throughput depend on the network's shape, not on how well it was trained.

- page: `python -m quickdraw_dag.serving.server` (what `make play` runs) in
  its own process; `--guesses` POSTs to `/api/guess` over one keep-alive
  connection, one after another, each a real drawing of the shipped sample
  as a person's raw strokes (screen pixels and times, as the page sends them).
- mlflow: `mlflow models serve --env-manager local` (what `make serve-model`
  runs), the same drawings, one per `/invocations` request.
- batch: `predict` (the functions the command runs) on an ndjson file of
  `--drawings` simplified drawings (the 175 sample drawings, tiled), split
  into parsing, rasterizing and the model, and the command end to end
  (`predict --json`, process start and model load included).

The 2-core machine is shared: the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import requests

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "quickdraw"
BIN = Path(sys.executable).parent
PAGE_P95_TARGET_MS = 20.0
BATCH_TARGET = 5_000.0


def sample_lines() -> list[bytes]:
    return [
        line for path in sorted((SAMPLES / "simplified").glob("*.ndjson")) for line in path.read_bytes().splitlines()
    ]


def screen_strokes(drawing: list, scale: float = 1.7, shift: float = 24.5) -> list:
    """A simplified drawing as the page sends it: canvas pixels (floats) and ms."""
    return [
        [[x * scale + shift for x in xs], [y * scale + shift for y in ys], [16 * i + 800 * s for i in range(len(xs))]]
        for s, (xs, ys) in enumerate(drawing)
    ]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "mean_ms": float(values.mean()),
        "requests": len(samples_ms),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """Run `command` until the block ends; wait until `ready_url` answers 200."""
    with log.open("w") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if requests.get(ready_url, timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:4]} did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
            yield
        finally:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def time_requests(url: str, bodies: list[Any], warmup: int = 20) -> dict[str, float]:
    session = requests.Session()
    for body in bodies[:warmup]:
        session.post(url, json=body, timeout=60).raise_for_status()
    times = []
    for body in bodies:
        started = time.perf_counter()
        answer = session.post(url, json=body, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return percentiles(times)


def measure_page(uri: str, env: dict[str, str], drawings: list[list], scratch: Path) -> dict[str, float]:
    port = free_port()
    command = [str(BIN / "python"), "-m", "quickdraw_dag.serving.server", "--model", uri, "--port", str(port)]
    with process(command, env, f"http://127.0.0.1:{port}/api/model", scratch / "page.log"):
        bodies = [{"strokes": screen_strokes(d), "format": "raw"} for d in drawings]
        return time_requests(f"http://127.0.0.1:{port}/api/guess", bodies)


def measure_mlflow(uri: str, env: dict[str, str], drawings: list[list], scratch: Path) -> dict[str, float]:
    port = free_port()
    serve = ["models", "serve", "-m", uri, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with process([str(BIN / "mlflow"), *serve], env, f"http://127.0.0.1:{port}/ping", scratch / "mlflow.log"):
        bodies = [{"dataframe_records": [{"strokes": screen_strokes(d), "format": "raw"}]} for d in drawings]
        return time_requests(f"http://127.0.0.1:{port}/invocations", bodies)


def measure_batch(uri: str, env: dict[str, str], count: int, scratch: Path) -> dict[str, float]:
    """predict's stages on `count` simplified drawings, best of 3 each, then the command end to end."""
    from quickdraw_dag.serving.predict import predict_files
    from quickdraw_dag.serving.readers import iter_chunks
    from quickdraw_dag.serving.registry import load_served_model

    lines = sample_lines()
    path = scratch / "drawings.ndjson"
    with path.open("wb") as out:
        for index in range(count):
            record = orjson.loads(lines[index % len(lines)])
            record["key_id"] = str(index + 1)
            out.write(orjson.dumps(record) + b"\n")
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    classifier = load_served_model(uri).classifier

    cpu: dict[str, float] = {}

    def best(name: str, work: Any) -> tuple[float, Any]:
        """Best wall time of 3 runs, and the CPU time of that run (every thread of this process)."""
        runs = []
        for _ in range(3):
            started, started_cpu = time.perf_counter(), time.process_time()
            value = work()
            runs.append((time.perf_counter() - started, time.process_time() - started_cpu))
        wall, cpu[name] = min(runs)
        return wall, value

    parse_s, chunks = best("parse", lambda: list(iter_chunks(path)))
    raster_s, images = best("raster", lambda: np.concatenate([classifier.images_from_batch(c.batch) for c in chunks]))
    model_s, _ = best("model", lambda: classifier.probabilities(images))
    total_s, results = best("predict", lambda: sum(1 for _ in predict_files(classifier, [path])))
    assert results == count
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "python"), "-m", "quickdraw_dag.serving.predict", str(path), "--json", "--model", uri],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    command_s = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return {
        "drawings": count,
        "parse_rate": count / parse_s,
        "raster_rate": count / raster_s,
        "input_rate": count / (parse_s + raster_s),
        "model_rate": count / model_s,
        "predict_rate": count / total_s,
        **{f"{name}_per_cpu_s": count / seconds for name, seconds in cpu.items()},
        "command_s": command_s,
        "command_rate": count / command_s,
    }


def bench_model(scratch: Path) -> tuple[str, str]:
    """(model URI, tracking URI): the local champion, or a model of the demo's shape trained for one epoch."""
    from quickdraw_dag.errors import ConfigError
    from quickdraw_dag.serving.registry import DEFAULT_MODEL_URI, resolve

    store = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlflow.db'}")
    os.environ["MLFLOW_TRACKING_URI"] = store
    try:
        resolve(DEFAULT_MODEL_URI)
        return DEFAULT_MODEL_URI, store
    except ConfigError:
        from bench.tiny_model import train_registered_model

        print("no champion in the local store: training one of the demo's shape (1 epoch)", file=sys.stderr)
        categories = ("bear", "duck", "frog", "lion", "monkey", "rabbit", "sheep")
        with contextlib.redirect_stdout(sys.stderr):  # Keras's epoch lines are not figures
            store = train_registered_model(scratch / "model", categories, filters=32, epochs=1, per_class=300)
        return DEFAULT_MODEL_URI, store


def model_shape(uri: str) -> str:
    from quickdraw_dag.serving.registry import load_served_model

    model = load_served_model(uri).classifier.model
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    return f"{convs[0].filters} filters, {model.count_params():,} parameters"


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def print_tables(figures: dict[str, Any]) -> None:
    page, served, batch = figures["page"], figures["mlflow"], figures["batch"]
    before, after = figures["load_before"][0], figures["load_after"][0]
    print(
        f"model: {figures['model']} ({figures['shape']}); {figures['cpus']} CPUs, load average {before:.1f} before, {after:.1f} after"
    )
    print("| per guess | p50 | p95 | mean | target |")
    print("|---|---:|---:|---:|---|")
    for name, f, target in (
        (f"page `/api/guess` (`make play`), {page['requests']} guesses", page, PAGE_P95_TARGET_MS),
        (f"`mlflow models serve` `/invocations` (`make serve-model`), {served['requests']} requests", served, None),
    ):
        goal = f"p95 ≤ {target:.0f} ms: {verdict(f['p95_ms'] <= target)}" if target else ""
        print(f"| {name} | {f['p50_ms']:.1f} ms | {f['p95_ms']:.1f} ms | {f['mean_ms']:.1f} ms | {goal} |")
    print()
    goal = lambda rate: f"≥ {BATCH_TARGET:,.0f}: {verdict(rate >= BATCH_TARGET)}"  # noqa: E731
    rows = (
        ("parse ndjson (the fetch stage's reader)", batch["parse_rate"], batch["parse_per_cpu_s"], ""),
        ("rasterize (the preprocess stage's rasterizer)", batch["raster_rate"], batch["raster_per_cpu_s"], ""),
        ("input path: parse + rasterize", batch["input_rate"], None, goal(batch["input_rate"])),
        ("the model alone (batches of 512)", batch["model_rate"], batch["model_per_cpu_s"], ""),
        (
            "predict, end to end (in process)",
            batch["predict_rate"],
            batch["predict_per_cpu_s"],
            goal(batch["predict_rate"]),
        ),
        (
            f"`predict --json` command, start and model load included ({batch['command_s']:.1f} s)",
            batch["command_rate"],
            None,
            "",
        ),
    )
    print(f"| predict on {batch['drawings']:,} simplified drawings | drawings/s | per CPU-second | target |")
    print("|---|---:|---:|---|")
    for name, rate, per_cpu, target in rows:
        print(f"| {name} | {rate:,.0f} | {'' if per_cpu is None else f'{per_cpu:,.0f}'} | {target} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="an MLflow model URI (default: the local champion)")
    parser.add_argument("--guesses", type=int, default=300, help="requests per server")
    parser.add_argument("--drawings", type=int, default=20_000, help="drawings in the batch file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as scratch_dir:
        scratch = Path(scratch_dir)
        if args.model:
            uri, store = args.model, os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlflow.db'}")
        else:
            uri, store = bench_model(scratch)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "PYTHONPATH": str(REPO),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "QUICKDRAW_DAG_PROGRESS": "0",
        }
        os.environ["MLFLOW_TRACKING_URI"] = store
        drawings = [orjson.loads(line)["drawing"] for line in sample_lines()]
        drawings = (drawings * (args.guesses // len(drawings) + 1))[: args.guesses]
        figures = {
            "model": uri,
            "shape": model_shape(uri),
            "page": measure_page(uri, env, drawings, scratch),
            "mlflow": measure_mlflow(uri, env, drawings, scratch),
            "batch": measure_batch(uri, env, args.drawings, scratch),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print_tables(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
