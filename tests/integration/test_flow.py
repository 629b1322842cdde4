"""The whole flow on tiny synthetic data under a real Prefect test server and a temporary MLflow store.

One module-scoped run of three flow invocations (all stages; nothing changed; only `train.*` changed)
feeds one test per invariant, so a failure names what broke: stages, DVC, MLflow, and the results each
run publishes as Prefect artifacts.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog, read_per_class
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.orchestration.run_summary import LOCAL_MLFLOW_UI, PER_CLASS_KEY, RESULTS_KEY
from tests.helpers import TINY_PIPELINE, dvc_status, git_commit_all, run_module, set_params, tree_digest

ALL_STAGES = ["fetch", "split", "preprocess", "tune", "train", "evaluate"]  # the paint flow is another pipeline
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow")]  # one worker runs the shared flow runs


@dataclass
class FlowRuns:
    project: Path
    commit: str
    outcomes: list[dict]
    status_after: list[str]
    parents: list  # MLflow parent runs, oldest first
    runs: list  # every MLflow run of the experiment
    artifacts: list[dict[str, Any]]  # per flow run: its Prefect artifacts by key
    history: dict[str, list]  # per artifact key: every version, newest first (the Artifacts page's history)
    task_runs: list[dict[str, Any]]  # per flow run: its task runs by name (what Prefect's graph draws)


def read_task_runs(flow_run_id: Any) -> dict[str, Any]:
    """A flow run's task runs by name, through Prefect's client."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=200,
        )
    return {run.name: run for run in runs}


def read_artifacts(artifact_filter: dict) -> list:
    """Artifacts from the API, newest first. (Prefect's client sends an empty flow-run and task-run filter
    that either fails validation or, as an empty task-run filter, drops the artifacts a flow made itself.)"""
    import httpx
    from prefect.client.schemas.objects import Artifact
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": artifact_filter, "sort": "CREATED_DESC", "limit": 50, "offset": 0}
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30)
    response.raise_for_status()
    return Artifact.model_validate_list(response.json())


@pytest.fixture(scope="module")
def flow_runs(tmp_path_factory: pytest.TempPathFactory, worker_prefect_server: str) -> FlowRuns:
    """Three flow runs in one project, reporting to the worker's Prefect server (a harness of their own
    started another server and database: ~10 CPU s); what they made is read by their flow-run ids."""
    import os

    import mlflow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from bench.workspace import copy_project
    from flows.pipeline import pipeline

    project = copy_project(tmp_path_factory.mktemp("flow") / "project")
    set_params(project, **TINY_PIPELINE)
    commit = git_commit_all(project)
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "PYTHONPATH", "PREFECT_API_URL")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'store.db'}"
    os.environ["PYTHONPATH"] = str(project)
    os.environ["PREFECT_API_URL"] = worker_prefect_server  # for any thread or process outside the settings' context
    cwd = Path.cwd()
    os.chdir(project)
    outcomes, status_after, artifacts, history, task_runs = [], [], [], {}, []
    flow_run_ids: list[str] = []
    try:
        with temporary_settings({PREFECT_API_URL: worker_prefect_server}):
            for change in ({}, {}, {"train": {"epochs": 2}}):
                set_params(project, **change)
                state = pipeline(load_params(project / "params.yaml"), return_state=True)
                outcomes.append(state.result())
                status_after.append(dvc_status(project))
                flow_run_ids.append(str(state.state_details.flow_run_id))
                made = read_artifacts({"flow_run_id": {"any_": flow_run_ids[-1:]}})
                artifacts.append({artifact.key: artifact for artifact in made})
                task_runs.append(read_task_runs(state.state_details.flow_run_id))
            for key in (RESULTS_KEY, PER_CLASS_KEY):
                # the key's versions these runs made (the worker's other flows publish under it too)
                history[key] = read_artifacts({"key": {"any_": [key]}, "flow_run_id": {"any_": flow_run_ids}})
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'store.db'}")
    experiment = mlflow.get_experiment_by_name("quickdraw")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    return FlowRuns(project, commit, outcomes, status_after, parents, runs, artifacts, history, task_runs)


def test_first_run_runs_every_stage_and_leaves_dvc_up_to_date(flow_runs: FlowRuns) -> None:
    assert flow_runs.outcomes[0]["ran"] == ALL_STAGES
    assert "up to date" in flow_runs.status_after[0]


