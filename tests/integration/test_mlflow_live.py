"""MLflow as its users watch it: runs appear while stages work, a killed run keeps what it finished.

`dvc repro` runs each stage in a process of its own; they all log into one
parent run, live. The test watches the real SQLite store while the pipeline
runs, kills it mid-training (the whole process group, as a machine going
away would), and checks what the next run makes of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_PIPELINE, run_module, set_params


def store(project: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.MlflowClient()


def parents(client) -> list:
    experiment = client.get_experiment_by_name("quickdraw")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


@pytest.mark.slow
def test_a_run_is_watched_live_and_a_killed_one_keeps_its_epochs(project: Path) -> None:
    set_params(project, **TINY_PIPELINE)
    set_params(project, train={"epochs": 40, "max_steps": None, "patience": 40})  # long enough to watch
    env = {
        **os.environ,
        "PYTHONPATH": str(project),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
    }
    repro = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client, seen, deadline = store(project), {}, time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            assert repro.poll() is None, "the pipeline ended before it could be watched"
            running = [r for r in parents(client) if r.info.status == "RUNNING"]
            if running:
                run_id = running[0].info.run_id
                children = client.search_runs(
                    [running[0].info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
                )
                epochs = client.get_metric_history(run_id, "val_accuracy")
                seen = {"run_id": run_id, "trials": len(children), "epochs": len(epochs)}
                if seen["trials"] and seen["epochs"] >= 3:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"no live run with trials and epochs in time: {seen}")
    finally:
        os.killpg(repro.pid, signal.SIGKILL)  # dvc and the stage it runs, mid-training
        repro.wait()
    assert client.get_run(seen["run_id"]).info.status == "RUNNING"  # nobody could close it

    # A stage run on its own: its own run, and on the way it closes the killed one as KILLED.
    alone = run_module("tasks.train", "--set", "train.epochs=2", cwd=project, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    killed = client.get_run(seen["run_id"])
    assert killed.info.status == "KILLED" and "ended without finishing" in killed.data.tags["killed_note"]
    assert len(client.get_metric_history(seen["run_id"], "val_accuracy")) >= seen["epochs"]  # what it finished
    own = [r for r in parents(client) if r.info.run_id != seen["run_id"]]
    assert len(own) == 1 and own[0].data.tags["stage_alone"] == "train" and own[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(own[0].info.run_id, "val_accuracy")] == [1, 2]
