"""Model quality on real drawings: the pipeline's defaults against the seed tutorial's fixed recipe.

    python -m bench.quality DIR [--categories a b ...] [--seeds 0 1 2] [--set key=value ...]
    python -m bench.quality synthetic --synthetic-drawings 4000 [--categories ...]
    python -m bench.quality DIR --epochs-curve [--curve-epochs 5 10 15 25]

DIR is any folder of Google's files (every category in it by default), or
`synthetic`. For each seed, in a fresh copy of the project, the pipeline runs
stage by stage exactly as `dvc repro` runs it (`python -m tasks.<stage>`,
MLflow on, default params but `tune.seed` and `train.seed`), timed per stage.
On the same split, the tutorial's recipe then trains with the same seed:
its CNN (32 filters, ReLU, L2 1e-5, dropouts 0.3/0.4/0.2, no batch norm, no
augmentation), Adam at 1e-3, batch 128, EarlyStopping on val_loss with the
tutorial's patience of 10, the best val_accuracy checkpoint, at most
`--recipe-epochs` epochs (15, as in the reference run of issue 11). Both are
scored on the same test split with the same metric code.

Prints, for each side, test accuracy and MAP@3 as mean ± standard deviation
over the seeds with the worst seed, the wall time, and for the pipeline the
seconds of each stage. "Better" needs the pipeline's worst seed above the
recipe's mean.

Time to accuracy: after every epoch of both sides a `TestClock` scores the
model on the test split and notes the wall-clock seconds so far, less its own
scoring time. The pipeline's clock starts when its first stage starts (fetch,
split, preprocess and tune all count; the evaluate stage counts in its last
point, the model it scores); the recipe's when its training starts. Prints
the curves as a table, draws them (`--plot`, a PNG), and the ratio of the
times at which each side first reaches the recipe's final test accuracy
(the recipe's own time is the epoch of its best-val_accuracy checkpoint, or
the first epoch as good; below 1: the pipeline gets there sooner).

Tuning that earns its cost: after both sides of each seed, the tune stage
runs again on the same split with `--search` (default: dropout 0.3 and 0.4,
the search the defaults replaced), and the table prints its choice, its
seconds and their share of the pipeline, and the test accuracy of the
choice against the default's (the choice is trained and scored only where
it differs from the default; where it is the default, the model is the
pipeline's).

`--epochs-curve` measures instead the test accuracy of the pipeline's train
stage (default params, its own tuned candidate) when it trains N epochs with
no step budget, for each N and seed: the learning curve that
`quickdraw_dag.training.EPOCH_CURVE` holds, from which a run states what a
step budget that shortens training is expected to cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bench.workspace import REPO, copy_project
from quickdraw_dag.artifacts import Catalog, read_metrics
from quickdraw_dag.config.params_yaml import MAX_VALUE_BYTES, dump_yaml, load_yaml, load_yaml_bytes

BIN = Path(sys.executable).parent
STAGES = ("fetch", "split", "preprocess", "tune", "train", "evaluate")


class TestClock(keras.callbacks.Callback):
    """Test accuracy after each epoch against wall-clock seconds since `start` (`time.time()`), less its own time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, start: float) -> None:
        super().__init__()
        self.images = np.ascontiguousarray(images)
        self.labels = np.asarray(labels, np.int64)
        self.start = start
        self.own_s = 0.0
        self.points: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.time()
        probabilities = self.model.predict(self.images, batch_size=512, verbose=0)
        accuracy = float(np.mean(np.argmax(probabilities, axis=1) == self.labels))
        self.points.append({"epoch": epoch + 1, "seconds": now - self.start - self.own_s, "accuracy": accuracy})
        self.own_s += time.time() - now


