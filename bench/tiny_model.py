"""A small registered champion, trained in seconds through the real stage functions.

Shared by the serving tests and `bench.predict`: real drawings from the
shipped sample (its numpy_bitmap files, as `make demo` trains on them)
through fetch → split → preprocess → train → evaluate, then the pipeline's
own MLflow record into a SQLite store below `root`, so the registry holds
`quickdraw-cnn` with the alias `champion`, exactly as after `make demo`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quickdraw_dag.artifacts import Catalog, write_tuning_result

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "quickdraw"


def train_registered_model(
    root: Path,
    categories: Sequence[str] = ("bear", "duck", "frog"),
    *,
    filters: int = 8,
    epochs: int = 3,
    per_class: int | None = None,
    source: Path = SAMPLES,
    tracking_uri: str | None = None,
) -> str:
    """Train on the bitmaps in `source`, register as champion in `root/mlflow.db` (or `tracking_uri`);
    returns the tracking URI."""
    root = Path(root)
    uri = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    run = tiny_run(uri, categories, epochs=epochs, per_class=per_class, source=source)
    train_tiny(root, run, filters)
    register_tiny(root, run)
    return uri


def tiny_run(
    tracking_uri: str,
    categories: Sequence[str],
    *,
    epochs: int = 3,
    per_class: int | None = None,
    source: Path = SAMPLES,
) -> Any:
    """The PipelineRun of a tiny model: `source`'s bitmaps, a few epochs, logged to `tracking_uri`."""
    from quickdraw_dag.config.schema import (
        DataParams,
        EvaluateParams,
        FetchParams,
        MlflowParams,
        PathsParams,
        PreprocessParams,
        SplitParams,
        TrainParams,
        TuneParams,
    )
    from quickdraw_dag.tracking.record import PipelineRun

    return PipelineRun(
        data=DataParams(source=str(source), categories=tuple(categories)),
        fetch=FetchParams(),
        split=SplitParams(max_per_class=per_class),
        preprocess=PreprocessParams(),
        tune=TuneParams(),
        train=TrainParams(epochs=epochs, batch_size=64, max_seconds=None, patience=epochs),
        evaluate=EvaluateParams(misclassified=6, samples_per_class=2),
        mlflow=MlflowParams(tracking_uri=tracking_uri),
        paths=PathsParams(),
    )


def train_tiny(root: Path, run: Any, filters: int) -> Catalog:
    """fetch → split → preprocess → train → evaluate of `run` under `root`, with no MLflow."""
    from quickdraw_dag.runtime.fanout import serial_map
    from tasks.evaluate import evaluate
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split
    from tasks.train import train

    catalog = Catalog.under(Path(root))
    fetch(run.data, run.fetch, catalog)
    split(run.data, run.split, catalog)
    preprocess(run.data, run.preprocess, catalog, serial_map)
    write_tiny_candidate(catalog, filters, trial_id="tiny", val_accuracy=0.0)
    train(run.train, catalog)
    evaluate(run.evaluate, catalog)
    return catalog


def register_tiny(root: Path, run: Any) -> dict[str, Any]:
    """The pipeline's MLflow record of the model under `root`, registered through the gate; its decision."""
    from quickdraw_dag.serving.registry import register_model
    from quickdraw_dag.tracking.live_run import LiveRun
    from quickdraw_dag.tracking.record import log_pipeline_run

    catalog = Catalog.under(Path(root))
    previous = os.environ.pop("MLFLOW_TRACKING_URI", None)  # the run's own store, whatever the caller's
    try:
        live = LiveRun.create(run.mlflow, run_name="tiny-champion", tags={"orchestrator": "bench.tiny_model"})
        tracked = log_pipeline_run(run, catalog, live, root=Path(root))
        accuracy = tracked["test_metrics"]["test_accuracy"]
        decision = register_model(catalog, live.run_id, tracked["test_metrics"], accuracy, list(run.data.categories))
        live.end("FINISHED")
    finally:
        if previous is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return {**decision, "run_id": live.run_id, "accuracy": accuracy}


def write_tiny_candidate(catalog: Catalog, filters: int, trial_id: str, val_accuracy: float) -> None:
    """A tuning result with one small candidate, as tune writes it: train then runs without a search."""

    hyperparameters = {
        "filters": filters,
        "learning_rate": 0.003,
        "dropout": 0.3,
        "activation": "relu",
        "optimizer": "adam",
        "l2": 1e-5,
        "l1": 0.0,
        "batch_norm": False,
    }
    candidate = {
        "trial_id": trial_id,
        "val_accuracy": val_accuracy,
        "images_per_second": 1e6,
        "hyperparameters": hyperparameters,
    }
    catalog.models.mkdir(parents=True, exist_ok=True)
    write_tuning_result(catalog, {**candidate, "candidates": [candidate]})  # type: ignore[typeddict-item]
