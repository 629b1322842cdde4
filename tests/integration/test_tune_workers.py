"""The search on tiny synthetic data, once on one worker and once on `tune.workers: 2`.

One worker: the tuning result ranks its candidates, and a rerun reloads the search without repeating a
trial. Two workers: KerasTuner's distributed mode, a chief and two worker processes on 127.0.0.1. The
same tiny search logs its trials into a pipeline run of its own in a real MLflow store. Both workers run
trials, no trial runs twice, and the tuning result and the MLflow child runs have the same shape as with
one worker. In the two-worker search one worker process is killed (SIGKILL) once both hold a trial: it is
restarted under its tuner id, takes its trial back from the chief, and the search completes every trial
exactly once. The one-worker search is run once for both tests (a module fixture, one xdist group).
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from quickdraw_dag.artifacts import Catalog, read_tuning_report
from quickdraw_dag.config.schema import MlflowParams, SearchSpace, TuneParams
from quickdraw_dag.tracking.live_run import LiveRun
from quickdraw_dag.training.callbacks import TrialTracker
from tasks.tune import tune

SPACE = SearchSpace(filters=(8, 16), learning_rate=(1e-3, 3e-3), batch_norm=(False,))


def holds_a_running_trial(tracking_uri: str, tuner_id: str) -> bool:
    """True once `tuner_id` has opened its trial's MLflow run (killing it earlier leaves no run to mark KILLED)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, filter_string=f"tags.tuner_id = '{tuner_id}' and status = 'RUNNING'")
    except Exception:  # noqa: BLE001 - the store is being created or migrated: not yet
        return False
    return bool(runs)


def kill_worker_once(
    catalog: Catalog, tuner_id: str, killed: list[int], tracking_uri: str, timeout: float = 300
) -> None:
    """SIGKILL `tuner_id`'s worker process once it holds a trial, its MLflow run open."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if len(list(catalog.tuner_dir.glob("*/trial_*"))) >= 2 and holds_a_running_trial(tracking_uri, tuner_id):
            for process in psutil.Process().children(recursive=True):
                try:
                    line = process.cmdline()
                except psutil.Error:
                    continue
                if "--worker-spec" in line and f"quickdraw-{tuner_id}-" in " ".join(line):
                    process.send_signal(signal.SIGKILL)
                    killed.append(process.pid)
                    return
        time.sleep(0.2)


def search_params(workers: int) -> TuneParams:
    return TuneParams(
        max_epochs=2, factor=2, max_seconds=None, train_fraction=0.5, space=SPACE, batch_size=32, workers=workers
    )


def search(
    root: Path, processed: Path, workers: int, mlflow: MlflowParams, kill: str | None = None
) -> tuple[Catalog, dict, list, list[int]]:
    catalog = Catalog.under(root)
    shutil.copytree(processed, catalog.processed)
    killed: list[int] = []
    killer = (
        threading.Thread(target=kill_worker_once, args=(catalog, kill, killed, mlflow.tracking_uri), daemon=True)
        if kill
        else None
    )
    if killer is not None:
        killer.start()
    live = LiveRun.create(mlflow, run_name=f"workers-{workers}", tags={"orchestrator": "test"})
    tune(search_params(workers), catalog, TrialTracker(live, mlflow))
    live.end("FINISHED")
    if killer is not None:
        killer.join(timeout=5)
    children = live.client.search_runs(
        [live.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{live.run_id}'", max_results=100
    )
    return catalog, json.loads(catalog.best_hparams.read_text()), children, killed


def shape(value: object) -> object:
    """Keys and types, recursively: what must match between one worker and two."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@dataclass(frozen=True)
