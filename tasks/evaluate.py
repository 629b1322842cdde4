"""evaluate: the saved model on the test split only.

Metrics: accuracy, top-3 accuracy, MAP@3 (the Kaggle Quick, Draw!
competition's metric), macro precision/recall/F1, a per-class table and the
confusion matrix. Writes the metrics (for `dvc metrics`), the per-class
table, the predictions (for `dvc plots`' confusion template) and the plots,
then logs the whole pipeline run to MLflow.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from quickdraw_dag.artifacts import (
    PER_CLASS_COLUMNS,
    Catalog,
    Metrics,
    read_categories,
    read_history,
    read_per_class,
    write_csv,
    write_metrics,
)
from quickdraw_dag.config.schema import EvaluateParams, Params
from quickdraw_dag.data.stream import MemmapBatches, open_split
from quickdraw_dag.errors import DataError
from quickdraw_dag.runtime.cli import run_entry_point
from quickdraw_dag.tracking.lineage import orchestrator_ids
from quickdraw_dag.tracking.live_run import tracked_stage
from quickdraw_dag.tracking.store import close_stopped_runs
from quickdraw_dag.training import plots
from quickdraw_dag.training.model import load_model
from quickdraw_dag.training.stopping import stop_when_signalled

log = logging.getLogger(__name__)


def top_k(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most probable classes, most probable first."""
    k = min(k, probabilities.shape[1])
    part = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probabilities, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: int) -> dict[str, Any]:
    """Pure metrics from true labels and predicted probabilities."""
    ranked = top_k(probabilities, 3)
    predicted = ranked[:, 0]
    hits = ranked == labels[:, None]
    reciprocal = (hits / np.arange(1, ranked.shape[1] + 1)).sum(axis=1)
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    true_positive = np.diag(matrix).astype(float)
    predicted_count = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted_count > 0, true_positive / predicted_count, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float((predicted == labels).mean()),
        "top3_accuracy": float(hits.any(axis=1).mean()),
        "map_at_3": float(reciprocal.mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "test_images": int(labels.shape[0]),
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": support},
        "confusion": matrix,
        "predicted": predicted,
        "top3": ranked,
    }


def evaluate(params: EvaluateParams, catalog: Catalog) -> Metrics:
    """Run the evaluate stage; returns the headline metrics."""
    if not catalog.model.exists():
        raise DataError("missing: run the train stage first", path=catalog.model)
    model = load_model(str(catalog.model))
    categories = read_categories(catalog)
    test_x, test_y = open_split(catalog, "test")
    labels = np.asarray(test_y, np.int64)
    batches = MemmapBatches(test_x, test_y, batch_size=params.batch_size, shuffle=False)
    probabilities = model.predict(batches, verbose=0, callbacks=stop_when_signalled())
    result = classification_metrics(labels, probabilities, len(categories))
    headline: Metrics = {
        k: result[k]
        for k in (
            "accuracy",
            "top3_accuracy",
            "map_at_3",
            "macro_precision",  # type: ignore[assignment]
            "macro_recall",
            "macro_f1",
            "test_images",
        )
    }
    write_metrics(catalog, headline)
    per_class = result["per_class"]
    write_csv(
        catalog.per_class,
        PER_CLASS_COLUMNS,
        [
            [
                c,
                f"{per_class['precision'][i]:.4f}",
                f"{per_class['recall'][i]:.4f}",
                f"{per_class['f1'][i]:.4f}",
                int(per_class["support"][i]),
            ]
            for i, c in enumerate(categories)
        ],
    )
    write_csv(
        catalog.predictions,
        ["index", "actual", "predicted", "probability", "top3"],
        [
            [
                i,
                categories[labels[i]],
                categories[result["predicted"][i]],
                f"{probabilities[i, result['predicted'][i]]:.4f}",
                "|".join(categories[j] for j in result["top3"][i]),
            ]
            for i in range(labels.shape[0])
        ],
    )
    write_images(result, probabilities, test_x, labels, categories, params, catalog, model)
    log.info(
        "evaluate: accuracy %.4f, top-3 %.4f, MAP@3 %.4f on %d test images",
        headline["accuracy"],
        headline["top3_accuracy"],
        headline["map_at_3"],
        headline["test_images"],
    )
    return headline