def test_a_run_with_nothing_changed_skips_every_stage(flow_runs: FlowRuns) -> None:
    assert flow_runs.outcomes[1]["ran"] == [] and flow_runs.outcomes[1]["skipped"] == ALL_STAGES


def test_changing_train_params_reruns_only_train_and_evaluate(flow_runs: FlowRuns) -> None:
    assert flow_runs.outcomes[2]["ran"] == ["train", "evaluate"]
    assert "up to date" in flow_runs.status_after[2]


def test_each_evaluating_run_logs_one_mlflow_parent_run_with_its_metrics_and_params(flow_runs: FlowRuns) -> None:
    from quickdraw_dag.training.devices import Placement  # these import Keras: not at collection
    from quickdraw_dag.training.precision import resolve_precision

    assert len(flow_runs.parents) == 2  # the first and the third flow run evaluated
    last = flow_runs.parents[-1]
    metrics = json.loads(Catalog.under(flow_runs.project).metrics.read_text())
    assert last.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert last.data.params["train.epochs"] == "2"
    history = json.loads(Catalog.under(flow_runs.project).history.read_text())
    assert last.data.params["train.precision"] == "auto"
    expected = resolve_precision(
        "auto", Placement(history["backend"], tuple(history["devices"])).on_cpu, history["backend"]
    )  # what auto picks on this machine
    assert last.data.params["train.precision_used"] == history["precision"] == expected
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


def test_parent_runs_carry_their_lineage(flow_runs: FlowRuns, tmp_path: Path) -> None:
    import mlflow

    lock = yaml.safe_load((flow_runs.project / "dvc.lock").read_text())
    layout = Catalog.under(Path("."))
    model_md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == layout.model.as_posix())
    processed_md5 = next(o["md5"] for o in lock["stages"]["preprocess"]["outs"])
    first, last = (run.data.tags for run in flow_runs.parents)
    assert last["dvc_model_md5"] == model_md5 and last["dvc_processed_md5"] == processed_md5
    assert last["prefect_flow_run_id"] != "none" and last["orchestrator"] == "prefect"
    assert first["git_commit"] == last["git_commit"] == flow_runs.commit
    # the third ran with train.epochs edited and not committed: the code was the commit's (not dirty), and
    # the params.yaml it ran with is among its artifacts, beside the dvc.lock it left
    assert (first["git_dirty"], last["git_dirty"]) == ("false", "false")
    record = Path(mlflow.MlflowClient().download_artifacts(flow_runs.parents[-1].info.run_id, "dvc", str(tmp_path)))
    assert yaml.safe_load((record / "params.yaml").read_text())["train"]["epochs"] == 2
    assert (record / "dvc.lock").read_bytes() == (flow_runs.project / "dvc.lock").read_bytes()


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
    assert {"plots", "reports"} <= {a.path for a in client.list_artifacts(last.info.run_id)}
    # files every run holds at its root: what MLflow's compare view shows in its Artifacts tab (folders never)
    roots = [{a.path for a in client.list_artifacts(p.info.run_id) if not a.is_dir} for p in flow_runs.parents]
    catalog = Catalog.under(flow_runs.project)
    expected = {catalog.metrics.name, catalog.plot("training_curves").name, catalog.plot("confusion_matrix").name}
    assert set.intersection(*roots) >= expected
    # MLflow 3: the model is a logged model of the run, with its own artifacts, not a run artifact
    (model,) = mlflow.search_logged_models(
        experiment_ids=[last.info.experiment_id],
        filter_string=f"source_run_id = '{last.info.run_id}'",
        output_format="list",
    )
    assert "MLmodel" in {a.path.split("/")[-1] for a in client.list_logged_model_artifacts(model.model_id)}
    assert model.metrics and {m.key for m in model.metrics} >= {"test_accuracy"}
    # each test metric once on the model (it was logged twice)
    tested = [m for m in model.metrics if m.key.startswith("test_")]
    assert sorted(m.key for m in tested) == sorted(k for k in last.data.metrics if k.startswith("test_"))
    assert tested[0].value == last.data.metrics[tested[0].key]
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
        # a generous limit: it only stops a hung run (two Dask worker processes start on 2 busy cores)
        result = run_module("flows.pipeline", "--until", "preprocess", *runner, cwd=root, timeout=600)
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


