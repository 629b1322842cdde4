"""The whole flow on tiny synthetic data under a real Prefect test server and a temporary MLflow store.

One module-scoped run of three flow invocations (all stages; nothing changed; only `train.*` changed)
feeds one test per invariant, so a failure names what broke.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config import load_params
from tests.conftest import TINY_PIPELINE, dvc_status, git_commit_all, run_module, set_params, tree_digest

ALL_STAGES = ["fetch", "split", "preprocess", "tune", "train", "evaluate", "paint"]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow")]  # one worker runs the shared flow runs


@dataclass
class FlowRuns:
    project: Path
    commit: str
    outcomes: list[dict]
    status_after: list[str]
    parents: list  # MLflow parent runs, oldest first
    runs: list  # every MLflow run of the experiment


@pytest.fixture(scope="module")
def flow_runs(tmp_path_factory: pytest.TempPathFactory) -> FlowRuns:
    import os

    import mlflow
    from prefect.testing.utilities import prefect_test_harness

    from bench.workspace import copy_project
    from flows.pipeline import pipeline

    project = copy_project(tmp_path_factory.mktemp("flow") / "project")
    set_params(project, **TINY_PIPELINE)
    commit = git_commit_all(project)
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'store.db'}"
    os.environ["PYTHONPATH"] = str(project)
    cwd = Path.cwd()
    os.chdir(project)
    outcomes, status_after = [], []
    try:
        with prefect_test_harness(server_startup_timeout=120):
            for change in ({}, {}, {"train": {"epochs": 2}}):
                set_params(project, **change)
                outcomes.append(pipeline(load_params(project / "params.yaml")))
                status_after.append(dvc_status(project))
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'store.db'}")
    experiment = mlflow.get_experiment_by_name("quickdraw")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    return FlowRuns(project, commit, outcomes, status_after, parents, runs)


def test_first_run_runs_every_stage_and_leaves_dvc_up_to_date(flow_runs: FlowRuns) -> None:
    assert flow_runs.outcomes[0]["ran"] == ALL_STAGES
    assert "up to date" in flow_runs.status_after[0]


def test_a_run_with_nothing_changed_skips_every_stage(flow_runs: FlowRuns) -> None:
    assert flow_runs.outcomes[1]["ran"] == [] and flow_runs.outcomes[1]["skipped"] == ALL_STAGES


def test_changing_train_params_reruns_only_train_and_evaluate(flow_runs: FlowRuns) -> None:
    assert flow_runs.outcomes[2]["ran"] == ["train", "evaluate"]
    assert "up to date" in flow_runs.status_after[2]


def test_each_evaluating_run_logs_one_mlflow_parent_run_with_its_metrics_and_params(flow_runs: FlowRuns) -> None:
    assert len(flow_runs.parents) == 2  # the first and the third flow run evaluated
    last = flow_runs.parents[-1]
    metrics = json.loads(Catalog.under(flow_runs.project).metrics.read_text())
    assert last.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert last.data.params["train.epochs"] == "2"
    assert last.data.params["data.categories"] == '["circle", "square", "line"]'
    # the test-set size is a count, logged as a param (it was the metric `test_test_images`)
    assert last.data.params["test_images"] == str(metrics["test_images"])
    assert not any("test_images" in name for name in last.data.metrics)


def test_per_epoch_metrics_include_the_learning_rate(flow_runs: FlowRuns) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    last = flow_runs.parents[-1]
    history = json.loads(Catalog.under(flow_runs.project).history.read_text())
    for name in ("val_accuracy", "learning_rate"):
        logged = client.get_metric_history(last.info.run_id, name)
        assert [m.step for m in logged] == [1, 2]
        assert [m.value for m in logged] == pytest.approx([e[name] for e in history["epochs"]])


def test_parent_runs_carry_their_lineage(flow_runs: FlowRuns) -> None:
    lock = yaml.safe_load((flow_runs.project / "dvc.lock").read_text())
    layout = Catalog.under(Path("."))
    model_md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == layout.model.as_posix())
    processed_md5 = next(o["md5"] for o in lock["stages"]["preprocess"]["outs"])
    first, last = (run.data.tags for run in flow_runs.parents)
    assert last["dvc_model_md5"] == model_md5 and last["dvc_processed_md5"] == processed_md5
    assert last["prefect_flow_run_id"] != "none" and last["orchestrator"] == "prefect"
    assert first["git_commit"] == last["git_commit"] == flow_runs.commit
    # the first run used the committed params; the third ran with train.epochs edited and not committed
    assert (first["git_dirty"], last["git_dirty"]) == ("false", "true")


def test_each_tuning_trial_is_a_nested_run(flow_runs: FlowRuns) -> None:
    first = flow_runs.parents[0]
    children = [r for r in flow_runs.runs if r.data.tags.get("mlflow.parentRunId") == first.info.run_id]
    trials = json.loads(Catalog.under(flow_runs.project).tuning_report.read_text())["trials"]
    assert len(trials) >= 2
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(t["trial_id"] for t in trials)
    assert all(c.data.tags["trial_status"] == "COMPLETED" and c.data.params["filters"] in ("8", "16") for c in children)


def test_the_model_is_logged_registered_and_the_champion_gate_applied(flow_runs: FlowRuns) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    last = flow_runs.parents[-1]
    assert {"model", "plots", "reports"} <= {a.path for a in client.list_artifacts(last.info.run_id)}
    assert "MLmodel" in {a.path.split("/")[-1] for a in client.list_artifacts(last.info.run_id, "model")}
    decisions = [p.data.tags["promotion.decision"] for p in flow_runs.parents]
    assert decisions[0] == "promoted"  # the first model has no champion to beat
    champion = client.get_model_version_by_alias("quickdraw-cnn", "champion")
    assert int(champion.version) == (2 if decisions[1] == "promoted" else 1)
    accuracies = [p.data.metrics["test_accuracy"] for p in flow_runs.parents]
    assert (decisions[1] == "promoted") == (accuracies[1] > accuracies[0])


@pytest.mark.xdist_group("dask")
def test_dask_runner_writes_the_same_bytes_as_the_default_runner(tmp_path: Path) -> None:
    """Per-category tasks on a local Dask cluster (2 worker processes) versus threads."""
    from bench.workspace import copy_project

    digests = {}
    for runner in (["--task-runner", "threads"], ["--dask", "--workers", "2"]):
        root = copy_project(tmp_path / runner[-1])
        set_params(
            root,
            data={"source": "synthetic", "categories": ["circle", "square", "line", "triangle"]},
            fetch={"synthetic_drawings": 150},
        )
        result = run_module("flows.pipeline", "--until", "preprocess", *runner, cwd=root, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "stages run: ['fetch', 'split', 'preprocess']" in result.stdout + result.stderr
        if runner[0] == "--dask":
            assert "Dask" in result.stdout + result.stderr  # it really ran on a cluster
        digests[runner[-1]] = {**tree_digest(root / "data"), "dvc.lock": (root / "dvc.lock").read_bytes()}
        assert "up to date" in dvc_status(root, "preprocess")  # and the stages before it
    threads, dask = digests["threads"], digests["2"]
    assert set(threads) == set(dask) and any(
        name.endswith(Catalog.under(Path(".")).images("train").name) for name in threads
    )
    different = [name for name in threads if threads[name] != dask[name]]
    assert different == []
