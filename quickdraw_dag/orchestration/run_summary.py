"""A pipeline run's results as Prefect artifacts: what the flow run's Artifacts tab shows.

Two artifacts per run, under stable keys, so Prefect's Artifacts page keeps
their history across runs:

- `quickdraw-results` (markdown): the test metrics, the promotion decision
  and its reason, links to the MLflow run and the registered model version;
- `quickdraw-per-class` (table): each class's accuracy on the test split (its
  recall), precision, F1 and number of test drawings.

The figures are the evaluate stage's result. When evaluate did not run (no
param or dep changed since dvc.lock), the run publishes the current results
from the reports instead, and says so, with the MLflow run that logged the
current model (found by its `dvc_model_md5` tag).

The same results end the run on the console (`console_summary`): the test
accuracy and MAP@3, the MLflow run and its link, the model version and the
promotion decision, and what changed since the experiment's previous run
(its metrics' differences and the params that differ).

Links point at the MLflow UI of the tracking URI in use: an MLflow server's
own address, or for a local store (SQLite or a folder) what `make ui` serves,
http://127.0.0.1:5000. `QUICKDRAW_MLFLOW_UI_URL` overrides either.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from quickdraw_dag.artifacts import Catalog, ClassScores, read_metrics, read_per_class
from quickdraw_dag.config.schema import Params

log = logging.getLogger(__name__)
RESULTS_KEY = "quickdraw-results"
PER_CLASS_KEY = "quickdraw-per-class"
MLFLOW_UI_ENV = "QUICKDRAW_MLFLOW_UI_URL"
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # `make ui` on the local store
# MLflow 3.17's UI shows every experiment in its GenAI workflow unless the link (or the user's toggle) picks
# the model-training one; the experiment's kind tag alone does not switch it.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
METRIC_NAMES = {
    "accuracy": "accuracy",
    "top3_accuracy": "top-3 accuracy",
    "map_at_3": "MAP@3",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
    "macro_f1": "macro F1",
}


def mlflow_ui_url(tracking_uri: str) -> str | None:
    """Where a browser sees the runs of `tracking_uri`; None when that cannot be known (e.g. `databricks`)."""
    configured = os.environ.get(MLFLOW_UI_ENV, "").strip()
    if configured:
        return configured.rstrip("/")
    if tracking_uri.split(":")[0] in ("databricks", "databricks-uc", "uc"):
        return None  # a workspace's UI address is not in the URI
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https") and parts.hostname:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")  # never credentials in a link
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.scheme in ("sqlite", "file", ""):
        return LOCAL_MLFLOW_UI
    return None


def run_link(ui: str, experiment_id: str, run_id: str) -> str:
    return f"{ui}/#/experiments/{quote(str(experiment_id))}/runs/{quote(run_id)}?{MODEL_TRAINING_VIEW}"


def model_version_link(ui: str, model: str, version: int | str) -> str:
    return f"{ui}/#/models/{quote(model)}/versions/{quote(str(version))}"


def results_markdown(results: dict[str, Any], params: Params, ui: str | None, evaluated: bool) -> str:
    """The markdown artifact: metrics table, promotion decision, MLflow links (pure)."""
    from quickdraw_dag.tracking.record import CHAMPION, REGISTERED_MODEL

    categories = list(params.data.categories)
    lines = [
        "# QuickDraw pipeline results",
        "",
        f"{len(categories)} categories ({', '.join(categories)}), data `{params.data.source}`, "
        f"{int(results['test_images'])} test drawings.",
        "",
    ]
    if not evaluated:
        lines += [
            "> **evaluate did not run in this flow run**: no param or dep changed since dvc.lock, "
            "so these are the current results, unchanged.",
            "",
        ]
    lines += ["| metric | test split |", "|---|---:|"]
    lines += [f"| {label} | {float(results[key]):.4f} |" for key, label in METRIC_NAMES.items() if key in results]
    lines.append("")
    if results.get("mlflow_run_id"):
        version, run_id = results.get("model_version"), results["mlflow_run_id"]
        decision, reason = results.get("promotion"), results.get("promotion_reason")
        # plain link text: Prefect's markdown shows code spans inside links as raw backticks
        model = f"{REGISTERED_MODEL} version {version}"
        run = str(run_id)
        if ui:
            model = f"[{model}]({model_version_link(ui, REGISTERED_MODEL, version)})"
            run = f"[{run}]({run_link(ui, results['mlflow_experiment_id'], run_id)})"
        if decision == "promoted":
            verdict = f"**promoted** to `{CHAMPION}`"
        elif decision:
            verdict = f"**kept** out: `{CHAMPION}` stayed on its version"
        else:
            verdict = "promotion decision not recorded"
        lines += [
            f"- **Model**: {model}, {verdict}" + (f" ({reason})." if reason else "."),
            f"- **MLflow run**: {run} in experiment `{params.mlflow.experiment}`.",
        ]
        if ui == LOCAL_MLFLOW_UI and not os.environ.get(MLFLOW_UI_ENV):
            lines.append("- Links open the local store's UI: start it with `make ui`.")
    elif not params.mlflow.enabled:
        lines.append("- MLflow tracking is off (`mlflow.enabled: false`): no run or model version to link.")
    else:
        lines.append("- No MLflow run found for this model.")
    return "\n".join(lines) + "\n"


def per_class_table(per_class: list[ClassScores]) -> list[dict[str, Any]]:
    """The table artifact's rows, in label order (pure)."""
    return [
        {
            "category": row["category"],
            "accuracy": round(float(row["recall"]), 4),
            "precision": round(float(row["precision"]), 4),
            "f1": round(float(row["f1"]), 4),
            "test drawings": int(row["support"]),
        }
        for row in per_class
    ]


