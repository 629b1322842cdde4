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

import yaml

from bench.workspace import copy_project
from quickdraw_dag.artifacts import Catalog, read_metrics

BIN = Path(sys.executable).parent
STAGES = ("fetch", "split", "preprocess", "tune", "train", "evaluate")


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
    params = yaml.safe_load((root / "params.yaml").read_text())
    merge(params, settings)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    seconds = {}
    for stage in STAGES:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", f"tasks.{stage}"], cwd=root, env=environment(root), capture_output=True, text=True
        )
        seconds[stage] = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{stage} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    metrics = read_metrics(Catalog.under(root))
    history = json.loads(Catalog.under(root).history.read_text())
    return {
        "accuracy": metrics["accuracy"],
        "map_at_3": metrics["map_at_3"],
        "seconds": seconds,
        "wall_s": sum(seconds.values()),
        "epochs": history["epochs_run"],
        "hyperparameters": history["hyperparameters"],
    }


def run_recipe(catalog: Catalog, seed: int, max_epochs: int, patience: int) -> dict[str, Any]:
    """The tutorial's fixed recipe on the pipeline's own split, scored like the evaluate stage."""
    import keras
    import numpy as np

    from quickdraw_dag.artifacts import read_categories, read_scaling
    from quickdraw_dag.data.stream import MemmapBatches, open_split
    from quickdraw_dag.training.determinism import seed_everything
    from quickdraw_dag.training.model import build_cnn, load_model
    from tasks.evaluate import classification_metrics

    started = time.perf_counter()
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
            ],
            verbose=0,
        )
        model = load_model(str(best))
    probabilities = model.predict(MemmapBatches(test_x, test_y, batch_size=512, shuffle=False), verbose=0)
    result = classification_metrics(np.asarray(test_y, np.int64), probabilities, len(categories))
    return {
        "accuracy": result["accuracy"],
        "map_at_3": result["map_at_3"],
        "wall_s": time.perf_counter() - started,
        "epochs": len(history.history["loss"]),
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
        params = yaml.safe_load((root / "params.yaml").read_text())
        merge(params, {"data": {"source": source, "categories": categories}, "mlflow": {"enabled": False}})
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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
) -> dict[str, Any]:
    data: dict[str, Any] = {"source": source, "categories": categories}
    settings: dict[str, Any] = {"data": data, **extra}
    if synthetic_drawings:
        merge(settings, {"fetch": {"synthetic_drawings": synthetic_drawings}})
    pipeline, recipe = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            root = copy_project(Path(scratch) / f"seed{seed}")
            seeded = json.loads(json.dumps(settings))
            merge(seeded, {"tune": {"seed": seed}, "train": {"seed": seed}})
            pipeline.append({"seed": seed, **run_pipeline(root, seeded)})
            print(f"seed {seed}: pipeline {pipeline[-1]['accuracy']:.4f} in {pipeline[-1]['wall_s']:.0f} s", flush=True)
            recipe.append({"seed": seed, **run_recipe(Catalog.under(root), seed, recipe_epochs, patience=10)})
            print(f"seed {seed}: recipe   {recipe[-1]['accuracy']:.4f} in {recipe[-1]['wall_s']:.0f} s", flush=True)
        counts = json.loads(Catalog.under(root).preprocess_summary.read_text())["counts"]
    return {
        "source": source,
        "categories": categories,
        "seeds": seeds,
        "counts": counts,
        "recipe_epochs": recipe_epochs,
        "pipeline": pipeline,
        "recipe": recipe,
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
    return "\n".join(lines)


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
    parser.add_argument("--json", action="store_true", help="print the raw figures as one JSON line too")
    parser.add_argument("--epochs-curve", action="store_true", help="measure accuracy against epochs instead")
    parser.add_argument("--curve-epochs", nargs="+", type=int, default=[5, 10, 15, 25])
    args = parser.parse_args()
    # Real drawings: at least 3 seeds, so that the spread means something. Synthetic shapes sit near
    # 100% for any recipe (the spread says nothing there), and the learning curve is an estimate.
    if len(args.seeds) < 3 and args.source != "synthetic" and not args.epochs_curve:
        parser.error("--seeds: at least 3 on real drawings, so that the spread means something")
    extra: dict = {}
    for override in args.overrides:
        key, _, value = override.partition("=")
        node = extra
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
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
    result = measure(source, categories, args.seeds, args.recipe_epochs, extra, drawings)
    print(table(result))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
