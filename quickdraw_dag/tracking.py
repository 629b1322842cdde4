"""MLflow tracking of a pipeline run: parent run, trial child runs, model, registry.

Default store: a SQLite file (`mlflow.db`) and an artifact folder
(`mlartifacts/`) in the project, nothing to start; `MLFLOW_TRACKING_URI` (or
`mlflow.tracking_uri`) points elsewhere. One parent run per pipeline run
holds all of params.yaml (flattened), the best hyperparameters, per-epoch
training metrics, the test metrics, the reports as artifacts and the model
(with signature and input example, registered as `quickdraw-cnn`); one
nested child run per tuning trial holds its hyperparameters, its per-epoch
val_accuracy and its status.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_dag.config import MlflowParams, Params
from quickdraw_dag.redact import redact

log = logging.getLogger(__name__)
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
REGISTERED_MODEL = "quickdraw-cnn"
CHAMPION = "champion"


def tracking_uri(params: MlflowParams) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri or DEFAULT_TRACKING_URI


def configure(params: MlflowParams) -> str:
    """Point MLflow at the store and experiment; returns the experiment id."""
    import mlflow

    uri = tracking_uri(params)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(params.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        experiment_id = mlflow.create_experiment(params.experiment, artifact_location=artifact_location(uri))
    mlflow.set_experiment(experiment_id=experiment_id)
    close_abandoned_runs(experiment_id)
    return experiment_id


def process_tags() -> dict[str, str]:
    """Who writes this run: lets a later run tell a killed writer from a live one."""
    import socket

    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def close_abandoned_runs(experiment_id: str) -> list[str]:
    """Mark KILLED, with a note, the RUNNING runs whose writer on this host is gone.

    A run killed mid-way (SIGKILL, OOM, power) never reaches its end, so
    MLflow would show it RUNNING forever. Only runs tagged by this project
    with this host's name are judged; runs from other hosts are left alone.
    """
    import mlflow
    import socket

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get("pid", "")
        if tags.get("host") != host or not pid.isdigit() or _alive(int(pid)):
            continue
        note = (f"process {pid} on {host} ended without finishing this run (killed or crashed); "
                f"marked KILLED on {time.strftime('%Y-%m-%d %H:%M:%S')} by pid {os.getpid()}")
        client.set_tag(run.info.run_id, "killed_note", note)
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
        log.warning("MLflow run %s: %s", run.info.run_id, note)
    return closed


def artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store (`<db folder>/mlartifacts`); servers choose their own."""
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        return (database.resolve().parent / DEFAULT_ARTIFACT_DIR).as_uri()
    if uri.startswith("file:") or "://" not in uri:
        return Path(DEFAULT_ARTIFACT_DIR).resolve().as_uri()
    return None


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} → {'a.b': '1'}; lists become their JSON text."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return {prefix.rstrip("."): redact(text)}  # no credentials of URLs in MLflow params


def run_name(params: Params) -> str:
    source = params.data.source_kind if params.data.source_kind != "directory" else Path(params.data.source).name
    return f"{source}-{len(params.data.categories)}cls-{time.strftime('%Y%m%d-%H%M%S')}"