def current_results(params: Params) -> dict[str, Any]:
    """The results on disk (evaluate skipped), with the MLflow run that logged the current model."""
    from quickdraw_dag.tracking.lineage import dvc_output_hashes

    catalog = Catalog.from_paths(params.paths)
    results: dict[str, Any] = {**read_metrics(catalog), "per_class": read_per_class(catalog)}
    model_md5 = dvc_output_hashes().get(catalog.model.as_posix())
    if params.mlflow.enabled and model_md5:
        from mlflow.exceptions import MlflowException

        try:
            results.update(tracked_run_of_model(params, model_md5))
        except MlflowException as error:  # a store that is down must not fail a run whose stages all succeeded
            log.warning("results: could not look up the MLflow run of the current model: %s", error)
    return results


def tracked_run_of_model(params: Params, model_md5: str) -> dict[str, Any]:
    """The latest MLflow parent run whose model has this DVC hash, as evaluate's result names it; {} if none."""
    import mlflow

    from quickdraw_dag.tracking.store import tracking_uri

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(params.mlflow))
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.dvc_model_md5 = '{model_md5}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return {}
    tags = runs[0].data.tags
    return {
        "mlflow_run_id": runs[0].info.run_id,
        "mlflow_experiment_id": experiment.experiment_id,
        "model_version": tags.get("registered_model_version"),
        "promotion": tags.get("promotion.decision"),
        "promotion_reason": tags.get("promotion.reason"),
    }


SUMMARY_METRICS = ("accuracy", "map_at_3")  # the console's headline figures
# Params that differ between any two runs without changing what they compute.
VOLATILE_PARAMS = ("mlflow.", "paths.")


def previous_parent_run(params: Params, run_id: str) -> Any | None:
    """The experiment's latest finished pipeline run before `run_id` (None: none, or MLflow is off)."""
    import mlflow

    from quickdraw_dag.tracking.store import tracking_uri

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(params.mlflow))
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    if experiment is None:
        return None
    current = client.get_run(run_id)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.status = 'FINISHED' and attributes.start_time < {current.info.start_time}",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags and run.info.run_id != run_id]
    return parents[0] if parents else None


def changes_since(
    previous_metrics: dict[str, float],
    previous_params: dict[str, str],
    metrics: dict[str, Any],
    run_params: dict[str, str],
) -> list[str]:
    """What differs from the previous run: headline metrics (as +/- differences), then params (pure)."""
    lines = []
    for key in SUMMARY_METRICS:
        before, now = previous_metrics.get(f"test_{key}"), metrics.get(key)
        if before is not None and now is not None:
            before, now = float(before), float(now)
            lines.append(f"{METRIC_NAMES[key]} {before:.4f} -> {now:.4f} ({now - before:+.4f})")
    changed = sorted(
        key
        for key in set(previous_params) | set(run_params)
        if previous_params.get(key) != run_params.get(key) and not key.startswith(VOLATILE_PARAMS)
    )
    shown = [f"{key}: {previous_params.get(key, '(unset)')} -> {run_params.get(key, '(unset)')}" for key in changed[:8]]
    if len(changed) > 8:
        shown.append(f"and {len(changed) - 8} more params")
    return lines + (shown or ["params: none changed"])


