"""A run's Prefect artifacts and closing killed runs, below the flow: links, markdown, the results of a skipped
evaluate (against a real SQLite MLflow store, and one that is down), process records."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import PER_CLASS_COLUMNS
from quickdraw_dag.config.schema import Params
from quickdraw_dag.orchestration.prefect_runs import RunProcess, is_abandoned
from quickdraw_dag.orchestration.run_summary import (
    LOCAL_MLFLOW_UI,
    MLFLOW_UI_ENV,
    changes_since,
    console_summary,
    current_results,
    mlflow_ui_url,
    per_class_table,
    previous_parent_run,
    results_markdown,
    run_changes,
)

PARAMS = Params.model_validate({"data": {"source": "synthetic", "categories": ["circle", "square"]}})
METRICS = {
    "accuracy": 0.81234,
    "top3_accuracy": 0.99,
    "map_at_3": 0.9,
    "macro_precision": 0.8,
    "macro_recall": 0.81,
    "macro_f1": 0.805,
    "test_images": 40,
}


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("sqlite:///mlflow.db", LOCAL_MLFLOW_UI),
        ("sqlite:////abs/path/mlflow.db", LOCAL_MLFLOW_UI),
        ("file:///tmp/mlruns", LOCAL_MLFLOW_UI),
        ("mlruns", LOCAL_MLFLOW_UI),
        ("http://mlflow.internal:5000/", "http://mlflow.internal:5000"),
        ("https://user:token@mlflow.example.com/team", "https://mlflow.example.com/team"),  # no credentials
        ("databricks", None),
        ("postgresql://user:pw@db/mlflow", None),
    ],
)
def test_links_point_at_the_ui_of_the_tracking_uri_in_use(
    uri: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MLFLOW_UI_ENV, raising=False)
    assert mlflow_ui_url(uri) == expected


def test_the_ui_address_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MLFLOW_UI_ENV, "http://127.0.0.1:5001/")
    assert mlflow_ui_url("sqlite:///mlflow.db") == "http://127.0.0.1:5001"


def test_markdown_of_a_kept_model_with_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MLFLOW_UI_ENV, raising=False)
    results = {
        **METRICS,
        "mlflow_run_id": "abc123",
        "mlflow_experiment_id": "7",
        "model_version": 4,
        "promotion": "kept",
        "promotion_reason": "test accuracy 0.8123 does not beat champion v2 (0.9000)",
    }
    text = results_markdown(results, PARAMS, "http://mlflow:5000", evaluated=True)
    assert "| accuracy | 0.8123 |" in text and "| MAP@3 | 0.9000 |" in text
    assert "2 categories (circle, square)" in text and "40 test drawings" in text
    assert "[quickdraw-cnn version 4](http://mlflow:5000/#/models/quickdraw-cnn/versions/4)" in text
    assert "[abc123](http://mlflow:5000/#/experiments/7/runs/abc123?workflowType=machine_learning)" in text
    assert "**kept**" in text and "does not beat champion v2" in text
    assert "evaluate did not run" not in text and "make ui" not in text


def test_markdown_without_tracking_or_links() -> None:
    untracked = Params.model_validate({**PARAMS.model_dump(mode="json"), "mlflow": {"enabled": False}})
    text = results_markdown(METRICS, untracked, LOCAL_MLFLOW_UI, evaluated=False)
    assert "evaluate did not run" in text and "mlflow.enabled: false" in text and "](" not in text
    linkless = results_markdown({**METRICS, "mlflow_run_id": "r1", "model_version": 1}, PARAMS, None, evaluated=True)
    assert "](" not in linkless and "r1" in linkless and "quickdraw-cnn version 1" in linkless


def test_per_class_table_keeps_label_order_and_names_recall_accuracy() -> None:
    rows = [
        {"category": "square", "precision": 0.5, "recall": 0.25, "f1": 0.3333, "support": 8},
        {"category": "circle", "precision": 1.0, "recall": 0.75, "f1": 0.8571, "support": 12},
    ]
    table = per_class_table(rows)
    assert [r["category"] for r in table] == ["square", "circle"]
    assert [r["accuracy"] for r in table] == [0.25, 0.75] and [r["test drawings"] for r in table] == [8, 12]


def test_a_run_is_abandoned_only_when_its_process_here_is_gone() -> None:
    here = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: no process has its pid
    assert RunProcess.parse(f"{here}:{dead.pid}") == RunProcess(here, dead.pid)
    assert is_abandoned(f"{here}:{dead.pid}", here)
    assert not is_abandoned(str(RunProcess.this()), here)  # alive
    assert not is_abandoned(f"elsewhere:{dead.pid}", here)  # another host: not ours to judge
    for other in (None, "", "namespace:job-name", "no-pid-here"):
        assert not is_abandoned(other, here)


def skipped_workspace(root: Path) -> None:
    """What a workspace holds after an evaluate run: metrics, per-class table, dvc.lock with the model's hash."""
    from quickdraw_dag.artifacts import Catalog, write_csv, write_metrics

    catalog = Catalog.from_paths(PARAMS.paths)
    (root / catalog.reports).mkdir(parents=True)
    write_metrics(catalog, METRICS)
    write_csv(
        catalog.per_class,
        PER_CLASS_COLUMNS,
        [["circle", "0.9", "0.8", "0.85", 20], ["square", "0.7", "0.8", "0.75", 20]],
    )
    lock = {"stages": {"train": {"outs": [{"path": catalog.model.as_posix(), "md5": "feedbeef"}]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))


def test_skipped_evaluate_finds_the_mlflow_run_of_the_current_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    skipped_workspace(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    experiment = client.create_experiment(PARAMS.mlflow.experiment)
    for md5, version in (("0ld", "1"), ("feedbeef", "2")):  # only the second logged the model in place
        tags = {"dvc_model_md5": md5, "registered_model_version": version, "promotion.decision": "kept"}
        run = client.create_run(experiment, tags={**tags, "promotion.reason": f"reason {version}"})
        client.set_terminated(run.info.run_id)
        if md5 == "feedbeef":
            expected = run.info.run_id
    results = current_results(PARAMS)
    assert results["mlflow_run_id"] == expected and results["model_version"] == "2"
    assert results["promotion_reason"] == "reason 2" and results["mlflow_experiment_id"] == experiment
    assert results["accuracy"] == METRICS["accuracy"] and [r["support"] for r in results["per_class"]] == [20, 20]


def test_skipped_evaluate_with_the_store_down_still_publishes_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    skipped_workspace(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    results = current_results(PARAMS)
    assert "mlflow_run_id" not in results and results["map_at_3"] == METRICS["map_at_3"]
    text = results_markdown(results, PARAMS, "http://127.0.0.1:9", evaluated=False)
    assert "| MAP@3 | 0.9000 |" in text and "No MLflow run found" in text


def test_the_console_summary_names_metrics_run_link_model_decision_and_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MLFLOW_UI_ENV, raising=False)
    results = {**METRICS, "mlflow_run_id": "abc123", "mlflow_experiment_id": "7", "model_version": 4}
    results |= {"promotion": "promoted", "promotion_reason": "first model"}
    changes = changes_since(
        {"test_accuracy": 0.7, "test_map_at_3": 0.95},
        {"train.epochs": "25", "train.seed": "0", "mlflow.experiment": "a"},
        results,
        {"train.epochs": "20", "train.seed": "0", "mlflow.experiment": "b", "tune.new": "1"},
    )
    assert changes == [
        "accuracy 0.7000 -> 0.8123 (+0.1123)",
        "MAP@3 0.9500 -> 0.9000 (-0.0500)",
        "train.epochs: 25 -> 20",
        "tune.new: (unset) -> 1",
    ]  # mlflow.* differ between runs without changing what they compute
    text = console_summary(results, PARAMS, LOCAL_MLFLOW_UI, evaluated=True, changes=changes)
    lines = text.splitlines()
    assert lines[1] == "  test accuracy 0.8123, MAP@3 0.9000 on 40 drawings"
    assert (
        "  MLflow run abc123 http://127.0.0.1:5000/#/experiments/7/runs/abc123?workflowType=machine_learning" in lines
    )
    assert "`make ui`" in text
    assert "  model version 4: promoted to champion (first model)" in lines
    assert lines[-1].startswith("  since the previous run: accuracy 0.7000 -> 0.8123 (+0.1123); MAP@3")


def test_the_console_summary_of_a_skipped_or_untracked_or_first_run() -> None:
    untracked = Params.model_validate({**PARAMS.model_dump(mode="json"), "mlflow": {"enabled": False}})
    skipped = console_summary(METRICS, untracked, None, evaluated=False, changes=[])
    assert "evaluate skipped" in skipped and "mlflow.enabled: false" in skipped
    assert skipped.splitlines()[-1] == "  since the previous run: nothing changed"
    kept = {**METRICS, "mlflow_run_id": "r1", "mlflow_experiment_id": "1", "model_version": 2, "promotion": "kept"}
    first = console_summary(kept, PARAMS, None, evaluated=True, changes=None)
    assert "  MLflow run r1" in first.splitlines() and "http" not in first
    assert "model version 2: not promoted" in first and "first finished run" in first
    assert changes_since({}, {"a": "1"}, {}, {"a": "1"}) == ["params: none changed"]
    many = changes_since({}, {}, {}, {f"train.k{i}": str(i) for i in range(11)})
    assert len(many) == 9 and many[-1] == "and 3 more params"


def test_changes_are_read_against_the_experiments_previous_finished_parent_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import mlflow

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment(PARAMS.mlflow.experiment)
    ids = []
    for accuracy, status, parent in ((0.5, "FINISHED", None), (0.6, "FAILED", None), (0.9, "FINISHED", "x")):
        tags = {"mlflow.parentRunId": parent} if parent else {}
        run = client.create_run(experiment, tags=tags)
        client.log_metric(run.info.run_id, "test_accuracy", accuracy)
        client.log_param(run.info.run_id, "train.epochs", str(int(accuracy * 10)))
        client.set_terminated(run.info.run_id, status)
        ids.append(run.info.run_id)
        time.sleep(0.01)
    current = client.create_run(experiment)
    client.log_param(current.info.run_id, "train.epochs", "8")
    results = {**METRICS, "mlflow_run_id": current.info.run_id}
    # the failed run and the nested trial are not "the previous run": the first one is
    assert run_changes(PARAMS, results, evaluated=True) == [
        "accuracy 0.5000 -> 0.8123 (+0.3123)",
        "train.epochs: 5 -> 8",
    ]
    assert run_changes(PARAMS, results, evaluated=False) == []
    assert run_changes(PARAMS, {**METRICS}, evaluated=True) is None
    other = Params.model_validate({**PARAMS.model_dump(mode="json"), "mlflow": {"experiment": "other"}})
    alone = client.create_run(client.create_experiment("other"))
    assert previous_parent_run(other, alone.info.run_id) is None  # the first run of its experiment
    assert previous_parent_run(PARAMS, current.info.run_id).info.run_id == ids[0]


def test_the_flow_shows_the_stages_info_lines_once_without_the_makefiles_setting() -> None:
    """`python -m flows.pipeline` without PREFECT_LOGGING_EXTRA_LOGGERS still prints the stages' INFO lines, once,
    and DVC's own lines once (not again through Prefect's root handler)."""
    import os

    code = (
        "import logging\n"
        "from quickdraw_dag.runtime.cli import attach_project_loggers\n"
        "import flows.pipeline  # as python -m flows.pipeline: Prefect loaded, its logging set up\n"
        "attach_project_loggers()\n"
        "logging.getLogger('tasks.evaluate').info('evaluate: accuracy 0.5')\n"
        "logging.getLogger('quickdraw_dag.serving.registry').info('model version 4, promoted')\n"
        "logging.getLogger('flows.pipeline').info('fetch: unchanged since dvc.lock, skipped')\n"
        "logging.getLogger('tasks.train').debug('not shown')\n"
        "logging.getLogger('dvc.dvcfile').info(\"Updating lock file 'dvc.lock'\")\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_EXTRA_LOGGERS"}
    env["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for line in ("evaluate: accuracy 0.5", "model version 4, promoted", "fetch: unchanged since dvc.lock, skipped"):
        assert output.count(line) == 1, output
    assert "not shown" not in output
    assert output.count("Updating lock file") <= 1
