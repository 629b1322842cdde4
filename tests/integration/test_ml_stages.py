"""tune → train → evaluate on tiny synthetic data: outputs, budgets, resume after kill."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import Catalog, read_tuning_report
from quickdraw_dag.config.schema import EvaluateParams, SearchSpace, TrainParams, TuneParams
from quickdraw_dag.errors import SafetyLimitCut
from quickdraw_dag.training.model import load_model
from quickdraw_dag.training.tuner import rank_candidates
from tasks.evaluate import classification_metrics, evaluate
from tasks.train import best_candidate, train
from tasks.tune import tune
from tests.helpers import REPO, write_best

SMALL_SPACE = SearchSpace(filters=(8, 16), learning_rate=(1e-3, 3e-3), batch_norm=(False,))


@pytest.fixture()
def workspace(tmp_path: Path, tiny_processed: Catalog) -> Catalog:
    """The project's layout below tmp_path, with the tiny processed data copied in."""
    catalog = Catalog.under(tmp_path)
    shutil.copytree(tiny_processed.processed, catalog.processed)
    return catalog


def test_a_space_of_one_point_trains_no_trial_and_train_takes_that_point(workspace: Catalog) -> None:
    point = {**SearchSpace().first_choices(), "filters": 8, "dropout": 0.2, "batch_norm": False}
    one_point = SearchSpace(**{name: (value,) for name, value in point.items()})
    assert one_point.single_point() == point
    # its neighbours: one field with two values is a search; so is the default space widened by a value
    assert SearchSpace(**{**{n: (v,) for n, v in point.items()}, "dropout": (0.2, 0.3)}).single_point() is None
    # workers > 1 changes nothing: no chief, no worker process is started for a point (no mapper given)
    for workers in (1, 3):
        result = tune(TuneParams(space=one_point, workers=workers, max_seconds=None), workspace)
        assert result["trial_id"] == "fixed" and result["val_accuracy"] is None
        assert result["hyperparameters"] == point and result["candidates"] == [
            {"trial_id": "fixed", "val_accuracy": None, "hyperparameters": point}
        ]
        report = read_tuning_report(workspace)
        assert report["trials"] == [] and report["train_images_used"] == 0
        assert report["ranking"]["decided_by"] == "fixed space" and "nothing to search" in report["ranking"]["note"]
        assert not workspace.tuner_dir.exists()  # no KerasTuner project: nothing was trained
    history = train(TrainParams(epochs=1, batch_size=32, max_seconds=None), workspace)
    assert history["hyperparameters"] == point and history["tuning_trial"] == "fixed"
    assert history["selection"] == "the one point of tune.space (nothing to search)"


def test_a_search_cut_by_its_safety_limit_is_written_marked_and_not_a_reproduction(workspace: Catalog) -> None:
    params = TuneParams(max_epochs=9, factor=3, max_seconds=1, train_fraction=0.5, space=SMALL_SPACE)
    with pytest.raises(SafetyLimitCut, match="tune.max_seconds=1") as cut:
        tune(params, workspace)
    assert cut.value.exit_code == 3  # DVC must not record it
    report = read_tuning_report(workspace)
    assert report["cut_by_safety_limit"] is True
    assert len(report["trials"]) == 1  # Hyperband would run 10+ trials for max_epochs=9
    assert json.loads(workspace.best_hparams.read_text())["trial_id"] == cut.value.result["trial_id"]


def test_candidates_rank_by_score_then_the_smaller_network_never_by_speed() -> None:
    def record(trial_id: str, score: float, filters: int, speed: float) -> dict:
        return {
            "trial_id": trial_id,
            "score": score,
            "status": "COMPLETED",
            "images_per_second": speed,
            "hyperparameters": {"filters": filters},
        }

    records = [
        record("0000", 0.90, 32, 900.0),
        record("0001", 0.95, 128, 50.0),
        record("0002", 0.95, 64, 300.0),
        record("0003", 0.95, 64, 999.0),
    ]
    ranked = [c["trial_id"] for c in rank_candidates(records)]
    assert ranked == ["0002", "0003", "0001", "0000"]  # a tie goes to fewer filters, then the earlier trial
    assert all("images_per_second" not in c for c in rank_candidates(records))  # no clock in the result
    tuned = {"candidates": rank_candidates(records)}
    assert best_candidate(tuned)["trial_id"] == "0002"  # train takes the best, whatever its speed


def test_a_step_budget_shortens_training_and_says_what_it_costs() -> None:
    from quickdraw_dag.training.callbacks import budget_cost, planned_epochs

    assert planned_epochs(TrainParams(epochs=40, max_steps=5000), steps_per_epoch=44) == (40, None)
    assert planned_epochs(TrainParams(epochs=40, max_steps=5000), steps_per_epoch=250) == (20, "train.max_steps")
    assert planned_epochs(TrainParams(epochs=40, max_steps=None), steps_per_epoch=10_000) == (40, None)
    cost = budget_cost(TrainParams(epochs=40, max_steps=5000), 20, "train.max_steps")
    assert cost["epochs"] == 20 and cost["epochs_asked"] == 40 and cost["expected_accuracy_loss"] > 0
    assert "train.max_steps=5000 allows 20 of train.epochs=40" in cost["note"]
    assert budget_cost(TrainParams(), 40, None) is None