# ----- results as Prefect artifacts -----


def test_every_run_publishes_the_results_and_per_class_artifacts_under_stable_keys(flow_runs: FlowRuns) -> None:
    for made in flow_runs.artifacts:
        assert set(made) == {RESULTS_KEY, PER_CLASS_KEY}
        assert made[RESULTS_KEY].type == "markdown" and made[PER_CLASS_KEY].type == "table"
    # one version per run under each key: the Artifacts page shows the latest and its history
    assert [len(flow_runs.history[key]) for key in (RESULTS_KEY, PER_CLASS_KEY)] == [3, 3]


def test_the_results_artifact_holds_the_metrics_decision_and_working_mlflow_links(flow_runs: FlowRuns) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    first, last = flow_runs.parents
    for made, parent, outcome in ((flow_runs.artifacts[0], first, 0), (flow_runs.artifacts[2], last, 2)):
        markdown = made[RESULTS_KEY].data
        result = flow_runs.outcomes[outcome]["metrics"]  # the evaluate task's result carries the same figures
        assert result["mlflow_run_id"] == parent.info.run_id
        assert f"| accuracy | {parent.data.metrics['test_accuracy']:.4f} |" in markdown
        assert f"| MAP@3 | {parent.data.metrics['test_map_at_3']:.4f} |" in markdown
        version = parent.data.tags["registered_model_version"]
        assert str(result["model_version"]) == version
        assert (
            f"{LOCAL_MLFLOW_UI}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
            "?workflowType=machine_learning)" in markdown
        )
        assert f"{LOCAL_MLFLOW_UI}/#/models/quickdraw-cnn/versions/{version})" in markdown
        assert client.get_model_version("quickdraw-cnn", version).run_id == parent.info.run_id
        assert result["promotion_reason"] == parent.data.tags["promotion.reason"]
        assert parent.data.tags["promotion.reason"] in markdown
        decision = parent.data.tags["promotion.decision"]
        assert result["promotion"] == decision and f"**{decision}**" in markdown
    assert "no champion yet" in flow_runs.artifacts[0][RESULTS_KEY].data
    assert "evaluate did not run" not in flow_runs.artifacts[0][RESULTS_KEY].data


def test_a_run_that_skipped_evaluate_republishes_the_current_results_and_says_so(flow_runs: FlowRuns) -> None:
    skipped, first = flow_runs.artifacts[1][RESULTS_KEY].data, flow_runs.artifacts[0][RESULTS_KEY].data
    assert "evaluate did not run" in skipped
    # the same figures and the MLflow run that logged the model still in place (found by its DVC hash)
    first_rows = [line for line in first.splitlines() if line.startswith("|") or line.startswith("- **")]
    assert first_rows == [line for line in skipped.splitlines() if line.startswith("|") or line.startswith("- **")]
    assert flow_runs.parents[0].info.run_id in skipped


def test_every_run_ends_with_what_it_produced_and_what_changed(flow_runs: FlowRuns) -> None:
    first, unchanged, retrained = (outcome["console"] for outcome in flow_runs.outcomes)
    for text, parent in ((first, flow_runs.parents[0]), (retrained, flow_runs.parents[1])):
        metrics = parent.data.metrics
        assert f"test accuracy {metrics['test_accuracy']:.4f}, MAP@3 {metrics['test_map_at_3']:.4f}" in text
        assert f"{LOCAL_MLFLOW_UI}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}" in text
        version, decision = parent.data.tags["registered_model_version"], parent.data.tags["promotion.decision"]
        assert f"model version {version}: " + ("promoted" if decision == "promoted" else "not promoted") in text
    assert "this is the experiment's first finished run" in first
    assert "evaluate skipped" in unchanged and unchanged.endswith("since the previous run: nothing changed")
    assert flow_runs.parents[0].info.run_id in unchanged  # the run that logged the model still in place
    before = flow_runs.parents[0].data.metrics["test_accuracy"]
    assert f"accuracy {before:.4f} -> " in retrained and "train.epochs: 3 -> 2" in retrained


