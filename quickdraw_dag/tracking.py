"""MLflow tracking of a pipeline run: parent run, trial child runs, model, registry.

The store itself (where runs go, closing runs of killed writers) is
`quickdraw_dag.mlflow_store`. One parent run per pipeline run
holds the pipeline's params sections (flattened), the best hyperparameters, per-epoch
training metrics, the test metrics, the reports as artifacts and the model
(an MLflow pyfunc taking strokes or images, with signature and input
examples, registered as `quickdraw-cnn`); one
nested child run per tuning trial holds its hyperparameters, its per-epoch
val_accuracy and its status.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from quickdraw_dag.artifacts import Catalog, read_history, read_metrics, read_tuning_report
from quickdraw_dag.config import (
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
from quickdraw_dag.mlflow_store import configure, flatten, process_tags

log = logging.getLogger(__name__)
REGISTERED_MODEL = "quickdraw-cnn"
CHAMPION = "champion"


@dataclass(frozen=True)
class PipelineRun:
    """The params sections a pipeline run's MLflow record holds (the paint flow's are not among them)."""

    data: DataParams
    fetch: FetchParams
    split: SplitParams
    preprocess: PreprocessParams
    tune: TuneParams
    train: TrainParams
    evaluate: EvaluateParams
    mlflow: MlflowParams
    paths: PathsParams

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name).model_dump(mode="json") for field in fields(self)}


def run_name(data: DataParams) -> str:
    source = data.source_kind if data.source_kind != "directory" else Path(data.source).name
    return f"{source}-{len(data.categories)}cls-{time.strftime('%Y%m%d-%H%M%S')}"


def log_pipeline_run(
    run: PipelineRun,
    catalog: Catalog,
    *,
    flow_run_id: str | None = None,
    deployment: str | None = None,
    root: Path = Path("."),
) -> dict[str, Any]:
    """Log the finished pipeline's reports, trials and model; apply the promotion gate."""
    import mlflow

    from quickdraw_dag.lineage import lineage_tags

    configure(run.mlflow)
    metrics = read_metrics(catalog)
    history = read_history(catalog)
    tuning = read_tuning_report(catalog) if catalog.tuning_report.exists() else {"trials": []}
    tags = {
        **lineage_tags(str(catalog.processed), str(catalog.model), root),
        "data_source": run.data.source,
        "categories": json.dumps(list(run.data.categories)),
        "prefect_flow_run_id": flow_run_id or "none",
        "prefect_deployment": deployment or "none",
        "orchestrator": "prefect" if flow_run_id else "dvc-or-cli",
        "keras_backend": str(history.get("backend")),
        **process_tags(),
    }
    with mlflow.start_run(run_name=run_name(run.data), tags=tags) as parent:
        mlflow.log_params(flatten(run.as_dict()))
        mlflow.log_params({f"best.{k}": str(v) for k, v in history["hyperparameters"].items()})
        mlflow.log_param("best.tuning_trial", str(history.get("tuning_trial")))
        mlflow.log_param("test_images", int(metrics["test_images"]))  # a count, not a metric
        for row in history["epochs"]:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        mlflow.log_metrics({f"test_{k}": float(v) for k, v in metrics.items() if k != "test_images"})
        mlflow.log_metrics(
            {"train_seconds": float(history["seconds"]), "train_images_per_second": float(history["images_per_second"])}
        )
        for trial in tuning["trials"]:
            log_trial(trial)
        for path in (
            catalog.metrics,
            catalog.history,
            catalog.tuning_report,
            catalog.per_class,
            catalog.training_log,
            catalog.best_hparams,
        ):
            if path.exists():
                mlflow.log_artifact(str(path), artifact_path="reports")
        if catalog.plots.is_dir():
            mlflow.log_artifacts(str(catalog.plots), artifact_path="plots")
        version = log_and_register_model(catalog)
        decision = promote_if_better(version, metrics["accuracy"], list(run.data.categories))
        mlflow.set_tags(
            {
                "promotion.decision": decision["decision"],
                "promotion.reason": decision["reason"],
                "registered_model_version": str(version),
            }
        )
        run_id = parent.info.run_id
    log.info("mlflow: run %s, model version %s, %s (%s)", run_id, version, decision["decision"], decision["reason"])
    return {"run_id": run_id, "model_version": version, **decision}


def log_trial(trial: dict[str, Any]) -> None:
    import mlflow

    with mlflow.start_run(
        run_name=f"trial-{trial['trial_id']}",
        nested=True,
        tags={"trial_status": str(trial["status"]), "trial_id": str(trial["trial_id"]), **process_tags()},
    ):
        mlflow.log_params({k: str(v) for k, v in trial["hyperparameters"].items()})
        mlflow.log_param("epochs", trial.get("epochs"))
        for step, value in enumerate(trial.get("val_accuracy_history") or [], start=1):
            mlflow.log_metric("val_accuracy", float(value), step=step)
        if trial.get("score") is not None:
            mlflow.log_metric("score", float(trial["score"]))
        if trial.get("images_per_second"):
            mlflow.log_metric("images_per_second", float(trial["images_per_second"]))


def log_and_register_model(catalog: Catalog) -> int:
    """Log the model as a pyfunc taking strokes or images (`quickdraw_dag.serving`); returns its registry version."""
    import mlflow

    from quickdraw_dag.serving.pyfunc import log_pyfunc_model

    log_pyfunc_model(catalog, artifact_path="model")
    run_id = mlflow.active_run().info.run_id
    version = mlflow.register_model(f"runs:/{run_id}/model", REGISTERED_MODEL)
    return int(version.version)


def promote_if_better(version: int, accuracy: float, categories: list[str]) -> dict[str, str]:
    """Move the `champion` alias only when `version` beats it on the same label set."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    labels = json.dumps(categories)
    client.set_model_version_tag(REGISTERED_MODEL, str(version), "categories", labels)
    client.set_model_version_tag(REGISTERED_MODEL, str(version), "test_accuracy", f"{accuracy:.6f}")
    try:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(version))
        return {"decision": "promoted", "reason": "no champion yet"}
    if champion.tags.get("categories") != labels:
        return {"decision": "kept", "reason": f"champion v{champion.version} was trained on another label set"}
    best = float(champion.tags.get("test_accuracy", "nan"))
    if accuracy > best:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(version))
        return {
            "decision": "promoted",
            "reason": f"test accuracy {accuracy:.4f} beats champion v{champion.version} ({best:.4f})",
        }
    return {
        "decision": "kept",
        "reason": f"test accuracy {accuracy:.4f} does not beat champion v{champion.version} ({best:.4f})",
    }
