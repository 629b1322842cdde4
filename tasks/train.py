"""train: the CNN with the best hyperparameters, streamed from memory maps.

Callbacks (`quickdraw_dag.training.training_callbacks`): EarlyStopping on
val_loss, ModelCheckpoint of the best val_accuracy (that is the model kept),
ReduceLROnPlateau, BackupAndRestore so a killed run resumes at its last
finished epoch, a wall-clock budget (`train.max_seconds`) and an optional
target val_accuracy stop. Seeded. Writes the model atomically (it takes raw
uint8 images), the history (per-epoch metrics including the learning rate,
why training stopped, speed) and the per-epoch training log for `dvc plots`.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import keras

from quickdraw_dag.artifacts import (
    Candidate,
    Catalog,
    History,
    TuningResult,
    processed_identity,
    read_categories,
    read_scaling,
    read_tuning_result,
    write_csv,
    write_history,
)
from quickdraw_dag.atomic import atomic_path
from quickdraw_dag.checkpoints import recover_training
from quickdraw_dag.cli import run_entry_point
from quickdraw_dag.config import Params, SearchSpace, TrainParams
from quickdraw_dag.model import build_cnn, load_model
from quickdraw_dag.stream import MemmapBatches, open_split
from quickdraw_dag.training import TrainingCallbacks, fingerprint, read_epoch_log, training_callbacks

log = logging.getLogger(__name__)


def choose_candidate(tuned: TuningResult, params: TrainParams, train_images: int) -> tuple[Candidate, str]:
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
            why = (
                "best val_accuracy"
                if rank == 0
                else (
                    f"best val_accuracy among candidates that fit train.budget_epochs={params.budget_epochs} "
                    f"in train.max_seconds={params.max_seconds:g} (rank {rank + 1}, needs about {needed:.0f}s)"
                )
            )
            return candidate, why
    fastest = max(candidates, key=lambda c: c.get("images_per_second") or 0.0)
    return fastest, "no candidate fits the time budget: the fastest one"


def stop_reason(callbacks: TrainingCallbacks, epochs_run: int, params: TrainParams) -> str:
    if callbacks.target and callbacks.target.reached_at is not None:
        return "target_val_accuracy"
    if callbacks.budget.stopped_for_time:
        return "max_seconds"
    return "early_stopping" if epochs_run < params.epochs else "epochs"


def train(params: TrainParams, catalog: Catalog) -> History:
    """Run the train stage; returns the history it writes."""
    keras.utils.set_random_seed(params.seed)
    categories = read_categories(catalog)
    train_x, train_y = open_split(catalog, "train")
    val_x, val_y = open_split(catalog, "val")
    candidate, selection = choose_candidate(read_tuning_result(catalog), params, int(train_y.shape[0]))
    hyperparameters = SearchSpace.normalize(candidate["hyperparameters"])
    log.info("train: trial %s (%s): %s", candidate.get("trial_id"), selection, hyperparameters)

    model = build_cnn(
        image_size=int(train_x.shape[1]),
        num_classes=len(categories),
        scaling=read_scaling(catalog),
        augment=params.augment,
        seed=params.seed,
        **hyperparameters,
    )
    # One working folder per (params, hyperparameters, data): a rerun of the same run resumes in it.
    run_id = fingerprint(params.model_dump(mode="json"), hyperparameters, processed_identity(catalog))
    work_dir = catalog.checkpoints / run_id
    work_dir.mkdir(parents=True, exist_ok=True)
    recover_training(work_dir)  # a kill during a checkpoint write leaves a torn file: fall back, say so
    callbacks = training_callbacks(params, work_dir)

    started = time.monotonic()
    fitted = model.fit(
        MemmapBatches(train_x, train_y, batch_size=params.batch_size, shuffle=True, seed=params.seed),
        validation_data=MemmapBatches(val_x, val_y, batch_size=params.batch_size, shuffle=False),
        epochs=params.epochs,
        callbacks=callbacks.all,
        verbose=2,
    )
    seconds = time.monotonic() - started

    metrics = read_epoch_log(callbacks.epoch_log)
    epochs_run = len(metrics.get("loss", []))
    best = load_model(str(callbacks.best_checkpoint))  # the checkpoint of the best val_accuracy
    with atomic_path(catalog.model) as temporary:
        best.save(temporary)
    shutil.rmtree(work_dir, ignore_errors=True)

    val_accuracy = metrics.get("val_accuracy", [0.0])
    epochs = [{"epoch": i + 1, **{k: v[i] for k, v in metrics.items() if i < len(v)}} for i in range(epochs_run)]
    history: History = {
        "hyperparameters": hyperparameters,
        "tuning_trial": candidate.get("trial_id"),
        "selection": selection,
        "epochs_run": epochs_run,
        "epochs": epochs,
        "best_val_accuracy": max(val_accuracy),
        "best_epoch": int(val_accuracy.index(max(val_accuracy))) + 1,
        "stopped_because": stop_reason(callbacks, epochs_run, params),
        "seconds": seconds,
        "train_images": int(train_y.shape[0]),
        # epochs of this process only: a resumed run's earlier epochs took time it did not measure
        "images_per_second": len(fitted.epoch) * int(train_y.shape[0]) / seconds if seconds else 0.0,
        "backend": keras.backend.backend(),
    }
    write_history(catalog, history)
    columns = ["epoch", *sorted(metrics)]
    write_csv(catalog.training_log, columns, [[row.get(c, "") for c in columns] for row in epochs])
    log.info(
        "train: %d epochs in %.0fs (%s), best val_accuracy %.4f at epoch %d",
        epochs_run,
        seconds,
        history["stopped_because"],
        history["best_val_accuracy"],
        history["best_epoch"],
    )
    return history


def run(params: Params) -> dict[str, Any]:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    return dict(train(params.train, Catalog.from_paths(params.paths)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.train", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
