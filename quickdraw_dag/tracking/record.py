"""The pipeline run's MLflow record, completed after evaluate.

The run itself is opened by the pipeline run's first stage and logged to live
(`quickdraw_dag.tracking.live_run`: trials as nested runs while they train, every
epoch as it ends); the store is `quickdraw_dag.tracking.store`. After evaluate
this adds the pipeline's params sections (flattened), the best
hyperparameters, lineage tags, the test metrics, the three splits as dataset
inputs, the reports and plots as artifacts, the run's `params.yaml` and the
`dvc.lock` it leaves (under `dvc/`: what `make reproduce` restores). The model
and its promotion are logged next, by `quickdraw_dag.serving.registry`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from quickdraw_dag.artifacts import Catalog, git_tracked_outputs, read_history, read_metrics, read_tuning_report
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
from quickdraw_dag.tracking.live_run import LiveRun

log = logging.getLogger(__name__)
REGISTERED_MODEL = "quickdraw-cnn"
CHAMPION = "champion"
RUN_RECORD = "dvc"  # the run's artifact folder holding the params.yaml and dvc.lock it ran with
REPORTS = "reports"  # the run's artifact folder holding its reports (those git keeps among them)


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

    @classmethod
    def of(cls, params: Any) -> PipelineRun:
        """The recorded sections of a whole `Params` (the contract test reads `RECORDED_SECTIONS` too)."""
        return cls(**{name: getattr(params, name) for name in RECORDED_SECTIONS})

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name).model_dump(mode="json") for field in fields(self)}


RECORDED_SECTIONS: tuple[str, ...] = tuple(field.name for field in fields(PipelineRun))


def run_name(data: DataParams) -> str:
    source = data.source_kind if data.source_kind != "directory" else Path(data.source).name
    return f"{source}-{len(data.categories)}cls-{time.strftime('%Y%m%d-%H%M%S')}"


def log_pipeline_run(
    run: PipelineRun,
    catalog: Catalog,
    live: LiveRun,
    *,
    flow_run_id: str | None = None,
    deployment: str | None = None,
    root: Path = Path("."),
) -> dict[str, Any]:
    """Complete the pipeline run's record after evaluate: params, lineage, test metrics, datasets, reports.

    Epochs and trials were logged live by train and tune; the model and the promotion gate are
    `quickdraw_dag.serving.registry.register_model`'s, called next by the evaluate stage."""
    import mlflow

    from quickdraw_dag.tracking.lineage import demo_tags, lineage_tags

    metrics = read_metrics(catalog)
    history = read_history(catalog) if catalog.history.exists() else {}
    tuning = read_tuning_report(catalog) if catalog.tuning_report.exists() else {}
    lineage = lineage_tags(str(catalog.processed), str(catalog.model), root, git_tracked_outputs(catalog))
    live.set_tags(
        {
            "mlflow.runName": run_name(run.data),
            **lineage,
            "data_source": run.data.source,
            "categories": json.dumps(list(run.data.categories)),
            "prefect_flow_run_id": flow_run_id or "none",
            "prefect_deployment": deployment or "none",
            "orchestrator": "prefect" if flow_run_id else ("dvc" if os.environ.get("DVC_STAGE") else "cli"),
            "keras_backend": str(history.get("backend")),
            **budget_tags(history, tuning),
            **demo_tags(),
            **source_tags(flow_run_id, lineage.get("git_commit")),
        }
    )
    live.log_params(run.as_dict())
    if history:
        live.log_params(
            {
                "best": history["hyperparameters"],
                "best.tuning_trial": history.get("tuning_trial"),
                "train.planned_epochs": history.get("planned_epochs"),
                # what train.precision (e.g. auto) resolved to on the machine that trained
                "train.precision_used": history.get("precision", "float32"),
            }
        )
        live.log_metrics({"train_seconds": history["seconds"], "train_images_per_second": history["images_per_second"]})
    live.log_params({"test_images": int(metrics["test_images"])})  # a count, not a metric
    test_metrics = {f"test_{k}": float(v) for k, v in metrics.items() if k != "test_images"}
    datasets = log_datasets(live, catalog, run.data, lineage["dvc_processed_md5"])
    log_test_metrics(live, test_metrics, *datasets["test"])
    with mlflow.start_run(run_id=live.run_id):
        for path in (
            catalog.metrics,
            catalog.history,
            catalog.tuning_report,
            catalog.per_class,
            catalog.training_log,
            catalog.best_hparams,
        ):
            if path.exists():
                mlflow.log_artifact(str(path), artifact_path=REPORTS)
        if catalog.plots.is_dir():
            mlflow.log_artifacts(str(catalog.plots), artifact_path="plots")
        for path in compared_artifacts(catalog):
            mlflow.log_artifact(str(path))
        log_run_record(live, root)
    return {"run_id": live.run_id, "experiment_id": live.experiment_id, "test_metrics": test_metrics}


# MLflow's compare view lists, in its Artifacts tab, only the files at the root of every run compared
# (never folders): so the headline plots and metrics sit there too, small copies of reports/ and plots/.
COMPARED_PLOTS = ("training_curves", "confusion_matrix")


def compared_artifacts(catalog: Catalog) -> list[Path]:
    """The files logged at the run's root, for the compare view: the test metrics and the headline plots."""
    paths = [catalog.metrics, *(catalog.plot(name) for name in COMPARED_PLOTS)]
    return [path for path in paths if path.exists()]