def test_train_then_evaluate_write_model_history_metrics_and_plots(workspace: Catalog) -> None:
    write_best(workspace)
    summary = train(TrainParams(epochs=4, batch_size=32, max_seconds=None), workspace)
    assert summary["epochs_run"] == 4 and [e["epoch"] for e in summary["epochs"]] == [1, 2, 3, 4]
    assert summary["best_val_accuracy"] == max(e["val_accuracy"] for e in summary["epochs"])
    assert load_model(str(workspace.model)).input.dtype == "uint8"
    with open(workspace.training_log) as handle:
        logged = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in logged] == [1, 2, 3, 4]
    # The learning rate of every epoch is recorded (it was missing: the CSV logger fixed its columns first).
    assert [float(row["learning_rate"]) for row in logged] == [e["learning_rate"] for e in summary["epochs"]]
    assert float(logged[0]["learning_rate"]) == pytest.approx(0.003)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate(EvaluateParams(batch_size=64, misclassified=6, samples_per_class=3), workspace)
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]  # Keras's warning, once per run
    on_disk = json.loads(workspace.metrics.read_text())
    assert on_disk == metrics and metrics["accuracy"] > 1 / 3 and metrics["accuracy"] <= metrics["top3_accuracy"]
    with open(workspace.predictions) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["test_images"]
    assert np.isclose(np.mean([r["actual"] == r["predicted"] for r in rows]), metrics["accuracy"])
    for name in ("training_curves", "confusion_matrix", "misclassified", "samples_per_class", "feature_maps"):
        assert workspace.plot(name).stat().st_size > 5000


def test_metrics_on_known_predictions() -> None:
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1, 0.0],  # right at rank 1
            [0.5, 0.3, 0.2, 0.0],  # right at rank 2
            [0.1, 0.2, 0.3, 0.4],  # right at rank 2
            [0.4, 0.3, 0.2, 0.1],  # right at rank 3
        ]
    )
    result = classification_metrics(labels, probabilities, 4)
    assert result["accuracy"] == 0.25 and result["top3_accuracy"] == 1.0
    assert result["map_at_3"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 1 / 3) / 4)
    assert result["confusion"].tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]]
    assert result["per_class"]["precision"].tolist() == [1 / 3, 0, 0, 0]
    assert result["macro_recall"] == pytest.approx(0.25)  # recalls 1, 0, 0 and 0 (class 3 has no test drawing)


def test_killed_training_resumes_at_its_last_finished_epoch(workspace: Catalog, record) -> None:
    project = workspace.processed.parents[1]
    write_best(workspace, filters=16)
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    args = [
        sys.executable,
        "-m",
        "tasks.train",
        "--set",
        "train.epochs=12",
        "--set",
        "train.max_seconds=null",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.patience=50",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_files = lambda: list(workspace.checkpoints.glob("*/epochs.csv"))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        files = log_files()
        if files and len(files[0].read_text().splitlines()) >= 4:  # header + 3 finished epochs
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = len(log_files()[0].read_text().splitlines()) - 1
    assert 3 <= finished < 12 and not workspace.model.exists()
    second = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert "Epoch 1/12" not in output and f"Epoch {finished + 1}/12" in output
    history = json.loads(workspace.history.read_text())
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, 13))
    assert workspace.model.exists() and not log_files()
    record(
        "kill and resume",
        stage="train",
        kills=1,
        completed_after_rerun=1,
        detail=f"killed after epoch {finished}, resumed at epoch {finished + 1}, no epoch repeated",
    )


def test_killed_search_resumes_without_repeating_finished_trials(workspace: Catalog, record) -> None:
    project = workspace.processed.parents[1]
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    args = [
        sys.executable,
        "-m",
        "tasks.tune",
        "--set",
        "tune.max_epochs=4",
        "--set",
        "tune.factor=2",
        "--set",
        "tune.max_seconds=null",
        "--set",
        "tune.train_fraction=1.0",
        "--set",
        "tune.batch_size=16",
        "--set",
        "tune.space.filters=[8, 16]",
        "--set",
        "tune.space.learning_rate=[0.001, 0.003]",
        "--set",
        "tune.space.batch_norm=[false]",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def completed() -> dict[str, float]:
        done = {}
        for path in workspace.tuner_dir.glob("*/trial_*/trial.json"):
            try:
                trial = json.loads(path.read_text())
            except json.JSONDecodeError:  # KerasTuner writes it in place: caught mid-write, not done yet
                continue
            if trial.get("status") == "COMPLETED":
                done[path.parent.name] = path.stat().st_mtime_ns
        return done

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(completed()) < 2:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = completed()
    assert len(before) >= 2 and not workspace.best_hparams.exists()
    second = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    after = completed()
    assert all(after[name] == stamp for name, stamp in before.items())  # finished trials were not rerun
    trials = read_tuning_report(workspace)["trials"]
    assert {f"trial_{t['trial_id']}" for t in trials} >= set(before) and len(trials) > len(before)
    record(
        "kill and resume",
        stage="tune",
        kills=1,
        completed_after_rerun=1,
        detail=f"killed after {len(before)} finished trials; none rerun, {len(trials)} trials in all",
    )
