"""A kill during a checkpoint write: the rerun detects the torn file, says so, and completes.

The probe's kill landed inside Keras's epoch-end backup (2 of 2 tries) and
left a 96-byte `latest.weights.h5`; every rerun then failed with
"truncated file" until the folder was deleted by hand. The tear is injected
here the same way: a real training run is SIGKILLed after a few epochs and
its last backup cut to 96 bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.training.callbacks import BACKUP_DIR, BEST_CHECKPOINT, EPOCH_LOG
from tests.helpers import REPO, write_best

WEIGHTS = "latest.weights.h5"  # Keras's BackupAndRestore file (quickdraw_dag.training.checkpoints.WEIGHTS)
TRAIN = ["train.epochs=8", "train.max_seconds=null", "train.batch_size=16", "train.patience=50"]


@pytest.fixture()
def workspace(tmp_path: Path, tiny_processed: Catalog) -> Catalog:
    catalog = Catalog.under(tmp_path)
    shutil.copytree(tiny_processed.processed, catalog.processed)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    write_best(catalog, filters=8)
    return catalog


def train_command() -> list[str]:
    return [sys.executable, "-m", "tasks.train", *(arg for value in TRAIN for arg in ("--set", value))]


@pytest.mark.slow
def test_a_torn_last_backup_falls_back_to_the_one_before(workspace: Catalog, record) -> None:
    import h5py

    project = workspace.processed.parents[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(train_command(), cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    logs = lambda: list(workspace.checkpoints.glob(f"*/{EPOCH_LOG}"))
    deadline = time.monotonic() + 240
    while not (logs() and len(logs()[0].read_text().splitlines()) >= 4):  # header + 3 finished epochs
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    weights = next(workspace.checkpoints.glob(f"*/{BACKUP_DIR}/{WEIGHTS}"))
    previous = weights.with_name(WEIGHTS + ".bkp")
    with h5py.File(previous, "r"):  # Keras keeps the epoch before (double_checkpoint)
        pass
    fallback = json.loads(weights.with_name("training_metadata.json.bkp").read_text())["epoch"]
    weights.write_bytes(weights.read_bytes()[:96])  # what a kill during the write left
    second = subprocess.run(train_command(), cwd=project, env=env, capture_output=True, text=True, timeout=600)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert f"is torn; resuming from the one before (epoch {fallback})" in output
    assert f"Epoch {fallback + 1}/8" in output and "Epoch 1/8" not in output  # only the torn epoch is replayed
    history = json.loads(workspace.history.read_text())
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, 9))
    # images/s of the resumed run: the epochs it ran over the seconds it ran them (not all 8 epochs)
    measured_epochs = history["images_per_second"] * history["seconds"] / history["train_images"]
    assert measured_epochs == pytest.approx(8 - fallback)
    record(
        "torn checkpoints",
        scenario="the last epoch's backup cut to 96 bytes after a SIGKILL",
        recovered=1,
        detail=f"resumed from the backup of epoch {fallback}; all 8 epochs in the history",
    )


def test_without_a_good_backup_training_restarts_and_says_so(tmp_path: Path, caplog, record) -> None:
    from quickdraw_dag.training.checkpoints import recover_training

    backup = tmp_path / BACKUP_DIR
    backup.mkdir()
    (backup / WEIGHTS).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 88)
    (backup / (WEIGHTS + ".bkp")).write_bytes(b"torn too")
    (backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    (tmp_path / BEST_CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / EPOCH_LOG).write_text("epoch,loss\n0,1.5\n1,1.2\n")
    note = recover_training(tmp_path)
    assert note and "training restarts at epoch 1" in note and "training restarts at epoch 1" in caplog.text
    assert not backup.exists() and not (tmp_path / BEST_CHECKPOINT).exists() and not (tmp_path / EPOCH_LOG).exists()
    assert recover_training(tmp_path) is None  # a clean folder needs nothing
    record("torn checkpoints", scenario="both backups torn", recovered=1, detail="the stage restarts at epoch 1")


def test_a_torn_best_checkpoint_and_a_cut_log_line_are_repaired(tmp_path: Path) -> None:
    from quickdraw_dag.training.checkpoints import recover_training

    (tmp_path / BEST_CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / EPOCH_LOG).write_text("epoch,loss,val_accuracy\n0,1.5,0.3\n1,1.2,0.4\n2,1.0")
    note = recover_training(tmp_path)
    assert "best-epoch checkpoint" in note and "last line" in note
    assert (tmp_path / EPOCH_LOG).read_text() == "epoch,loss,val_accuracy\n0,1.5,0.3\n1,1.2,0.4\n"
    assert not (tmp_path / BEST_CHECKPOINT).exists()


def test_a_tuner_project_with_a_torn_trial_file_starts_afresh(tmp_path: Path, record) -> None:
    from quickdraw_dag.training.checkpoints import recover_search

    project = tmp_path / "hyperband-abc"
    (project / "trial_0000").mkdir(parents=True)
    (project / "oracle.json").write_text('{"ok": true}')
    (project / "trial_0000" / "trial.json").write_text('{"trial_id": "0000", "status": "COMPL')
    note = recover_search(project)
    assert note and "trial_0000/trial.json" in note and not project.exists()
    assert recover_search(project) is None
    record("torn checkpoints", scenario="a tuner trial.json cut short", recovered=1, detail="the search starts afresh")