# The pipeline's train stage as `python -m tasks.train` runs it (tasks.train.run), with a TestClock watching.
TRAIN_WITH_CLOCK = """
import json, sys
from pathlib import Path

from bench.quality import TestClock
from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.data.stream import open_split
from quickdraw_dag.tracking.live_run import tracked_stage
from tasks.train import train

params = load_params("params.yaml")
catalog = Catalog.from_paths(params.paths)
clock = TestClock(*open_split(catalog, "test"), start=float(sys.argv[1]))
with tracked_stage("train", params.mlflow) as live:
    if live is not None:
        live.log_params({"train": params.train.model_dump(mode="json")})
    train(params.train, catalog, live, extra_callbacks=[clock])
Path(sys.argv[2]).write_text(json.dumps({"points": clock.points, "own_s": clock.own_s}))
"""


def categories_in(directory: Path) -> list[str]:
    """Official category names that have a file in `directory` or its format folders."""
    from quickdraw.names import QUICK_DRAWING_NAMES

    from quickdraw_dag.data.formats import find_local_file

    return [name for name in QUICK_DRAWING_NAMES if find_local_file(directory, name) is not None]


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
    }


def merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def run_pipeline(root: Path, settings: dict) -> dict[str, Any]:
    """The stages one after another in a project copy, as `dvc repro` runs them; seconds per stage."""
    params = load_yaml_bytes((root / "params.yaml").read_bytes(), "params.yaml")
    merge(params, settings)
    (root / "params.yaml").write_text(dump_yaml(params))
    seconds = {}
    clock_file = root / "test_clock.json"
    curve: list[dict[str, float]] = []
    for stage in STAGES:
        started = time.time()
        command = ["-m", f"tasks.{stage}"]
        env = environment(root)
        if stage == "train":
            command = ["-c", TRAIN_WITH_CLOCK, str(started), str(clock_file)]
            env["PYTHONPATH"] = f"{root}{os.pathsep}{REPO}"  # the copy's code first; bench from the checkout
        done = subprocess.run([sys.executable, *command], cwd=root, env=env, capture_output=True, text=True)
        seconds[stage] = time.time() - started
        if done.returncode != 0:
            raise SystemExit(f"{stage} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        if stage == "train":
            clocked = json.loads(clock_file.read_text())
            seconds[stage] -= clocked["own_s"]  # the clock's scoring is not the pipeline's time
            before = sum(seconds[s] for s in STAGES[: STAGES.index("train")])
            curve = [{**p, "seconds": before + p["seconds"]} for p in clocked["points"]]
    metrics = read_metrics(Catalog.under(root))
    history = json.loads(Catalog.under(root).history.read_text())
    # The last point: the model the evaluate stage scored, once every stage has run.
    curve.append({"epoch": history["epochs_run"], "seconds": sum(seconds.values()), "accuracy": metrics["accuracy"]})
    return {
        "curve": curve,
        "accuracy": metrics["accuracy"],
        "map_at_3": metrics["map_at_3"],
        "seconds": seconds,
        "wall_s": sum(seconds.values()),
        "epochs": history["epochs_run"],
        "hyperparameters": history["hyperparameters"],
        "precision": history.get("precision", "float32"),  # what train.precision resolved to (the recipe: float32)
    }


def run_recipe(catalog: Catalog, seed: int, max_epochs: int, patience: int) -> dict[str, Any]:
    """The tutorial's fixed recipe on the pipeline's own split, scored like the evaluate stage."""
    from quickdraw_dag.artifacts import read_categories, read_scaling
    from quickdraw_dag.data.stream import MemmapBatches, open_split
    from quickdraw_dag.training.determinism import seed_everything
    from quickdraw_dag.training.model import build_cnn, load_model
    from tasks.evaluate import classification_metrics

    started = time.time()
    seed_everything(seed)
    categories = read_categories(catalog)
    train_x, train_y = open_split(catalog, "train")
    val_x, val_y = open_split(catalog, "val")
    test_x, test_y = open_split(catalog, "test")
    model = build_cnn(
        image_size=int(train_x.shape[1]),
        num_classes=len(categories),
        scaling=read_scaling(catalog),
        filters=32,
        learning_rate=1e-3,
        dropout=0.3,
        activation="relu",
        optimizer="adam",
        l2=1e-5,
        l1=0.0,
        batch_norm=False,
        augment=None,
        seed=seed,
    )
    clock = TestClock(test_x, test_y, start=started)
    with tempfile.TemporaryDirectory() as scratch:
        best = Path(scratch) / "best.keras"
        history = model.fit(
            MemmapBatches(train_x, train_y, batch_size=128, shuffle=True, seed=seed),
            validation_data=MemmapBatches(val_x, val_y, batch_size=128, shuffle=False),
            epochs=max_epochs,
            shuffle=False,  # MemmapBatches shuffles itself, seeded
            callbacks=[
                keras.callbacks.EarlyStopping("val_loss", patience=patience),
                keras.callbacks.ModelCheckpoint(str(best), monitor="val_accuracy", mode="max", save_best_only=True),
                clock,
            ],
            verbose=0,
        )
        model = load_model(str(best))
    probabilities = model.predict(MemmapBatches(test_x, test_y, batch_size=512, shuffle=False), verbose=0)
    result = classification_metrics(np.asarray(test_y, np.int64), probabilities, len(categories))
    return {
        "accuracy": result["accuracy"],
        "map_at_3": result["map_at_3"],
        "wall_s": time.time() - started - clock.own_s,
        "epochs": len(history.history["loss"]),
        "curve": clock.points,
    }


def epochs_curve(
    source: str, categories: list[str], seeds: list[int], epochs_list: list[int]
) -> dict[int, list[float]]:
    """Test accuracy after N epochs (cosine over N, no step budget) of the default recipe, per seed."""
    from quickdraw_dag.config.schema import EvaluateParams, TrainParams
    from tasks.evaluate import evaluate
    from tasks.train import train

    curve: dict[int, list[float]] = {n: [] for n in epochs_list}
    with tempfile.TemporaryDirectory() as scratch:
        root = copy_project(Path(scratch) / "curve")
        params = load_yaml_bytes((root / "params.yaml").read_bytes(), "params.yaml")
        merge(params, {"data": {"source": source, "categories": categories}, "mlflow": {"enabled": False}})
        (root / "params.yaml").write_text(dump_yaml(params))
        for stage in ("fetch", "split", "preprocess", "tune"):
            done = subprocess.run(
                [sys.executable, "-m", f"tasks.{stage}"],
                cwd=root,
                env=environment(root),
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
        catalog = Catalog.under(root)
        defaults = TrainParams.model_validate(params["train"])
        for epochs in epochs_list:
            for seed in seeds:
                train(
                    defaults.model_copy(
                        update={"epochs": epochs, "max_steps": None, "seed": seed, "max_seconds": None}
                    ),
                    catalog,
                )
                curve[epochs].append(
                    evaluate(EvaluateParams(misclassified=0, samples_per_class=1), catalog)["accuracy"]
                )
                print(f"{epochs} epochs, seed {seed}: {curve[epochs][-1]:.4f}", flush=True)
    return curve


def run_search(root: Path, override: str, pipeline: dict[str, Any]) -> dict[str, Any]:
    """The tune stage with `override` (a searched space) on the pipeline's data, against its untuned default.

    When the search chooses the point the pipeline trained, its model is the pipeline's; otherwise the
    choice is trained and scored with the pipeline's own train and evaluate params, so both are measured.
    """
    from quickdraw_dag.config.loading import load_params
    from quickdraw_dag.config.schema import EvaluateParams
    from tasks.evaluate import evaluate
    from tasks.train import train
    from tasks.tune import tune

    params = load_params(root / "params.yaml", [override], root=None)
    catalog = Catalog.under(root)
    started = time.time()
    chosen = tune(params.tune, catalog)["hyperparameters"]
    seconds = time.time() - started
    searched = {"override": override, "chosen": chosen, "seconds": seconds, "default": pipeline["hyperparameters"]}
    if chosen == pipeline["hyperparameters"]:
        return {**searched, "same_as_default": True, "accuracy": pipeline["accuracy"], "train_s": 0.0}
    started = time.time()
    train(params.train, catalog)
    train_s = time.time() - started
    accuracy = evaluate(EvaluateParams(misclassified=0, samples_per_class=1), catalog)["accuracy"]
    return {**searched, "same_as_default": False, "accuracy": accuracy, "train_s": train_s}


def time_to(curve: list[dict[str, float]], accuracy: float) -> float | None:
    """Seconds at the first point of `curve` at or above `accuracy` (None: never)."""
    return next((p["seconds"] for p in curve if p["accuracy"] >= accuracy - 1e-9), None)


def time_to_accuracy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed: when each side first reaches the recipe's final test accuracy, and their ratio."""
    rows = []
    for ours, theirs in zip(result["pipeline"], result["recipe"]):
        target = theirs["accuracy"]
        pipeline_s, recipe_s = time_to(ours["curve"], target), time_to(theirs["curve"], target)
        ratio = pipeline_s / recipe_s if pipeline_s is not None and recipe_s else None
        rows.append(
            {"seed": ours["seed"], "target": target, "pipeline_s": pipeline_s, "recipe_s": recipe_s, "ratio": ratio}
        )
    return rows


def curve_table(result: dict[str, Any]) -> str:
    """Test accuracy against seconds, epoch by epoch, each side and seed."""
    lines = ["| side | seed | epoch | seconds | test accuracy |", "|---|---:|---:|---:|---:|"]
    for side in ("pipeline", "recipe"):
        for run in result[side]:
            for point in run["curve"]:
                lines.append(
                    f"| {side} | {run['seed']} | {point['epoch']} | {point['seconds']:.0f} | "
                    f"{100 * point['accuracy']:.2f} |"
                )
    return "\n".join(lines)


def plot_curves(result: dict[str, Any], path: Path) -> None:
    """Both sides' curves, one line per seed, and the recipe's final accuracy (mean) as a line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=110)
    axes = figure.add_subplot()
    for side, colour in (("pipeline", "tab:blue"), ("recipe", "tab:orange")):
        for index, run in enumerate(result[side]):
            axes.plot(
                [p["seconds"] for p in run["curve"]],
                [100 * p["accuracy"] for p in run["curve"]],
                marker="o",
                markersize=3,
                color=colour,
                alpha=0.85,
                label=f"{'pipeline, end to end' if side == 'pipeline' else 'tutorial recipe, training'}"
                if index == 0
                else None,
            )
    target = 100 * statistics.fmean(r["accuracy"] for r in result["recipe"])
    axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"recipe's final accuracy ({target:.2f}%)")
    finals = [100 * p["accuracy"] for side in ("pipeline", "recipe") for r in result[side] for p in r["curve"]]
    axes.set_ylim(max(min(finals), target - 30) - 1, max(finals) + 1)  # early epochs far below: cut off
    axes.set_xlim(left=0)
    axes.set_xlabel("wall-clock seconds (pipeline: from the start of fetch; recipe: from the start of its training)")
    axes.set_ylabel("test accuracy (%)")
    counts = result["counts"]
    axes.set_title(
        f"Time to accuracy: {len(result['categories'])} classes, {sum(counts.values()) if isinstance(counts, dict) else counts} "
        f"drawings, seeds {result['seeds']}"
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def spread(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation (0 for one value), worst."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, min(values)


def measure(
    source: str,
    categories: list[str],
    seeds: list[int],
    recipe_epochs: int,
    extra: dict,
    synthetic_drawings: int | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"source": source, "categories": categories}
    settings: dict[str, Any] = {"data": data, **extra}
    if synthetic_drawings:
        merge(settings, {"fetch": {"synthetic_drawings": synthetic_drawings}})
    pipeline, recipe, searches = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            root = copy_project(Path(scratch) / f"seed{seed}")
            seeded = json.loads(json.dumps(settings))
            merge(seeded, {"tune": {"seed": seed}, "train": {"seed": seed}})
            pipeline.append({"seed": seed, **run_pipeline(root, seeded)})
            print(f"seed {seed}: pipeline {pipeline[-1]['accuracy']:.4f} in {pipeline[-1]['wall_s']:.0f} s", flush=True)
            recipe.append({"seed": seed, **run_recipe(Catalog.under(root), seed, recipe_epochs, patience=10)})
            print(f"seed {seed}: recipe   {recipe[-1]['accuracy']:.4f} in {recipe[-1]['wall_s']:.0f} s", flush=True)
            if search:  # last: it may retrain in the copy, after both sides have read their results
                searches.append({"seed": seed, **run_search(root, search, pipeline[-1])})
                print(f"seed {seed}: search   {searches[-1]['chosen']} in {searches[-1]['seconds']:.0f} s", flush=True)
        counts = json.loads(Catalog.under(root).preprocess_summary.read_text())["counts"]
    return {
        "source": source,
        "categories": categories,
        "seeds": seeds,
        "counts": counts,
        "recipe_epochs": recipe_epochs,
        "pipeline": pipeline,
        "recipe": recipe,
        "searches": searches,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{len(result['categories'])} classes from {result['source']}: {result['counts']} images "
        f"(train/val/test), seeds {result['seeds']}",
        "",
        "| side | test accuracy (mean ± std) | worst seed | MAP@3 (mean ± std) | epochs | wall s (mean) |",
        "|---|---|---:|---|---:|---:|",
    ]
    for side in ("pipeline", "recipe"):
        runs = result[side]
        accuracy = spread([r["accuracy"] for r in runs])
        map3 = spread([r["map_at_3"] for r in runs])
        name = "pipeline (defaults)" if side == "pipeline" else f"tutorial recipe (≤ {result['recipe_epochs']} epochs)"
        lines.append(
            f"| {name} | {100 * accuracy[0]:.2f} ± {100 * accuracy[1]:.2f} | {100 * accuracy[2]:.2f} | "
            f"{100 * map3[0]:.2f} ± {100 * map3[1]:.2f} | {statistics.fmean(r['epochs'] for r in runs):.1f} | "
            f"{statistics.fmean(r['wall_s'] for r in runs):.0f} |"
        )
    stages = {s: statistics.fmean(r["seconds"][s] for r in result["pipeline"]) for s in STAGES}
    lines += ["", "pipeline seconds per stage (mean): " + ", ".join(f"{s} {v:.0f}" for s, v in stages.items())]
    ours = spread([r["accuracy"] for r in result["pipeline"]])
    theirs = spread([r["accuracy"] for r in result["recipe"]])
    gain = 100 * (ours[0] - theirs[0])
    verdict = "better" if ours[2] > theirs[0] else "not shown better"
    lines.append(
        f"pipeline − recipe: {gain:+.2f} points (means); worst pipeline seed {100 * ours[2]:.2f} vs recipe "
        f"mean {100 * theirs[0]:.2f}: {verdict}"
    )
    lines += [
        "",
        "time to the recipe's final test accuracy (pipeline: end to end from fetch; recipe: its training):",
        "",
        "| seed | recipe's final accuracy | pipeline s | recipe s | ratio (pipeline / recipe) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in time_to_accuracy(result):
        reached = "not reached" if row["pipeline_s"] is None else f"{row['pipeline_s']:.0f}"
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}"
        recipe = "—" if row["recipe_s"] is None else f"{row['recipe_s']:.0f}"
        lines.append(f"| {row['seed']} | {100 * row['target']:.2f} | {reached} | {recipe} | {ratio} |")
    lines += search_table(result)
    return "\n".join(lines)


def search_table(result: dict[str, Any]) -> list[str]:
    """The search's choice against the untuned default, per seed, and what the search cost."""
    if not result.get("searches"):
        return []
    lines = [
        "",
        f"the search ({result['searches'][0]['override']}) against the pipeline's default, on the same split:",
        "",
        "| seed | search chose | search s | share of the pipeline | test accuracy: search / default |",
        "|---:|---|---:|---:|---|",
    ]
    for found, ours in zip(result["searches"], result["pipeline"]):
        differs = {k: v for k, v in found["chosen"].items() if found["default"].get(k) != v}
        chose = "the default" if found["same_as_default"] else ", ".join(f"{k}={v}" for k, v in differs.items())
        lines.append(
            f"| {found['seed']} | {chose} | {found['seconds']:.0f} | {100 * found['seconds'] / ours['wall_s']:.1f}% | "
            f"{100 * found['accuracy']:.2f} / {100 * ours['accuracy']:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a folder of Google's files, or 'synthetic'")
    parser.add_argument("--categories", nargs="+", help="default: every category in the folder (synthetic: all 10)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recipe-epochs", type=int, default=15)
    parser.add_argument("--synthetic-drawings", type=int, default=4000, help="per category, for 'synthetic'")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params override for the pipeline side (YAML value), e.g. train.epochs=20",
    )
    parser.add_argument(
        "--search",
        default="tune.space.dropout=[0.3, 0.4]",
        metavar="KEY=VALUES",
        help="after each seed, the tune stage with this searched space against the untuned default ('none': skip)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw figures as one JSON line too")
    parser.add_argument(
        "--fewer-seeds", action="store_true", help="allow fewer than 3 seeds on real drawings (no spread: say so)"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path("bench/out/time_to_accuracy.png"),
        help="where to draw test accuracy against seconds (a PNG)",
    )
    parser.add_argument("--epochs-curve", action="store_true", help="measure accuracy against epochs instead")
    parser.add_argument("--curve-epochs", nargs="+", type=int, default=[5, 10, 15, 25])
    args = parser.parse_args()
    # Real drawings: at least 3 seeds, so that the spread means something. Synthetic shapes sit near
    # 100% for any recipe (the spread says nothing there), and the learning curve is an estimate.
    if len(args.seeds) < 3 and args.source != "synthetic" and not args.epochs_curve and not args.fewer_seeds:
        parser.error("--seeds: at least 3 on real drawings, so that the spread means something")
    extra: dict = {}
    for override in args.overrides:
        key, _, value = override.partition("=")
        node = extra
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = load_yaml(value, f"--set {key}", max_bytes=MAX_VALUE_BYTES)
    if args.source == "synthetic":
        from quickdraw_dag.config.schema import SYNTHETIC_CATEGORIES

        source, categories, drawings = (
            "synthetic",
            args.categories or list(SYNTHETIC_CATEGORIES),
            args.synthetic_drawings,
        )
    else:
        directory = Path(args.source).resolve()
        source, categories, drawings = str(directory), args.categories or categories_in(directory), None
    if args.epochs_curve:
        curve = epochs_curve(source, categories, args.seeds, args.curve_epochs)
        print("| epochs | test accuracy (mean ± std) | worst seed |\n|---:|---|---:|")
        for epochs, values in curve.items():
            mean, std, worst = spread(values)
            print(f"| {epochs} | {100 * mean:.2f} ± {100 * std:.2f} | {100 * worst:.2f} |")
        print("EPOCH_CURVE = {" + ", ".join(f"{e}: {spread(v)[0]:.4f}" for e, v in curve.items()) + "}")
        return
    search = None if args.search == "none" else args.search
    result = measure(source, categories, args.seeds, args.recipe_epochs, extra, drawings, search)
    print(table(result))
    print()
    print(curve_table(result))
    plot_curves(result, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
