"""Training pieces shared by tune and train: callbacks, the safety limit, resuming, fingerprints.

What shapes a model (which candidate, how many epochs, how many trials) comes
from quantities that repeat: epochs, steps, trials. The wall clock is only a
safety limit: when it stops a run, the run says so and is not a reproduction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from quickdraw_dag.config.schema import TrainParams
from quickdraw_dag.training.stopping import stop_when_signalled

# ReduceLROnPlateau: when val_loss has not improved for a third of the early-stopping
# patience, cut the rate to 30%, so a plateau gets two or three cuts before training stops;
# never below 1e-5, where Adam's steps no longer move these weights measurably.
PLATEAU_FACTOR = 0.3
PLATEAU_PATIENCE_SHARE = 3
PLATEAU_MIN_LEARNING_RATE = 1e-5
# The cosine schedule ends at 1% of the tuned rate rather than 0: the last epochs still move the weights.
COSINE_FINAL_FRACTION = 0.01
# Test accuracy of the default recipe after N epochs (cosine over N epochs each) on the shipped real sample,
# mean of 3 seeds: `python -m bench.quality samples/quickdraw --epochs-curve` (5, 10, 15) and the defaults'
# own 25 (`python -m bench.quality samples/quickdraw`), 2026-11-23. Used to state what a step budget that
# shortens training is expected to cost; on more data an epoch holds more steps, so the cost there is smaller.
EPOCH_CURVE: dict[int, float] = {5: 0.6638, 10: 0.7135, 15: 0.7345, 25: 0.7813}
# The working files of one training run, inside its checkpoint folder.
BACKUP_DIR = "backup"
EPOCH_LOG = "epochs.csv"
BEST_CHECKPOINT = "best.keras"
BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore


class SharedCallback(keras.callbacks.Callback):
    """A callback whose state must outlive one `fit`: KerasTuner deep-copies a search's callbacks for
    every trial, so without this the search would never see what a trial's copy recorded (a cut, a
    stopped trial) and a data-order hook would drive a copy of the dataset."""

    def __deepcopy__(self, memo: dict) -> SharedCallback:
        return self


class EpochLearningRate(keras.callbacks.Callback):
    """Put the optimizer's learning rate into each epoch's logs, first, so every logger records it.

    ReduceLROnPlateau adds it only after the CSV logger has fixed its columns.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class LiveEpochMetrics(SharedCallback):
    """Log each epoch's metrics (loss, accuracy, validation, learning rate) to a run as the epoch ends."""

    def __init__(self, live: Any, run_id: str | None = None, prefix: str = "") -> None:
        super().__init__()
        self.live = live
        self.run_id = run_id
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        values = {f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        self.live.log_metrics(values, step=epoch + 1, run_id=self.run_id)


class TrialTracker:
    """Each tuning trial as a run nested in the pipeline's run, logged while it trains.

    `mlflow` (the `mlflow` params section) lets the workers of a distributed search log into the same run.
    """

    def __init__(self, live: Any, mlflow: Any = None) -> None:
        self.live = live
        self.mlflow = mlflow

    def begin(
        self, trial_id: str, hyperparameters: dict[str, Any], epochs: int, initial_epoch: int, worker: str = "tuner0"
    ) -> str:
        return self.live.start_child(
            f"trial-{trial_id}",
            tags={"trial_id": trial_id, "trial_status": "RUNNING", "tuner_id": worker},
            params={**hyperparameters, "epochs": epochs, "initial_epoch": initial_epoch},
        )

    def epoch_callback(self, child: str) -> LiveEpochMetrics:
        return LiveEpochMetrics(self.live, run_id=child)

    def end(self, child: str, status: str, metrics: dict[str, float]) -> None:
        self.live.log_metrics(metrics, run_id=child)
        self.live.client.set_tag(child, "trial_status", "COMPLETED" if status == "FINISHED" else status)
        self.live.end(status, run_id=child)

    def restored(
        self, trial_id: str, hyperparameters: dict[str, Any], score: float | None, history: list[float]
    ) -> None:
        """A trial finished by an earlier, killed attempt of this search: logged again, marked as restored."""
        child = self.live.start_child(
            f"trial-{trial_id}", tags={"trial_id": trial_id, "trial_restored": "true"}, params=hyperparameters
        )
        for step, value in enumerate(history, start=1):
            self.live.log_metrics({"val_accuracy": value}, step=step, run_id=child)
        self.end(child, "FINISHED", {"score": score} if score is not None else {})


class SafetyLimit(SharedCallback):
    """A wall-clock safety limit: stop before an epoch that would end past `max_seconds`.

    It never chooses what is trained in a normal run (set it well above the
    expected time); when it does stop a run, `cut` is True and the stage must
    say so and not claim a reproduction. `epochs_run` counts the epochs this
    process trained (a resumed run's earlier epochs are not in its seconds).
    """

    def __init__(self, max_seconds: float | None, started: float | None = None) -> None:
        super().__init__()
        self.max_seconds = max_seconds
        self.started = started
        self.slowest = 0.0
        self.epoch_started = 0.0
        self.epochs_run = 0
        self.cut = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        self.epochs_run += 1
        self.slowest = max(self.slowest, now - self.epoch_started)
        if self.max_seconds is not None and now - self.started + self.slowest > self.max_seconds:
            self.cut = True
            self.model.stop_training = True


class EpochHook(SharedCallback):
    """Call `hook(epoch)` as each epoch begins (lets the data stream follow a resumed run's epoch)."""

    def __init__(self, hook: Callable[[int], None]) -> None:
        super().__init__()
        self.hook = hook

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.hook(epoch)


def resume_epoch(work_dir: Path) -> int:
    """The epoch a BackupAndRestore backup in `work_dir` resumes at (0 without one)."""
    path = Path(work_dir) / BACKUP_DIR / BACKUP_METADATA
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class ChanceStop(SharedCallback):
    """Stop a trial that has learned nothing: a diverged one (too high a learning rate).

    A diverged network predicts one class, so its accuracy sits at 1/classes, in
    training as in validation; 10% above that is still no learning. Stopping it
    saves the rest of its epochs for trials that learn; its low score ranks it last.

    Not judged too early: a network with batch normalization validates with moving
    statistics that lag its weights for the first epochs, and a learning-rate warm-up
    starts slowly, so such a trial is judged after `BATCH_NORM_EPOCHS`; and its training
    accuracy must be at chance too (validation alone at chance is the lag, not
    divergence). Never at a trial's last epoch: stopping there saves nothing.
    """

    CHANCE_FACTOR = 1.1
    BATCH_NORM_EPOCHS = 2

    def __init__(self, num_classes: int, after_epochs: int = 1) -> None:
        super().__init__()
        self.chance = 1.0 / max(1, num_classes)
        self.after_epochs = after_epochs
        self.judge_at = after_epochs
        self.epochs = 0
        self.stopped_trials = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epochs = 0
        self.judge_at = self.after_epochs
        if self.model is not None and has_batch_norm(self.model):
            self.judge_at = max(self.after_epochs, self.BATCH_NORM_EPOCHS)

    def at_chance(self, logs: dict) -> bool:
        """Both accuracies within 10% of chance (a missing training accuracy does not count as learning)."""
        limit = self.CHANCE_FACTOR * self.chance
        validation, training = logs.get("val_accuracy"), logs.get("accuracy")
        return validation is not None and validation <= limit and (training is None or training <= limit)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs += 1
        planned = (self.params or {}).get("epochs")
        last = planned is not None and epoch + 1 >= planned
        if self.epochs == self.judge_at and not last and self.at_chance(logs or {}):
            self.stopped_trials += 1
            self.model.stop_training = True


def has_batch_norm(model: keras.Model) -> bool:
    """True when any layer, nested ones included, is a BatchNormalization."""
    return any(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers())


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
    safety: SafetyLimit
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
    safety = SafetyLimit(params.max_seconds)
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
        safety,
        *stop_when_signalled(),
    ]
    if params.patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping("val_loss", patience=params.patience))
    if params.schedule == "plateau" and params.patience is not None:  # cosine lives in the optimizer instead
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                "val_loss",
                factor=PLATEAU_FACTOR,
                patience=max(1, params.patience // PLATEAU_PATIENCE_SHARE),
                min_lr=PLATEAU_MIN_LEARNING_RATE,
            )
        )
    if target:
        callbacks.append(target)
    # double_checkpoint: the previous epoch's state is kept too, the fallback when a kill tears the last one
    callbacks.append(
        keras.callbacks.BackupAndRestore(str(work_dir / BACKUP_DIR), delete_checkpoint=True, double_checkpoint=True)
    )
    return TrainingCallbacks(callbacks, safety, target, best_checkpoint, epoch_log)


