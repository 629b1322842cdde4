"""Training pieces shared by tune and train: callbacks, budgets, fingerprints."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from quickdraw_dag.config import TrainParams

# ReduceLROnPlateau: when val_loss has not improved for a third of the early-stopping
# patience, cut the rate to 30%, so a plateau gets two or three cuts before training stops;
# never below 1e-5, where Adam's steps no longer move these weights measurably.
PLATEAU_FACTOR = 0.3
PLATEAU_PATIENCE_SHARE = 3
PLATEAU_MIN_LEARNING_RATE = 1e-5
# The working files of one training run, inside its checkpoint folder.
BACKUP_DIR = "backup"
EPOCH_LOG = "epochs.csv"
BEST_CHECKPOINT = "best.keras"


class EpochLearningRate(keras.callbacks.Callback):
    """Put the optimizer's learning rate into each epoch's logs, first, so every logger records it.

    ReduceLROnPlateau adds it only after the CSV logger has fixed its columns.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class TimeBudget(keras.callbacks.Callback):
    """Stop before an epoch that would end past `max_seconds` (predicted from the slowest epoch)."""

    def __init__(self, max_seconds: float | None, started: float | None = None) -> None:
        super().__init__()
        self.max_seconds = max_seconds
        self.started = started
        self.slowest = 0.0
        self.epoch_started = 0.0
        self.stopped_for_time = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        self.slowest = max(self.slowest, now - self.epoch_started)
        if self.max_seconds is not None and now - self.started + self.slowest > self.max_seconds:
            self.stopped_for_time = True
            self.model.stop_training = True


class TargetAccuracy(keras.callbacks.Callback):
    """Stop once validation accuracy reaches `target` (the seed's 0.99 stop, configurable)."""

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target
        self.reached_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and logs.get("val_accuracy", 0.0) >= self.target:
            self.reached_at = epoch
            self.model.stop_training = True


def read_epoch_log(path: Path) -> dict[str, list[float]]:
    """Per-epoch metrics from a CSV log, one list per column (the last row wins for a repeated epoch)."""
    if not Path(path).exists():
        return {}
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row.pop("epoch"))
            rows[epoch] = {k: float(v) for k, v in row.items() if v not in ("", None, "NA")}
    ordered = [rows[e] for e in sorted(rows)]
    keys = sorted({k for r in ordered for k in r})
    return {k: [r.get(k, float("nan")) for r in ordered] for k in keys}


@dataclass
class TrainingCallbacks:
    """The callbacks of one training run, with handles on those whose outcome the summary reports."""

    all: list[keras.callbacks.Callback]
    budget: TimeBudget
    target: TargetAccuracy | None
    best_checkpoint: Path
    epoch_log: Path


def training_callbacks(params: TrainParams, work_dir: Path) -> TrainingCallbacks:
    """Log, keep the best epoch, stop early, adapt the rate, honour the budgets, back up for resuming.

    Order matters. The learning rate goes into the logs before anything
    records them. The best checkpoint and the CSV row are written before the
    backup, so a kill in between replays that epoch (deterministically, and
    the log keeps its last row) rather than losing it. A resumed run starts
    from the best val_accuracy of its finished epochs, so a worse later epoch
    never replaces the best checkpoint.
    """
    work_dir = Path(work_dir)
    epoch_log = work_dir / EPOCH_LOG
    best_so_far = max((v for v in read_epoch_log(epoch_log).get("val_accuracy", []) if not math.isnan(v)), default=None)
    best_checkpoint = work_dir / BEST_CHECKPOINT
    if not best_checkpoint.exists():
        best_so_far = None
    budget = TimeBudget(params.max_seconds)
    target = TargetAccuracy(params.target_val_accuracy) if params.target_val_accuracy else None
    callbacks: list[keras.callbacks.Callback] = [
        EpochLearningRate(),
        keras.callbacks.ModelCheckpoint(
            str(best_checkpoint),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        # Appends across a kill and a resume, so the log covers every epoch.
        keras.callbacks.CSVLogger(str(epoch_log), append=True),
        keras.callbacks.EarlyStopping("val_loss", patience=params.patience),
        keras.callbacks.ReduceLROnPlateau(
            "val_loss",
            factor=PLATEAU_FACTOR,
            patience=max(1, params.patience // PLATEAU_PATIENCE_SHARE),
            min_lr=PLATEAU_MIN_LEARNING_RATE,
        ),
        budget,
    ]
    if target:
        callbacks.append(target)
    # double_checkpoint: the previous epoch's state is kept too, the fallback when a kill tears the last one
    callbacks.append(
        keras.callbacks.BackupAndRestore(str(work_dir / BACKUP_DIR), delete_checkpoint=True, double_checkpoint=True)
    )
    return TrainingCallbacks(callbacks, budget, target, best_checkpoint, epoch_log)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (config + data identity)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