def log_pipeline_run(params: Params, *, flow_run_id: str | None = None, deployment: str | None = None,
                     root: Path = Path(".")) -> dict[str, Any]:
    """Log the finished pipeline's reports, trials and model; apply the promotion gate."""
    import mlflow

    from quickdraw_dag.lineage import lineage_tags

    paths = params.paths
    reports, models = Path(paths.reports), Path(paths.models)
    configure(params.mlflow)
    metrics = json.loads((reports / "metrics.json").read_text())
    history = json.loads((reports / "history.json").read_text())
    tuning = json.loads((reports / "tuning.json").read_text()) if (reports / "tuning.json").exists() else {"trials": []}
    tags = {
        **lineage_tags(paths.processed, f"{paths.models}/model.keras", root),
        "data_source": params.data.source,
        "categories": json.dumps(list(params.data.categories)),
        "prefect_flow_run_id": flow_run_id or "none",
        "prefect_deployment": deployment or "none",
        "orchestrator": "prefect" if flow_run_id else "dvc-or-cli",
        "keras_backend": str(history.get("backend")),
        **process_tags(),
    }
    with mlflow.start_run(run_name=run_name(params), tags=tags) as parent:
        mlflow.log_params(flatten(params.model_dump(mode="json")))
        mlflow.log_params({f"best.{k}": str(v) for k, v in history["hyperparameters"].items()})
        mlflow.log_param("best.tuning_trial", str(history.get("tuning_trial")))
        for row in history["epochs"]:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        mlflow.log_metrics({f"test_{k}": float(v) for k, v in metrics.items()})
        mlflow.log_metrics({"train_seconds": float(history["seconds"]),
                            "train_images_per_second": float(history["images_per_second"])})
        for trial in tuning["trials"]:
            log_trial(trial)
        for name in ("metrics.json", "history.json", "tuning.json", "per_class.csv", "training_log.csv"):
            if (reports / name).exists():
                mlflow.log_artifact(str(reports / name), artifact_path="reports")
        if (models / "best_hparams.json").exists():
            mlflow.log_artifact(str(models / "best_hparams.json"), artifact_path="reports")
        if (reports / "plots").is_dir():
            mlflow.log_artifacts(str(reports / "plots"), artifact_path="plots")
        version = log_and_register_model(params, models / "model.keras")
        decision = promote_if_better(version, metrics["accuracy"], list(params.data.categories))
        mlflow.set_tags({"promotion.decision": decision["decision"], "promotion.reason": decision["reason"],
                         "registered_model_version": str(version)})
        run_id = parent.info.run_id
    log.info("mlflow: run %s, model version %s, %s (%s)", run_id, version, decision["decision"], decision["reason"])
    return {"run_id": run_id, "model_version": version, **decision}


def log_trial(trial: dict[str, Any]) -> None:
    import mlflow

    with mlflow.start_run(run_name=f"trial-{trial['trial_id']}", nested=True,
                          tags={"trial_status": str(trial["status"]), "trial_id": str(trial["trial_id"]),
                                **process_tags()}):
        mlflow.log_params({k: str(v) for k, v in trial["hyperparameters"].items()})
        mlflow.log_param("epochs", trial.get("epochs"))
        for step, value in enumerate(trial.get("val_accuracy_history") or [], start=1):
            mlflow.log_metric("val_accuracy", float(value), step=step)
        if trial.get("score") is not None:
            mlflow.log_metric("score", float(trial["score"]))
        if trial.get("images_per_second"):
            mlflow.log_metric("images_per_second", float(trial["images_per_second"]))


def log_and_register_model(params: Params, model_path: Path) -> int:
    """Log the model with signature and input example; returns its registry version."""
    import mlflow
    from mlflow.models import infer_signature

    from quickdraw_dag.model import load_model

    model = load_model(str(model_path))
    size = params.preprocess.image_size
    test_images = np.load(Path(params.paths.processed) / "test_images.npy", mmap_mode="r", allow_pickle=False)
    example = np.asarray(test_images[:2]) if test_images.shape[0] else np.zeros((2, size, size), np.uint8)
    signature = infer_signature(example, model.predict(example, verbose=0))
    # mlflow.keras.log_model (3.17) writes the input example before creating
    # its own folder and fails; saving into a folder we create, then logging
    # it as the run's "model" artifact and registering that, gives the same
    # MLmodel (flavor, signature, input example) in the registry.
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "model"
        local.mkdir()
        mlflow.keras.save_model(model, str(local), signature=signature, input_example=example)
        mlflow.log_artifacts(str(local), artifact_path="model")
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
        return {"decision": "promoted", "reason": f"test accuracy {accuracy:.4f} beats champion v{champion.version} ({best:.4f})"}
    return {"decision": "kept", "reason": f"test accuracy {accuracy:.4f} does not beat champion v{champion.version} ({best:.4f})"}