def test_prefects_graph_names_tasks_by_stage_and_category_draws_edges_and_shows_skips(flow_runs: FlowRuns) -> None:
    first, unchanged, retrained = flow_runs.task_runs
    categories = ("circle", "square", "line")
    expected = {f"{step}-{c}" for c in categories for step in ("fetch-synthesize", "split", "preprocess")}
    assert set(first) == expected | {"tune", "train", "evaluate", "dvc-push"}

    def upstream(run: Any) -> set[str]:
        ids = {run_.id: name for name, run_ in first.items()}
        return {ids[i.id] for inputs in run.task_inputs.values() for i in inputs if getattr(i, "id", None) in ids}

    for c in categories:  # per category, each step after the previous stage (its own category's task among them)
        assert f"fetch-synthesize-{c}" in upstream(first[f"split-{c}"])
        assert upstream(first[f"split-{c}"]) <= {f"fetch-synthesize-{x}" for x in categories}
        assert f"split-{c}" in upstream(first[f"preprocess-{c}"])
        earlier = {f"{step}-{x}" for x in categories for step in ("fetch-synthesize", "split")}
        assert upstream(first[f"preprocess-{c}"]) <= earlier  # Prefect adds the tasks whose results it reads
    fanned = {name for name in first if name.startswith(("fetch-", "split-", "preprocess-"))}
    assert {f"preprocess-{c}" for c in categories} <= upstream(first["tune"]) <= fanned
    # each stage waits for the one before; Prefect adds edges of its own from the tasks whose result objects
    # it finds inside a task's inputs (the fetch tasks', in params), never a later stage's
    assert "tune" in upstream(first["train"]) <= fanned | {"tune"}
    assert "train" in upstream(first["evaluate"]) <= fanned | {"tune", "train"}
    assert "evaluate" in upstream(first["dvc-push"])
    assert {run.state.name for run in first.values()} == {"Completed"}
    # nothing changed: one bar per stage, each Skipped (a Completed state), in order
    assert set(unchanged) == set(ALL_STAGES) | {"dvc-push"}
    assert {name: run.state.name for name, run in unchanged.items() if name != "dvc-push"} == dict.fromkeys(
        ALL_STAGES, "Skipped"
    )
    assert all(unchanged[name].state.type.value == "COMPLETED" for name in ALL_STAGES)
    assert {name: run.state.name for name, run in retrained.items()} == {
        **dict.fromkeys(["fetch", "split", "preprocess", "tune"], "Skipped"),
        **dict.fromkeys(["train", "evaluate", "dvc-push"], "Completed"),
    }


def test_the_per_class_table_is_the_evaluate_stages_table(flow_runs: FlowRuns) -> None:
    table = json.loads(flow_runs.artifacts[2][PER_CLASS_KEY].data)
    on_disk = read_per_class(Catalog.under(flow_runs.project))
    assert [row["category"] for row in table] == ["circle", "square", "line"]  # label order
    assert [row["accuracy"] for row in table] == pytest.approx([row["recall"] for row in on_disk])
    assert [row["test drawings"] for row in table] == [row["support"] for row in on_disk]
    assert sum(row["test drawings"] for row in table) == flow_runs.outcomes[2]["metrics"]["test_images"]
    assert flow_runs.outcomes[2]["metrics"]["per_class"] == on_disk


