"""Real `dvc repro` on the real samples: every doodle stage runs (not paint, a pipeline of its own), then none."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.data.formats import read_binary
from tests.helpers import dvc, set_params

STAGES = ("fetch", "split", "preprocess", "tune", "train", "evaluate")


def ran(output: str) -> set[str]:
    return {stage for stage in (*STAGES, "paint") if f"Running stage '{stage}'" in output}


def test_repro_runs_all_stages_then_is_a_no_op(project: Path) -> None:
    categories = ["bear", "duck", "frog"]
    set_params(
        project,
        # the shipped sample's stroke files (25 drawings each), through the rasterizing path
        data={"categories": categories},
        fetch={"local_format": "simplified"},
        tune={
            "max_epochs": 2,
            "max_seconds": None,  # safety limit off: the test must never depend on the clock
            "space": {"filters": [8], "learning_rate": [0.003], "batch_norm": [False]},
        },
        train={"epochs": 3, "max_seconds": None},
    )
    started = time.time()
    first = dvc(project, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert ran(first.stdout) == set(STAGES)  # not paint: it is a DVC project of its own, in paint/
    for category in categories:
        drawings = sum(
            len(read_binary(project / "data/interim" / s / f"{category}.bin")) for s in ("train", "val", "test")
        )
        assert 0 < drawings <= 25
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["split"]["params"]["params.yaml"]["split"]["seed"] == 0
    assert set(lock["stages"]) == set(STAGES)
    shown = dvc(project, "metrics", "show")
    assert (
        shown.returncode == 0
        and Catalog.under(Path(".")).metrics.as_posix() in shown.stdout
        and "map_at_3" in shown.stdout
    )
    # dvc repro's stages, each its own process, log into one MLflow run, as the flow's do.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["quickdraw"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags.get("mlflow.runName") for r in parents]
    parent = parents[0]
    assert parent.data.tags["orchestrator"] == "dvc" and parent.data.tags["prefect_flow_run_id"] == "none"
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["test_accuracy"] == pytest.approx(
        yaml.safe_load(Catalog.under(project).metrics.read_text())["accuracy"]
    )
    # It opened as the first stage started (within its process start) and closed after evaluate's outputs.
    assert 0 <= parent.info.start_time / 1000 - started < 20
    assert parent.info.end_time / 1000 >= Catalog.under(project).metrics.stat().st_mtime
    trials = json.loads(Catalog.under(project).tuning_report.read_text())["trials"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(t["trial_id"] for t in trials)
    assert all(c.info.status == "FINISHED" and c.data.tags["trial_status"] == "COMPLETED" for c in children)
    history = json.loads(Catalog.under(project).history.read_text())
    for name in ("val_accuracy", "learning_rate", "loss"):
        logged = client.get_metric_history(parent.info.run_id, name)
        assert [m.value for m in logged] == pytest.approx([e[name] for e in history["epochs"]]), name
    contexts = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in parent.inputs.dataset_inputs
    }
    assert sorted(contexts) == ["testing", "training", "validation"]
    processed_md5 = next(o["md5"] for o in lock["stages"]["preprocess"]["outs"]).removesuffix(".dir")
    assert all(d.digest.startswith(processed_md5[:16]) and "bear" in d.source for d in contexts.values())
    experiment = mlflow.get_experiment_by_name("quickdraw")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # The model is an MLflow 3 logged model of this run, with its test metrics against it.
    (model,) = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert model.source_run_id == parent.info.run_id
    assert {m.key: m.value for m in model.metrics}["test_accuracy"] == pytest.approx(
        parent.data.metrics["test_accuracy"]
    )
    assert not (project / ".quickdraw_run.json").exists()  # evaluate closed the pipeline run

    second = dvc(project, "repro")  # its speed is measured in bench.pipeline, not asserted here
    assert second.returncode == 0
    assert "didn't change, skipping" in second.stdout and "Running stage" not in second.stdout
    assert "up to date" in dvc(project, "status").stdout  # the paint pipeline, never run, is not pending here
    assert "paint" in dvc(project, "--cd", "paint", "status").stdout  # but it is in its own project

    # Changing only train params reruns only train and evaluate.
    set_params(project, train={"epochs": 2})
    third = dvc(project, "repro")
    assert third.returncode == 0, third.stdout + third.stderr
    assert ran(third.stdout) == {"train", "evaluate"}
