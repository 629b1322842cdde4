"""Real `dvc repro` on the real samples: every doodle stage runs (not paint, a pipeline of its own), then none."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.formats import read_binary
from tests.conftest import dvc, set_params

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
            "max_seconds": 20,
            "space": {"filters": [8], "learning_rate": [0.003], "batch_norm": [False]},
        },
        train={"epochs": 3, "max_seconds": 60},
    )
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
    # dvc repro on its own logs to MLflow like the flow does, without a Prefect id.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["quickdraw"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["orchestrator"] == "dvc-or-cli"
    assert parents[0].data.tags["prefect_flow_run_id"] == "none" and parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["test_accuracy"] == pytest.approx(
        yaml.safe_load(Catalog.under(project).metrics.read_text())["accuracy"]
    )

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
