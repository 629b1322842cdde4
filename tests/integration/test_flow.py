"""The whole flow on tiny synthetic data under a real Prefect test server and a temporary MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.config import load_params

SMALL = {
    "data": {"source": "synthetic", "categories": ["circle", "square", "line"]},
    "fetch": {"synthetic_drawings": 60},
    "preprocess": {"workers": 1},
    "tune": {"max_epochs": 2, "max_seconds": 30, "space": {"filters": [8, 16], "learning_rate": [0.003],
                                                           "batch_norm": [False]}},
    "train": {"epochs": 3, "max_seconds": 120},
    "paint": {"longest_side": 12, "epochs": 3, "hidden_layers": 2, "units": 16},
}


def write_params(project: Path, **sections: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict):
                params[section][key].update(value)
            else:
                params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def dvc_status(project: Path, *targets: str) -> str:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", *targets], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120).stdout


@pytest.mark.slow
def test_flow_runs_skips_tracks_and_agrees_with_dvc(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'store.db'}")
    monkeypatch.setenv("PYTHONPATH", str(project))
    write_params(project, **SMALL)
    with prefect_test_harness(server_startup_timeout=120):
        first = pipeline(load_params(project / "params.yaml"))
        assert first["ran"] == ["fetch", "split", "preprocess", "tune", "train", "evaluate", "paint"]
        assert "up to date" in dvc_status(project)

        second = pipeline(load_params(project / "params.yaml"))
        assert second["ran"] == [] and len(second["skipped"]) == 7

        write_params(project, train={"epochs": 2})
        third = pipeline(load_params(project / "params.yaml"))
        assert third["ran"] == ["train", "evaluate"]
        assert "up to date" in dvc_status(project)

    # MLflow: two parent runs (the first and third flow runs), nested trials, model, alias, lineage.
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    experiment = mlflow.get_experiment_by_name("quickdraw")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert len(parents) == 2
    client = mlflow.MlflowClient()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    model_md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/model.keras")
    last = parents[-1]
    tags = last.data.tags
    assert tags["dvc_model_md5"] == model_md5 and tags["dvc_processed_md5"].endswith(".dir")
    assert tags["prefect_flow_run_id"] != "none" and tags["orchestrator"] == "prefect"
    assert len(tags["git_commit"]) in (40, 4) and tags["git_dirty"] in ("true", "false", "unknown")
    assert last.data.params["train.epochs"] == "2" and last.data.params["data.categories"] == '["circle", "square", "line"]'
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert last.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert len(client.get_metric_history(last.info.run_id, "val_accuracy")) == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    tuning = json.loads((project / "reports/tuning.json").read_text())
    assert len(children) == len(tuning["trials"]) >= 2
    assert all(c.data.tags["trial_status"] == "COMPLETED" and "filters" in c.data.params for c in children)
    artifacts = {a.path for a in client.list_artifacts(last.info.run_id)}
    assert {"model", "plots", "reports"} <= artifacts
    assert "MLmodel" in {a.path.split("/")[-1] for a in client.list_artifacts(last.info.run_id, "model")}
    champion = client.get_model_version_by_alias("quickdraw-cnn", "champion")
    assert str(champion.version) in ("1", "2")
    decisions = [p.data.tags["promotion.decision"] for p in parents]
    assert decisions[0] == "promoted"
    assert (str(champion.version) == "2") == (decisions[1] == "promoted")


@pytest.mark.slow
def test_dask_runner_writes_the_same_bytes_as_the_default_runner(tmp_path: Path) -> None:
    """Per-category tasks on a local Dask cluster (2 worker processes) versus threads."""
    from bench.workspace import copy_project
    from tests.conftest import run_module, tree_digest

    digests = {}
    for runner in (["--task-runner", "threads"], ["--dask", "--workers", "2"]):
        root = copy_project(tmp_path / runner[-1])
        write_params(root, data={"source": "synthetic", "categories": ["circle", "square", "line", "triangle"]},
                     fetch={"synthetic_drawings": 150})
        result = run_module("flows.pipeline", "--until", "preprocess", *runner, cwd=root, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "stages run: ['fetch', 'split', 'preprocess']" in result.stdout + result.stderr
        if runner[0] == "--dask":
            assert "Dask" in result.stdout + result.stderr  # it really ran on a cluster
        digests[runner[-1]] = {**tree_digest(root / "data"), "dvc.lock": (root / "dvc.lock").read_bytes()}
        assert "up to date" in dvc_status(root, "preprocess")  # and the stages before it
    threads, dask = digests["threads"], digests["2"]
    assert set(threads) == set(dask) and any(name.endswith("train_images.npy") for name in threads)
    different = [name for name in threads if threads[name] != dask[name]]
    assert different == []