def write_images(
    result: dict[str, Any],
    probabilities: np.ndarray,
    test_x: np.ndarray,
    labels: np.ndarray,
    categories: list[str],
    params: EvaluateParams,
    catalog: Catalog,
    model: keras.Model,
) -> None:
    if catalog.history.exists():
        plots.training_curves(read_history(catalog), catalog.plot("training_curves"))
    plots.confusion_views(result["confusion"], categories, catalog.plots)
    wrong = np.flatnonzero(result["predicted"] != labels)
    # the most confident mistakes first: the most instructive ones
    wrong = wrong[np.argsort(-probabilities[wrong, result["predicted"][wrong]], kind="stable")][: params.misclassified]
    plots.image_grid(
        np.asarray(test_x[np.sort(wrong)]) if wrong.size else np.zeros((0, 1, 1)),
        [
            textwrap.fill(f"true {categories[labels[i]]}", 22) + "\n" + textwrap.fill(f"pred {categories[p]}", 22)
            for i, p in zip(np.sort(wrong), result["predicted"][np.sort(wrong)])
        ],
        catalog.plot("misclassified"),
        columns=6,
        title=f"Misclassified test drawings ({wrong.size} shown)",
    )
    # Every class up to plots.MANY_CLASSES; above, the worst classes only (344 rows of drawings: 1.3 MB, unreadable).
    shown, title = sample_classes(result["confusion"])
    accuracy = plots.per_class_accuracy(result["confusion"])
    samples, titles = [], []
    for index in shown:
        members = np.flatnonzero(labels == index)[: params.samples_per_class]
        samples.extend(np.asarray(test_x[members]))
        if len(categories) <= plots.MANY_CLASSES:
            titles.extend([categories[index]] * members.size)
        else:  # the name, wrapped, over a class's first drawing only: long names would run into each other
            name = textwrap.fill(f"{categories[index]} ({accuracy[index]:.0%})", 16)
            titles.extend([name] + [""] * (members.size - 1))
    plots.image_grid(
        np.asarray(samples),
        titles,
        catalog.plot("samples_per_class"),
        columns=params.samples_per_class,
        title=title,
    )
    first_conv = model.get_layer("block1_conv1")
    probe = keras.Model(model.inputs, first_conv.output)
    drawing = np.asarray(test_x[:1])
    activations = keras.ops.convert_to_numpy(probe([drawing]))[0]  # a list, as the model was built: no warning
    kernels = keras.ops.convert_to_numpy(first_conv.kernel)
    plots.feature_maps(drawing[0], kernels, activations, catalog.plot("feature_maps"))


def sample_classes(matrix: np.ndarray) -> tuple[list[int], str]:
    """The classes whose test drawings the samples grid shows, and its title."""
    classes = matrix.shape[0]
    if classes <= plots.MANY_CLASSES:
        return list(range(classes)), "Test drawings per class"
    worst = plots.worst_classes(matrix)
    return [int(i) for i in worst], f"Test drawings of the {worst.size} least accurate of {classes} classes (accuracy)"


def run(params: Params) -> dict[str, Any]:
    """The stage as DVC and Prefect call it; it completes and closes the pipeline run's MLflow record.

    Tracking lives here, in the last stage, so `dvc repro` on its own records a run exactly as a
    Prefect flow run does (without a flow-run id). Returns the headline metrics, the per-class
    scores and, when tracked, the MLflow run, registered model version and promotion decision
    (what the flow publishes as the run's Prefect artifacts).
    """
    catalog = Catalog.from_paths(params.paths)
    with tracked_stage("evaluate", params.mlflow, closes=True) as live:
        metrics: dict[str, Any] = {**evaluate(params.evaluate, catalog), "per_class": read_per_class(catalog)}
        if live is not None:
            from quickdraw_dag.serving.registry import register_model
            from quickdraw_dag.tracking.record import PipelineRun, log_pipeline_run

            flow_run_id, deployment_name = orchestrator_ids()
            run = PipelineRun.of(params)  # every section this run's MLflow record holds
            tracked = log_pipeline_run(run, catalog, live, flow_run_id=flow_run_id, deployment=deployment_name)
            held_back = experiment_held_back()
            if held_back is None:
                tracked |= register_model(
                    catalog, live.run_id, tracked["test_metrics"], metrics["accuracy"], list(params.data.categories)
                )
            else:
                tracked |= register_unpromoted(catalog, live.run_id, tracked["test_metrics"], held_back)
            metrics = {
                **metrics,
                "mlflow_run_id": tracked["run_id"],
                "mlflow_experiment_id": tracked["experiment_id"],
                "model_version": tracked["model_version"],
                "promotion": tracked["decision"],
                "promotion_reason": tracked["reason"],
            }
    return metrics


# A DVC experiment (`dvc exp run`, queued or not) tries something: its model is registered, but the
# `champion` alias, which predict, play and serve-model follow, moves only when this is set to 1.
PROMOTE_EXPERIMENTS_ENV = "QUICKDRAW_PROMOTE_EXPERIMENTS"


def experiment_held_back() -> str | None:
    """Why this run's model stays out of promotion (a DVC experiment, not asked to promote); None: gate it."""
    from quickdraw_dag.tracking.lineage import experiment_tags

    name = experiment_tags().get("dvc_exp_name")
    if not name or os.environ.get(PROMOTE_EXPERIMENTS_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    return f"DVC experiment {name}: experiments are not promoted unless {PROMOTE_EXPERIMENTS_ENV}=1"


def register_unpromoted(catalog: Catalog, run_id: str, test_metrics: dict[str, float], why: str) -> dict[str, Any]:
    """Log and register the model like any other, and leave `champion` where it is, saying why."""
    import mlflow

    from quickdraw_dag.serving.registry import log_and_register_model

    with mlflow.start_run(run_id=run_id):
        version = log_and_register_model(catalog, test_metrics)
        tags = {"promotion.decision": "held", "promotion.reason": why, "registered_model_version": str(version)}
        mlflow.set_tags(tags)
    log.warning("mlflow: run %s, model version %s registered, not promoted: %s", run_id, version, why)
    return {"model_version": version, "decision": "held", "reason": why}


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.evaluate", __doc__.splitlines()[0], run, argv, on_stop=close_stopped_runs)


if __name__ == "__main__":
    sys.exit(main())