def console_summary(
    results: dict[str, Any], params: Params, ui: str | None, evaluated: bool, changes: list[str] | None
) -> str:
    """The lines that end a run on the console: metrics, MLflow run and link, model and decision, changes (pure)."""
    figures = ", ".join(
        f"{METRIC_NAMES[key]} {float(results[key]):.4f}" for key in SUMMARY_METRICS if results.get(key) is not None
    )
    lines = [
        "results" + ("" if evaluated else " (evaluate skipped: nothing changed, these are the current ones)") + ":",
        f"  test {figures} on {int(results['test_images'])} drawings",
    ]
    run_id = results.get("mlflow_run_id")
    if run_id:
        where = f" {run_link(ui, results['mlflow_experiment_id'], run_id)}" if ui else ""
        lines.append(f"  MLflow run {run_id}{where}")
        if ui == LOCAL_MLFLOW_UI and not os.environ.get(MLFLOW_UI_ENV):
            lines.append("    (the local store's UI: start it with `make ui`)")
        decision, reason = results.get("promotion"), results.get("promotion_reason")
        verdict = "promoted to champion" if decision == "promoted" else ("not promoted" if decision else "no decision")
        lines.append(f"  model version {results.get('model_version')}: {verdict}" + (f" ({reason})" if reason else ""))
    elif not params.mlflow.enabled:
        lines.append("  MLflow tracking is off (mlflow.enabled: false): no run, no model version")
    else:
        lines.append("  no MLflow run found for this model")
    if changes is not None:
        lines.append("  since the previous run: " + ("; ".join(changes) if changes else "nothing changed"))
    elif evaluated and run_id:
        lines.append("  since the previous run: this is the experiment's first finished run")
    return "\n".join(lines)


def run_changes(params: Params, results: dict[str, Any], evaluated: bool) -> list[str] | None:
    """`changes_since` the previous run for a run that evaluated; [] when nothing ran; None: no previous run."""
    if not evaluated:
        return []
    if not results.get("mlflow_run_id"):
        return None
    from mlflow.exceptions import MlflowException

    from quickdraw_dag.tracking.store import tracking_uri

    try:
        previous = previous_parent_run(params, results["mlflow_run_id"])
        if previous is None:
            return None
        import mlflow

        current = mlflow.MlflowClient(tracking_uri=tracking_uri(params.mlflow)).get_run(results["mlflow_run_id"])
    except MlflowException as error:  # the summary must not fail a run whose stages all succeeded
        log.warning("results: could not read the previous MLflow run: %s", error)
        return None
    return changes_since(previous.data.metrics, previous.data.params, results, current.data.params)


def publish(params: Params, evaluate_result: dict[str, Any] | None) -> dict[str, Any]:
    """Create the two artifacts in the current flow run; `evaluate_result` None: evaluate was skipped."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from quickdraw_dag.tracking.store import tracking_uri

    evaluated = evaluate_result is not None
    results = evaluate_result if evaluated else current_results(params)
    ui = mlflow_ui_url(tracking_uri(params.mlflow))
    markdown = results_markdown(results, params, ui, evaluated)
    create_markdown_artifact(
        markdown=markdown,
        key=RESULTS_KEY,
        description=f"Test metrics, promotion decision and MLflow links ({len(params.data.categories)} categories)",
    )
    create_table_artifact(
        table=per_class_table(results["per_class"]),
        key=PER_CLASS_KEY,
        description="Per-class results on the test split; accuracy: the share of the class's drawings classified right",
    )
    log.info("results published as Prefect artifacts %r and %r", RESULTS_KEY, PER_CLASS_KEY)
    console = console_summary(results, params, ui, evaluated, run_changes(params, results, evaluated))
    return {"markdown": markdown, "evaluated": evaluated, "console": console}