class OneWorker:
    catalog: Catalog
    best: dict
    runs: list


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory, tiny_processed: Catalog) -> OneWorker:
    """The search on one worker, logged to MLflow as in a pipeline run (read-only: copy it before writing)."""
    root = tmp_path_factory.mktemp("one-worker")
    mlflow = MlflowParams(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", experiment="workers")
    catalog, best, runs, _ = search(root / "one", tiny_processed.processed, 1, mlflow)
    return OneWorker(catalog, best, runs)


@pytest.mark.xdist_group("tune_search")
def test_tune_writes_ranked_candidates_and_resumes_without_repeating(one_worker: OneWorker, tmp_path: Path) -> None:
    best = one_worker.best
    trials = read_tuning_report(one_worker.catalog)["trials"]
    assert len(trials) >= 3 and all(t["status"] == "COMPLETED" for t in trials)
    assert all(t["hyperparameters"]["filters"] in (8, 16) and t["images_per_second"] > 0 for t in trials)
    assert all(isinstance(t["hyperparameters"]["batch_norm"], bool) for t in trials)
    scores = [c["val_accuracy"] for c in best["candidates"]]
    assert scores == sorted(scores, reverse=True) and best["val_accuracy"] == max(t["score"] for t in trials)
    ranking = read_tuning_report(one_worker.catalog)["ranking"]  # whether the winner won on its score or a tie-break
    assert ranking["decided_by"] == ("tie-break" if abs(scores[0] - scores[1]) <= 1e-6 else "score")
    assert json.loads(one_worker.catalog.best_hparams.read_text())["hyperparameters"] == best["hyperparameters"]
    # Same config again, in a copy of the finished search: the tuner project is reloaded, no trial runs again.
    workspace = Catalog.under(tmp_path)
    shutil.copytree(one_worker.catalog.processed.parents[1], tmp_path, dirs_exist_ok=True)
    stamps = {p: p.stat().st_mtime_ns for p in workspace.tuner_dir.glob("*/trial_*/trial.json")}
    assert len(stamps) == len(trials)
    again = tune(search_params(1), workspace)
    assert len(read_tuning_report(workspace)["trials"]) == len(trials)
    assert again["trial_id"] == best["trial_id"]
    assert json.loads(workspace.best_hparams.read_text())["hyperparameters"] == best["hyperparameters"]
    assert {p: p.stat().st_mtime_ns for p in workspace.tuner_dir.glob("*/trial_*/trial.json")} == stamps


@pytest.mark.slow
@pytest.mark.xdist_group("tune_search")
def test_two_workers_share_the_trials_and_record_what_one_worker_does(
    tmp_path: Path, tiny_processed: Catalog, one_worker: OneWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUICKDRAW_TUNE_CHIEF", raising=False)  # 127.0.0.1, a free port
    mlflow = MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="workers")
    one, one_best, one_runs = one_worker.catalog, one_worker.best, one_worker.runs
    two, two_best, two_runs, killed = search(tmp_path / "two", tiny_processed.processed, 2, mlflow, kill="tuner1")
    assert len(killed) == 1  # the kill happened, mid-search

    report = read_tuning_report(two)
    trials = report["trials"]
    assert len(trials) == len(read_tuning_report(one)["trials"]) >= 3  # Hyperband's plan, whoever runs it
    assert all(t["status"] == "COMPLETED" for t in trials)
    ran = [trial for worker in report["workers"] for trial in worker["trials"]]
    assert sorted(ran) == sorted(t["trial_id"] for t in trials)  # every trial ran, and none twice
    assert {w["tuner_id"] for w in report["workers"] if w["trials"]} == {"tuner0", "tuner1"}  # both worked
    restarts = {w["tuner_id"]: w["restarts"] for w in report["workers"]}
    assert restarts == {"tuner0": 0, "tuner1": 1} and all(w["failed"] is None for w in report["workers"])
    assert report["chief"].startswith("127.0.0.1:") and report["incomplete"] is None
    assert {t["worker"] for t in trials} == {"tuner0", "tuner1"}

    assert shape(two_best) == shape(one_best)
    assert len(two_best["candidates"]) == len(one_best["candidates"])
    assert set(two_best["hyperparameters"]) == set(one_best["hyperparameters"])

    # The killed worker's attempt stays in MLflow as a KILLED child run (closed by the restarted worker);
    # every trial has one FINISHED run, as with one worker, and nothing is left RUNNING.
    assert sorted(r.info.status for r in two_runs if r.info.status != "FINISHED") == ["KILLED"]
    finished = [r for r in two_runs if r.info.status == "FINISHED"]
    assert len(finished) == len(one_runs) == len(trials)
    for runs in (one_runs, finished):
        assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(t["trial_id"] for t in trials)
        assert all(r.info.status == "FINISHED" and r.data.tags["trial_status"] == "COMPLETED" for r in runs)
    assert {r.data.tags["tuner_id"] for r in finished} == {"tuner0", "tuner1"}
    assert {frozenset(r.data.params) for r in finished} == {frozenset(r.data.params) for r in one_runs}
    assert {frozenset(r.data.metrics) for r in finished} == {frozenset(r.data.metrics) for r in one_runs}
