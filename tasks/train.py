"""train: the best tuned CNN, trained on the whole training split, streamed from memory maps.

What is trained repeats exactly: the search's best candidate (never a worse
one because of the clock), for a number of epochs fixed by `train.epochs` and
the step budget `train.max_steps` (so the budget follows the data: a larger
split gets fewer, longer epochs), with a learning-rate schedule over those
epochs (`cosine`, or `plateau`: ReduceLROnPlateau), and the last epoch's
weights as the model kept (`train.weights: best` keeps the checkpoint of the
best val_accuracy instead); early stopping on val_loss only with `train.patience`.
Seeded and deterministic by default (`train.deterministic`). `train.precision`
picks the arithmetic (bfloat16 where the CPU computes it natively, under
`auto`); the model kept is rebuilt in float32 with the trained weights and
optimizer, so evaluate and serving compute in float32 anywhere. When the step
budget trains fewer epochs than `train.epochs`, the run says so with the
accuracy it expects that to cost. `train.max_seconds` is a safety limit only:
if it stops training, the outputs are written, marked as cut, and the stage
exits with code 3 so that DVC does not record them as a reproduction.

Writes the model (raw uint8 images in; its bytes depend only on its weights),
the history (per-epoch metrics including the learning rate, the plan, why
training stopped, speed) and the per-epoch training log for `dvc plots`. A
killed run resumes at its last finished epoch (BackupAndRestore), reading the
data in the order the uninterrupted run would have.
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
from quickdraw_dag.config.schema import Params, SearchSpace, TrainParams
from quickdraw_dag.data.stream import MemmapBatches, open_split
from quickdraw_dag.errors import SafetyLimitCut
from quickdraw_dag.runtime.atomic import atomic_path
from quickdraw_dag.runtime.cli import run_entry_point
from quickdraw_dag.tracking.live_run import LiveRun, tracked_stage
from quickdraw_dag.tracking.store import close_stopped_runs
from quickdraw_dag.training.callbacks import (
    EpochHook,
    LiveEpochMetrics,
    TrainingCallbacks,
    budget_cost,
    cosine_schedule,
    fingerprint,
    planned_epochs,
    read_epoch_log,
    resume_epoch,
    training_callbacks,
)
from quickdraw_dag.training.checkpoints import recover_training
from quickdraw_dag.training.determinism import save_model, seed_everything
from quickdraw_dag.training.devices import check_batch, place, training_on
from quickdraw_dag.training.model import build_cnn, load_model
from quickdraw_dag.training.precision import dtype_policy, in_float32, resolve_precision

log = logging.getLogger(__name__)


def best_candidate(tuned: TuningResult) -> Candidate:
    """The search's best trial: the ranking is the tune stage's (val_accuracy, then the smaller network)."""
    candidates = tuned.get("candidates") or [tuned]
    return candidates[0]


def stop_reason(callbacks: TrainingCallbacks, epochs_run: int, epochs: int) -> str:
    if callbacks.target and callbacks.target.reached_at is not None:
        return "target_val_accuracy"
    if callbacks.safety.cut:
        return "max_seconds"
    return "early_stopping" if epochs_run < epochs else "epochs"


def train(
    params: TrainParams,
    catalog: Catalog,
    live: LiveRun | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> History:
    """Run the train stage; returns the history it writes. With `live`, every epoch is logged as it ends.

    `extra_callbacks` watch the training without changing it (bench.quality's test-accuracy clock).
    """
    seed_everything(params.seed, params.deterministic)
    placement = place(params.devices)
    check_batch(placement, params.batch_size)
    categories = read_categories(catalog)
    train_x, train_y = open_split(catalog, "train")
    val_x, val_y = open_split(catalog, "val")
    candidate = best_candidate(read_tuning_result(catalog))
    hyperparameters = SearchSpace.normalize(candidate["hyperparameters"])
    # The global batch (train.batch_size) is split between the devices; see quickdraw_dag.training.devices.
    multiple = placement.batch_multiple
    train_data = MemmapBatches(
        train_x, train_y, batch_size=params.batch_size, shuffle=True, seed=params.seed, multiple_of=multiple
    )
    val_data = MemmapBatches(val_x, val_y, batch_size=params.batch_size, shuffle=False, multiple_of=multiple)
    steps_per_epoch = len(train_data)
    epochs, limited_by = planned_epochs(params, steps_per_epoch)
    log.info(
        "train: trial %s, %s; %d epochs of %d steps (%s)",
        candidate.get("trial_id"),
        hyperparameters,
        epochs,
        steps_per_epoch,
        limited_by or "train.epochs",
    )

    # What train.precision means on this machine; a checkpoint of one arithmetic is never resumed in another.
    precision = resolve_precision(params.precision, placement.on_cpu, placement.backend)
    # One working folder per (params, precision, hyperparameters, data): a rerun of the same run resumes in it.
    run_id = fingerprint(params.model_dump(mode="json"), precision, hyperparameters, processed_identity(catalog))
    work_dir = catalog.checkpoints / run_id
    work_dir.mkdir(parents=True, exist_ok=True)
    recover_training(work_dir)  # a kill during a checkpoint write leaves a torn file: fall back, say so
    callbacks = training_callbacks(params, work_dir)
    train_data.set_epoch(resume_epoch(work_dir))

    def build() -> keras.Model:
        return build_cnn(
            image_size=int(train_x.shape[1]),
            num_classes=len(categories),
            scaling=read_scaling(catalog),
            augment=params.augment,
            seed=params.seed,
            **hyperparameters,
        )

    with training_on(placement), dtype_policy(precision):
        model = build()
        if params.schedule == "cosine":
            model.optimizer.learning_rate = cosine_schedule(
                hyperparameters["learning_rate"], epochs * steps_per_epoch, params.warmup_epochs * steps_per_epoch
            )
        started = time.monotonic()
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            shuffle=False,  # MemmapBatches shuffles itself, seeded; Keras would reorder batches with global `random`
            callbacks=[
                EpochHook(train_data.set_epoch),
                *callbacks.all,
                *([LiveEpochMetrics(live)] if live else []),
                *extra_callbacks,
            ],
            verbose=2,
        )
    seconds = time.monotonic() - started

    metrics = read_epoch_log(callbacks.epoch_log)
    epochs_run = len(metrics.get("loss", []))
    # "final": the weights the schedule annealed to; "best": the checkpoint of the best val_accuracy
    kept = model if params.weights == "final" else load_model(str(callbacks.best_checkpoint))
    if precision != "float32":
        kept = in_float32(kept, build)  # what evaluate and serving load computes in float32 on any machine
    with atomic_path(catalog.model) as temporary:
        save_model(kept, temporary)
    shutil.rmtree(work_dir, ignore_errors=True)

    val_accuracy = metrics.get("val_accuracy", [0.0])
    history: History = {
        "hyperparameters": hyperparameters,
        "tuning_trial": candidate.get("trial_id"),
        "selection": (
            "the one point of tune.space (nothing to search)"
            if candidate.get("val_accuracy") is None
            else "best val_accuracy of the search"
        ),
        "schedule": params.schedule,
        "weights": params.weights,
        "planned_epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": epochs_run,
        "epochs": [{"epoch": i + 1, **{k: v[i] for k, v in metrics.items() if i < len(v)}} for i in range(epochs_run)],
        "best_val_accuracy": max(val_accuracy),
        "best_epoch": int(val_accuracy.index(max(val_accuracy))) + 1,
        "stopped_because": stop_reason(callbacks, epochs_run, epochs),
        "budget": budget_cost(params, epochs, limited_by),
        "cut_by_safety_limit": callbacks.safety.cut,
        "seconds": seconds,
        "train_images": int(train_y.shape[0]),
        # the epochs this process trained, over its own seconds (a resumed run's earlier epochs are not in them)
        "images_per_second": callbacks.safety.epochs_run * train_data.epoch_size / seconds if seconds else 0.0,
        "backend": keras.backend.backend(),
        "devices": list(placement.devices),
        "precision": precision,
        "deterministic": params.deterministic,
    }
    write_history(catalog, history)
    columns = ["epoch", *sorted(metrics)]
    write_csv(catalog.training_log, columns, [[row.get(c, "") for c in columns] for row in history["epochs"]])
    log.info(
        "train: %d epochs in %.0fs (%s), best val_accuracy %.4f at epoch %d",
        epochs_run,
        seconds,
        history["stopped_because"],
        history["best_val_accuracy"],
        history["best_epoch"],
    )
    if history["budget"]:
        log.warning("train: %s", history["budget"]["note"])
    if callbacks.safety.cut:
        raise SafetyLimitCut(
            f"train: stopped by its safety limit train.max_seconds={params.max_seconds:g} after {epochs_run} of "
            f"{epochs} epochs; the model and history are written (marked as cut), but they are not the run "
            "train.* describes, so dvc.lock does not record them. Raise train.max_seconds (or set it to null).",
            result=dict(history),
        )
    return history


def run(params: Params) -> dict[str, Any]:
    """The stage as DVC and Prefect call it: this stage's sections only (and where its epochs are logged)."""
    with tracked_stage("train", params.mlflow) as live:
        if live is not None:
            live.log_params({"train": params.train.model_dump(mode="json")})
        return dict(train(params.train, Catalog.from_paths(params.paths), live))


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.train", __doc__.splitlines()[0], run, argv, on_stop=close_stopped_runs)


if __name__ == "__main__":
    sys.exit(main())