def planned_epochs(params: TrainParams, steps_per_epoch: int) -> tuple[int, str | None]:
    """Epochs to train: `train.epochs`, or fewer when `train.max_steps` optimizer steps run out first.

    The step budget makes training time follow the data instead of growing with it: a split twice
    as large gets half the epochs, each twice as long. Returns the epochs and what limited them.
    """
    if params.max_steps is None:
        return params.epochs, None
    by_steps = max(1, math.ceil(params.max_steps / max(1, steps_per_epoch)))
    if by_steps < params.epochs:
        return by_steps, "train.max_steps"
    return params.epochs, None


def cosine_schedule(
    learning_rate: float, total_steps: int, warmup_steps: int
) -> keras.optimizers.schedules.CosineDecay:
    """Warm up linearly from a tenth of the rate, then follow a cosine to 1% of it at the last step.

    Unlike ReduceLROnPlateau, it never cuts the rate because two noisy epochs looked flat, and the
    run ends at a small rate, where the weights settle, whatever the data size.
    """
    warmup = min(warmup_steps, max(0, total_steps - 1))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warmup else learning_rate,
        decay_steps=max(1, total_steps - warmup),
        alpha=COSINE_FINAL_FRACTION,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def budget_cost(params: TrainParams, epochs: int, limited_by: str | None) -> dict[str, Any] | None:
    """What a budget that shortened training is expected to cost, or None when it did not.

    The estimate comes from the learning curve measured on real drawings
    (`EPOCH_CURVE`, from `python -m bench.quality --epochs-curve` on the shipped sample):
    the accuracy the default recipe reached after `epochs` epochs against after `train.epochs`.
    """
    if limited_by is None:
        return None
    loss = max(0.0, expected_accuracy(params.epochs) - expected_accuracy(epochs))
    note = (
        f"{limited_by}={getattr(params, limited_by.split('.')[-1])} allows {epochs} of train.epochs={params.epochs} "
        f"epochs on this data; on the shipped real sample that many fewer epochs cost about {100 * loss:.1f} points of "
        f"test accuracy (its learning curve, bench.quality; less on more data, where an epoch holds more steps). "
        f"Raise {limited_by} (or set it to null) to train all "
        f"{params.epochs}."
    )
    return {
        "limited_by": limited_by,
        "epochs": epochs,
        "epochs_asked": params.epochs,
        "expected_accuracy_loss": round(loss, 4),
        "note": note,
    }


def expected_accuracy(epochs: int) -> float:
    """Test accuracy of the default recipe after `epochs` epochs, interpolated on `EPOCH_CURVE`."""
    points = sorted(EPOCH_CURVE.items())
    if epochs <= points[0][0]:
        return points[0][1]
    for (e0, a0), (e1, a1) in zip(points, points[1:]):
        if epochs <= e1:
            return a0 + (a1 - a0) * (epochs - e0) / (e1 - e0)
    return points[-1][1]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (config + data identity)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
