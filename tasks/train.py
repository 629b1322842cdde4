"""train: the CNN with the best hyperparameters, streamed from memory maps.

Callbacks: EarlyStopping on val_loss, ModelCheckpoint of the best
val_accuracy (that is the model kept), ReduceLROnPlateau, BackupAndRestore
so a killed run resumes at its last finished epoch, a wall-clock budget
(`train.max_seconds`) and an optional target val_accuracy stop. Seeded.
Writes `models/model.keras` atomically (it takes raw uint8 images),
`reports/history.json` (per-epoch metrics, why training stopped, speed) and
`reports/training_log.csv` (the same epochs, for `dvc plots`).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import keras

from quickdraw_dag.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from quickdraw_dag.cli import run_entry_point
from quickdraw_dag.config import Params, TrainParams
from quickdraw_dag.errors import DataError
from quickdraw_dag.model import build_cnn, load_model
from quickdraw_dag.stream import MemmapBatches, open_split
from quickdraw_dag.training import (
    TargetAccuracy,
    TimeBudget,
    augmentation_from,
    data_identity,
    fingerprint,
    load_categories,
    load_scaling,
)
from tasks.tune import normalize_hyperparameters

log = logging.getLogger(__name__)


def read_tuning_result(models_dir: Path) -> dict[str, Any]:
    path = Path(models_dir) / "best_hparams.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("missing: run the tune stage first", path=path) from None


def choose_candidate(tuned: dict[str, Any], params: TrainParams, train_images: int) -> tuple[dict[str, Any], str]:
    """The best tuned candidate that can train `budget_epochs` epochs within `max_seconds`.

    A 128-filter CNN that wins a 3-epoch race on a quarter of the data but
    cannot finish ten epochs in the time given is not the best choice here.
    """
    candidates = tuned.get("candidates") or [tuned]
    if params.max_seconds is None:
        return candidates[0], "best val_accuracy (no time budget)"
    for rank, candidate in enumerate(candidates):
        speed = candidate.get("images_per_second") or 0.0
        needed = params.budget_epochs * train_images / speed if speed else float("inf")
        if needed <= params.max_seconds:
            why = "best val_accuracy" if rank == 0 else (
                f"best val_accuracy among candidates that fit train.budget_epochs={params.budget_epochs} "
                f"in train.max_seconds={params.max_seconds:g} (rank {rank + 1}, needs about {needed:.0f}s)"
            )
            return candidate, why
    fastest = max(candidates, key=lambda c: c.get("images_per_second") or 0.0)
    return fastest, "no candidate fits the time budget: the fastest one"


def read_epoch_log(path: Path) -> dict[str, list[float]]:
    """Per-epoch metrics from the CSV log (last row wins for a repeated epoch)."""
    import csv

    if not path.exists():
        return {}
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row.pop("epoch"))
            rows[epoch] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    ordered = [rows[e] for e in sorted(rows)]
    keys = sorted({k for r in ordered for k in r})
    return {k: [r.get(k, float("nan")) for r in ordered] for k in keys}


def train(params: TrainParams, processed_dir: Path, models_dir: Path, reports_dir: Path) -> dict[str, Any]:
    """Run the train stage; returns the summary written to history.json."""
    keras.utils.set_random_seed(params.seed)
    categories = load_categories(processed_dir)
    train_x, train_y = open_split(processed_dir, "train")
    candidate, selection = choose_candidate(read_tuning_result(models_dir), params, int(train_y.shape[0]))
    hyperparameters = normalize_hyperparameters(candidate["hyperparameters"])
    log.info("train: trial %s (%s): %s", candidate.get("trial_id"), selection, hyperparameters)
    val_x, val_y = open_split(processed_dir, "val")
    model = build_cnn(
        image_size=int(train_x.shape[1]),
        num_classes=len(categories),
        scaling=load_scaling(processed_dir),
        augment=augmentation_from(params.augment),
        seed=params.seed,
        **hyperparameters,
    )
    run_id = fingerprint(params.model_dump(mode="json"), hyperparameters, data_identity(processed_dir))
    work_dir = Path(models_dir) / "checkpoints" / run_id
    work_dir.mkdir(parents=True, exist_ok=True)
    best_path = work_dir / "best.keras"
    budget = TimeBudget(params.max_seconds)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(str(work_dir / "backup"), delete_checkpoint=True),
        # Appends across a kill and a resume, so the history covers every epoch.
        keras.callbacks.CSVLogger(str(work_dir / "epochs.csv"), append=True),
        keras.callbacks.EarlyStopping("val_loss", patience=params.patience),
        keras.callbacks.ModelCheckpoint(str(best_path), monitor="val_accuracy", mode="max", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.3, patience=max(1, params.patience // 3), min_lr=1e-5),
        budget,
    ]
    target = TargetAccuracy(params.target_val_accuracy) if params.target_val_accuracy else None
    if target:
        callbacks.append(target)
    started = time.monotonic()
    history = model.fit(
        MemmapBatches(train_x, train_y, batch_size=params.batch_size, shuffle=True, seed=params.seed,
                      workers=params.workers),
        validation_data=MemmapBatches(val_x, val_y, batch_size=params.batch_size, shuffle=False),
        epochs=params.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.monotonic() - started
    metrics = read_epoch_log(work_dir / "epochs.csv") or {
        k: [float(v) for v in values] for k, values in history.history.items()
    }
    epochs_run = len(metrics.get("loss", []))
    best = load_model(str(best_path))  # the checkpoint of the best val_accuracy
    model_path = Path(models_dir) / "model.keras"
    with atomic_path(model_path) as temporary:
        best.save(temporary)
    shutil.rmtree(work_dir, ignore_errors=True)
    reason = "epochs"
    if target and target.reached_at is not None:
        reason = "target_val_accuracy"
    elif budget.stopped_for_time:
        reason = "max_seconds"
    elif epochs_run < params.epochs:
        reason = "early_stopping"
    val_accuracy = metrics.get("val_accuracy", [0.0])
    summary = {
        "hyperparameters": hyperparameters,
        "tuning_trial": candidate.get("trial_id"),
        "selection": selection,
        "epochs_run": epochs_run,
        "epochs": [{"epoch": i + 1, **{k: v[i] for k, v in metrics.items() if i < len(v)}} for i in range(epochs_run)],
        "best_val_accuracy": max(val_accuracy),
        "best_epoch": int(val_accuracy.index(max(val_accuracy))) + 1,
        "stopped_because": reason,
        "seconds": seconds,
        "train_images": int(train_y.shape[0]),
        "images_per_second": epochs_run * int(train_y.shape[0]) / seconds if seconds else 0.0,
        "backend": keras.backend.backend(),
    }
    write_json_atomic(Path(reports_dir) / "history.json", summary)
    columns = ["epoch", *sorted(metrics)]
    lines = [",".join(columns)] + [
        ",".join(str(row.get(c, "")) for c in columns) for row in summary["epochs"]
    ]
    write_bytes_atomic(Path(reports_dir) / "training_log.csv", ("\n".join(lines) + "\n").encode())
    log.info("train: %d epochs in %.0fs (%s), best val_accuracy %.4f at epoch %d", epochs_run, seconds, reason,
             summary["best_val_accuracy"], summary["best_epoch"])
    return summary


def run(params: Params) -> dict[str, Any]:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    return train(params.train, Path(params.paths.processed), Path(params.paths.models), Path(params.paths.reports))


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.train", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
