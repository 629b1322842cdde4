"""`tune.workers: 2`: KerasTuner's distributed mode, a chief and two worker processes on 127.0.0.1.

The same tiny search runs once in one process and once on two workers, each logging its trials into
a pipeline run of its own in a real MLflow store. Both workers run trials, no trial runs twice, and
the tuning result and the MLflow child runs have the same shape as with one worker.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog, read_tuning_report
from quickdraw_dag.config import MlflowParams, SearchSpace, TuneParams
from quickdraw_dag.live_run import LiveRun
from quickdraw_dag.training import TrialTracker
from tasks.tune import tune

SPACE = SearchSpace(filters=(8, 16), learning_rate=(1e-3, 3e-3), batch_norm=(False,))


def search(root: Path, processed: Path, workers: int, mlflow: MlflowParams) -> tuple[Catalog, dict, list]:
    catalog = Catalog.under(root)
    shutil.copytree(processed, catalog.processed)
    live = LiveRun.create(mlflow, run_name=f"workers-{workers}", tags={"orchestrator": "test"})
    params = TuneParams(
        max_epochs=2, factor=2, max_seconds=None, train_fraction=0.5, space=SPACE, batch_size=32, workers=workers
    )
    tune(params, catalog, TrialTracker(live, mlflow))
    live.end("FINISHED")
    children = live.client.search_runs(
        [live.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{live.run_id}'", max_results=100
    )
    return catalog, json.loads(catalog.best_hparams.read_text()), children


def shape(value: object) -> object:
    """Keys and types, recursively: what must match between one worker and two."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.slow
def test_two_workers_share_the_trials_and_record_what_one_worker_does(
    tmp_path: Path, tiny_processed: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUICKDRAW_TUNE_CHIEF", raising=False)  # 127.0.0.1, a free port
    mlflow = MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="workers")
    one, one_best, one_runs = search(tmp_path / "one", tiny_processed.processed, 1, mlflow)
    two, two_best, two_runs = search(tmp_path / "two", tiny_processed.processed, 2, mlflow)

    report = read_tuning_report(two)
    trials = report["trials"]
    assert len(trials) == len(read_tuning_report(one)["trials"]) >= 3  # Hyperband's plan, whoever runs it
    assert all(t["status"] == "COMPLETED" for t in trials)
    ran = [trial for worker in report["workers"] for trial in worker["trials"]]
    assert sorted(ran) == sorted(t["trial_id"] for t in trials)  # every trial ran, and none twice
    assert {w["tuner_id"] for w in report["workers"] if w["trials"]} == {"tuner0", "tuner1"}  # both worked
    assert all(w["failed"] is None and w["restarts"] == 0 for w in report["workers"])
    assert report["chief"].startswith("127.0.0.1:") and report["incomplete"] is None
    assert {t["worker"] for t in trials} == {"tuner0", "tuner1"}

    assert shape(two_best) == shape(one_best)
    assert len(two_best["candidates"]) == len(one_best["candidates"])
    assert set(two_best["hyperparameters"]) == set(one_best["hyperparameters"])

    assert len(two_runs) == len(one_runs) == len(trials)
    for runs in (one_runs, two_runs):
        assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(t["trial_id"] for t in trials)
        assert all(r.info.status == "FINISHED" and r.data.tags["trial_status"] == "COMPLETED" for r in runs)
    assert {r.data.tags["tuner_id"] for r in two_runs} == {"tuner0", "tuner1"}
    assert {frozenset(r.data.params) for r in two_runs} == {frozenset(r.data.params) for r in one_runs}
    assert {frozenset(r.data.metrics) for r in two_runs} == {frozenset(r.data.metrics) for r in one_runs}