@pytest.fixture(scope="module")
def mlflow_ui(flow_runs: FlowRuns) -> str:
    """`make ui`'s command on the flow runs' store, on a free port of 127.0.0.1."""
    import sys

    from tests.browser import free_port

    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "ui",
            "--backend-store-uri",
            f"sqlite:///{flow_runs.project / 'store.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=flow_runs.project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        for _ in range(240):
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or still starting
                pass
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_mlflow_ui_shows_the_runs_their_charts_a_comparison_and_the_champion(
    flow_runs: FlowRuns, mlflow_ui: str, browser, tmp_path: Path
) -> None:
    """What a user opens after `make ui`, in headless Chromium; screenshots go to tmp_path."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{flow_runs.project / 'store.db'}")
    experiment = client.get_experiment_by_name("quickdraw").experiment_id
    first, last = flow_runs.parents
    names = [run.data.tags["mlflow.runName"] for run in flow_runs.parents]

    # The experiment opens on its training runs (the link `make ui` prints), with the Dataset column filled.
    browser.get(f"{mlflow_ui}/#/experiments/{experiment}?workflowType=machine_learning")
    # The header renders before the runs arrive (slowly on a loaded machine): wait for a run and its dataset.
    page = browser.wait_for(
        "const t = document.body.innerText; "
        "return t.includes('Run Name') && t.includes('quickdraw-train') && t.includes('Dataset') && t",
        timeout=120,
    )
    assert "Dataset" in page and "quickdraw-train" in page and "Token Usage" not in page
    # MLflow 3.17 opens its Assistant panel over a quarter of the page on a browser's first visit; a user
    # closes it once (the browser remembers), as here, so that the screenshots show the pages themselves.
    close = "document.querySelector('button[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
    browser.wait_for(f"return {close}", timeout=30)
    browser.execute(f"{close}.click()")
    browser.wait_for(f"return !{close}", timeout=30)
    assert all(name in page for name in names) and "trial-" not in page  # parents only, trials folded
    # The parent with trials unfolds them (the first run tuned; the third only trained and evaluated).
    expander = "document.querySelector('button[data-component-id*=\"runnamecellrenderer\"]')"
    browser.wait_for(f"return {expander}", timeout=30)
    browser.execute(f"{expander}.click()")
    expanded = browser.wait_for("const t = document.body.innerText; return t.includes('trial-') && t", timeout=30)
    assert len({line for line in expanded.splitlines() if line.startswith("trial-")}) >= 2
    browser.screenshot(tmp_path / "experiment.png")

    # The link `make ui` prints opens the runs with the experiment's view: test metrics and params as columns,
    # and the Source column filled (it was "-" for every run).
    from quickdraw_dag.tracking.store import RUNS_VIEW_KEY, RUNS_VIEW_TAG

    assert RUNS_VIEW_TAG in client.get_experiment(experiment).tags
    browser.resize(2600, 1000)  # the grid draws only the columns in sight
    browser.get(
        f"{mlflow_ui}/#/experiments/{experiment}/runs?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}"
    )
    browser.wait_for("return document.body.innerText.includes('pipeline.py')", timeout=120)  # Source: the file's name
    headers = browser.wait_for(
        "const h = [...document.querySelectorAll('[role=columnheader]')].map(e => e.innerText.trim());"
        "return h.includes('test_accuracy') && h",
        timeout=120,
    )
    assert {"test_accuracy", "test_map_at_3"} <= set(headers)
    browser.screenshot(tmp_path / "runs-view.png")
    browser.resize(1200, 1000)

    # A run's metric charts: its per-epoch validation accuracy and learning rate.
    browser.get(
        f"{mlflow_ui}/#/experiments/{experiment}/runs/{last.info.run_id}/model-metrics?workflowType=machine_learning"
    )
    charts = browser.wait_for("const t = document.body.innerText; return t.includes('learning_rate') && t", timeout=90)
    assert "Model metrics" in charts and "accuracy" in charts and names[1] in charts
    # the first row's charts drawn (each card fetches its history and draws after the page's text is in)
    drawn = browser.wait_for(
        "const cards = [...document.querySelectorAll('[data-testid=\"experiment-view-compare-runs-card\"]')];"
        "return cards.length >= 3 && cards.slice(0, 3).every(c => c.querySelector('.js-plotly-plot')) && cards.length",
        timeout=90,
    )
    assert drawn >= 6 and browser.execute(f"return !{close}")  # and the Assistant stays closed
    browser.screenshot(tmp_path / "run-charts.png")

    # The compare view of the two runs, with the param that differs.
    runs = ",".join(f'"{run.info.run_id}"' for run in flow_runs.parents)
    browser.get(f'{mlflow_ui}/#/compare-runs?runs=[{runs}]&experiments=["{experiment}"]&workflowType=machine_learning')
    compared = browser.wait_for(f"const t = document.body.innerText; return t.includes({names[1]!r}) && t", timeout=90)
    assert names[0] in compared and "train.epochs" in compared
    browser.screenshot(tmp_path / "compare.png")

    # The registered model and its champion alias.
    browser.get(f"{mlflow_ui}/#/models/quickdraw-cnn?workflowType=machine_learning")
    model = browser.wait_for("const t = document.body.innerText; return t.includes('champion') && t", timeout=90)
    assert "Version 1" in model and "Version 2" in model
    browser.screenshot(tmp_path / "model.png")
    assert sorted(p.name for p in tmp_path.glob("*.png") if p.name != "runs-view.png") == [
        "compare.png",
        "experiment.png",
        "model.png",
        "run-charts.png",
    ]