def log_run_record(live: LiveRun, root: Path, last_stage: str = "evaluate") -> None:
    """The params file and the dvc.lock this run leaves, as `dvc/params.yaml` and `dvc/dvc.lock`.

    With the run's `git_commit` they pin everything it used: code, params, and the DVC hashes of its data
    and model. A workspace that is not a DVC project (a model trained by hand) has no lock to record.
    """
    from dvc.exceptions import NotDvcRepoError

    from quickdraw_dag.config.schema import DEFAULT_PARAMS_PATH
    from quickdraw_dag.tracking.lineage import DVC_LOCK, pending_lock

    try:
        lock = pending_lock(last_stage, root)
    except NotDvcRepoError:
        log.warning("mlflow: %s is not a DVC project: the run records no dvc.lock", Path(root).resolve())
        return
    with tempfile.TemporaryDirectory(prefix="quickdraw-record-") as folder:
        (Path(folder) / DVC_LOCK).write_bytes(lock)
        (Path(folder) / DEFAULT_PARAMS_PATH.name).write_bytes((Path(root) / DEFAULT_PARAMS_PATH).read_bytes())
        live.client.log_artifacts(live.run_id, folder, RUN_RECORD)


def log_test_metrics(live: LiveRun, test_metrics: dict[str, float], dataset: str, digest: str) -> None:
    """The test metrics, once, on the run, each naming the test split's dataset.

    Logging the model (`mlflow.pyfunc.log_model`, next) links the run's step-0 metrics to it, so the
    model page lists each test metric once. (MLflow 3.17's copy drops the dataset: the model page still
    says "Datasets used: None".)
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0, dataset_name=dataset, dataset_digest=digest) for k, v in test_metrics.items()]
    live.client.log_batch(live.run_id, metrics=batch)


def log_datasets(live: LiveRun, catalog: Catalog, data: DataParams, processed_md5: str) -> dict[str, tuple[str, str]]:
    """The train, validation and test splits as the run's dataset inputs (the UI's Dataset column); their
    (name, digest) by split.

    Each is identified by the DVC hash of the processed data (the digest a user checks out with
    `dvc checkout`) and sourced from `data.source` and the categories.
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import ColSpec, Schema

    from quickdraw_dag.data.stream import open_split

    source = dataset_source(data.source, list(data.categories))
    inputs, identities = [], {}
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        images, _ = open_split(catalog, split)
        digest = processed_md5.removesuffix(".dir")[:32] if processed_md5 != "not in dvc.lock" else "unversioned"
        schema = Schema(
            [ColSpec("binary", f"image {images.shape[1]}x{images.shape[2]} uint8"), ColSpec("long", "label")]
        )
        dataset = MetaDataset(source=source, name=f"quickdraw-{split}", digest=f"{digest}-{split}"[:36], schema=schema)
        identities[split] = (dataset.name, dataset.digest)
        inputs.append(
            DatasetInput(
                dataset=dataset._to_mlflow_entity(),
                tags=[InputTag("mlflow.data.context", context), InputTag("images", str(int(images.shape[0])))],
            )
        )
    live.client.log_inputs(live.run_id, datasets=inputs)
    return identities


def dataset_source(source: str, categories: list[str]) -> Any:
    """MLflow's dataset source for the drawings: `data.source` (credentials redacted) and the categories."""
    from mlflow.data.dataset_source import DatasetSource

    from quickdraw_dag.config.redact import redact

    class QuickDrawSource(DatasetSource):
        @staticmethod
        def _get_source_type() -> str:
            return "quickdraw"

        def load(self, **kwargs: Any) -> Any:
            raise NotImplementedError("fetch it with the pipeline's fetch stage")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"data.source": redact(source), "categories": list(categories)}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> Any:
            return cls()

    return QuickDrawSource()


# What MLflow's UI shows in its Source column: the entry point that ran the pipeline, and its commit.
SOURCES = {"prefect": "flows/pipeline.py", "dvc": "dvc.yaml", "cli": "tasks/evaluate.py"}


def source_tags(flow_run_id: str | None, commit: str | None) -> dict[str, str]:
    """`mlflow.source.*`: the flow, `dvc repro`/`dvc exp run`, or the stage alone; type LOCAL; the git commit."""
    orchestrator = "prefect" if flow_run_id else ("dvc" if os.environ.get("DVC_STAGE") else "cli")
    tags = {"mlflow.source.name": SOURCES[orchestrator], "mlflow.source.type": "LOCAL"}
    if commit and commit != "none":
        tags["mlflow.source.git.commit"] = commit
    return tags


def budget_tags(history: dict[str, Any], tuning: dict[str, Any]) -> dict[str, str]:
    """What the budgets did to this run: a safety-limit cut, a step budget and its expected cost."""
    cut = [stage for stage, report in (("tune", tuning), ("train", history)) if report.get("cut_by_safety_limit")]
    tags = {"safety_cut": ",".join(cut) or "none", "deterministic": str(history.get("deterministic", "")).lower()}
    budget = history.get("budget")
    if budget:
        tags["budget.limited_by"] = str(budget["limited_by"])
        tags["budget.expected_accuracy_loss"] = f"{budget['expected_accuracy_loss']:.4f}"
        tags["budget.note"] = str(budget["note"])[:5000]
    return tags
