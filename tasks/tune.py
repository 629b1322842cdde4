"""tune: KerasTuner Hyperband over `tune.space`, on val_accuracy, within a budget.

The hypermodel only samples `tune.space` (the hyperparameters' one
declaration, `SearchSpace`) and calls `build_cnn`. Budget controls:
`tune.max_epochs`, `factor`, `hyperband_iterations`, `train_fraction` (a
stratified share of the training split), early stopping per trial
(`tune.patience`) and a wall-clock limit (`tune.max_seconds`): no trial starts
after it, and a running trial stops at its next epoch end. The tuner project
lives under `Catalog.tuner_dir/<fingerprint>` (config + data), so a killed search
resumes where it stopped and never repeats a finished trial, while a changed
config starts afresh.

Trials train without augmentation (it is a training-time regularizer and
slows the short trials down). Every completed trial's measured speed is
kept: the tuning result (`Catalog.best_hparams`) holds the best trial and the
ranked candidates, so `train` can take the best one that fits its own time
budget. The tuning report (`Catalog.tuning_report`) records every trial.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from quickdraw_dag.artifacts import (
    Candidate,
    Catalog,
    Scaling,
    TuningResult,
    processed_identity,
    read_categories,
    read_scaling,
    write_tuning_report,
    write_tuning_result,
)
from quickdraw_dag.atomic import write_json_atomic
from quickdraw_dag.checkpoints import recover_search
from quickdraw_dag.cli import run_entry_point
from quickdraw_dag.config import Params, SearchSpace, TuneParams
from quickdraw_dag.errors import QuickDrawDagError
from quickdraw_dag.model import build_cnn
from quickdraw_dag.stream import MemmapBatches, open_split, stratified_subset
from quickdraw_dag.training import TimeBudget, fingerprint

log = logging.getLogger(__name__)
OBJECTIVE = "val_accuracy"
TIMINGS_FILE = "timings.json"  # inside the tuner project: each finished trial's speed


class CnnHyperModel(kt.HyperModel):
    """Samples each hyperparameter from the space; fixed values are hp.Fixed."""

    def __init__(self, space: SearchSpace, *, image_size: int, num_classes: int, scaling: Scaling, seed: int) -> None:
        super().__init__(name="quickdraw_cnn")
        self.space = space
        # Trials train without augmentation: a regularizer that slows short trials down.
        self.fixed = {
            "image_size": image_size,
            "num_classes": num_classes,
            "scaling": scaling,
            "augment": None,
            "seed": seed,
        }

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = {
            name: hp.Choice(name, list(choices)) if len(choices) > 1 else hp.Fixed(name, choices[0])
            for name, choices in self.space.choices().items()
        }
        return build_cnn(**SearchSpace.normalize(values), **self.fixed)


class _DeadlineOracle(kt.oracles.HyperbandOracle):
    """Hyperband that hands out no new trial once the wall-clock budget is spent."""

    def __init__(self, *args: Any, deadline: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        if self.deadline is not None and time.time() >= self.deadline and tuner_id not in self.ongoing_trials:
            return kt.engine.trial.Trial(self.get_space(), trial_id="budget", status="STOPPED")
        return super().create_trial(tuner_id)


class BudgetedHyperband(kt.Hyperband):
    """kt.Hyperband with a deadline and a record of each trial's speed."""

    def __init__(
        self,
        hypermodel: kt.HyperModel,
        *,
        deadline: float | None,
        max_epochs: int,
        factor: int,
        hyperband_iterations: int,
        seed: int,
        images_per_epoch: int,
        **kwargs: Any,
    ) -> None:
        oracle = _DeadlineOracle(
            kt.Objective(OBJECTIVE, "max"),
            max_epochs=max_epochs,
            factor=factor,
            hyperband_iterations=hyperband_iterations,
            seed=seed,
            deadline=deadline,
        )
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.images_per_epoch = images_per_epoch
        self.timings_path = Path(self.project_dir) / TIMINGS_FILE
        self.timings: dict[str, dict[str, float]] = (
            json.loads(self.timings_path.read_text()) if self.timings_path.exists() else {}
        )

    def run_trial(self, trial: kt.engine.trial.Trial, *fit_args: Any, **fit_kwargs: Any) -> Any:
        started = time.monotonic()
        histories = super().run_trial(trial, *fit_args, **fit_kwargs)
        seconds = time.monotonic() - started
        epochs = sum(len(h.history.get("loss", [])) for h in histories) if isinstance(histories, list) else 0
        self.timings[trial.trial_id] = {
            "seconds": seconds,
            "epochs_run": epochs,
            "images_per_second": epochs * self.images_per_epoch / seconds if seconds > 0 and epochs else 0.0,
        }
        write_json_atomic(self.timings_path, self.timings)
        return histories


def trial_records(tuner: BudgetedHyperband) -> list[dict[str, Any]]:
    """Every trial: values, score, epochs, status, seconds, speed."""
    records = []
    for trial in tuner.oracle.trials.values():
        values = SearchSpace.normalize(trial.hyperparameters.values)
        timing = tuner.timings.get(trial.trial_id, {})
        speed = timing.get("images_per_second", 0.0)
        history = trial.metrics.get_history(OBJECTIVE) if trial.metrics.exists(OBJECTIVE) else []
        records.append(
            {
                "trial_id": trial.trial_id,
                "status": str(trial.status),
                "score": trial.score,
                "epochs": int(trial.hyperparameters.values.get("tuner/epochs", 0)),
                "initial_epoch": int(trial.hyperparameters.values.get("tuner/initial_epoch", 0)),
                "hyperparameters": values,
                "val_accuracy_history": [
                    float(obs.value[0]) if isinstance(obs.value, list) else float(obs.value) for obs in history
                ],
                "seconds": timing.get("seconds"),
                "images_per_second": speed or None,
            }
        )
    return sorted(records, key=lambda r: r["trial_id"])


def rank_candidates(records: list[dict[str, Any]]) -> list[Candidate]:
    """Completed trials, best val_accuracy first (the faster one wins a tie)."""
    scored = [r for r in records if r["score"] is not None and r["status"] == "COMPLETED"]
    if not scored:
        raise QuickDrawDagError("no tuning trial completed: raise tune.max_seconds or lower tune.max_epochs")
    ranked = sorted(scored, key=lambda r: (-r["score"], -(r["images_per_second"] or 0.0), r["trial_id"]))
    return [
        {
            "trial_id": r["trial_id"],
            "val_accuracy": r["score"],
            "images_per_second": r["images_per_second"],
            "hyperparameters": r["hyperparameters"],
        }
        for r in ranked
    ]


def tune(params: TuneParams, catalog: Catalog) -> TuningResult:
    """Run the tune stage; returns the tuning result (best trial and ranked candidates)."""
    started = time.time()
    keras.utils.set_random_seed(params.seed)
    categories = read_categories(catalog)
    scaling = read_scaling(catalog)
    train_x, train_y = open_split(catalog, "train")
    val_x, val_y = open_split(catalog, "val")
    subset = stratified_subset(train_y, params.train_fraction, params.seed)
    train_data = MemmapBatches(
        train_x, train_y, batch_size=params.batch_size, shuffle=True, seed=params.seed, indices=subset
    )
    val_data = MemmapBatches(val_x, val_y, batch_size=params.batch_size, shuffle=False)
    hypermodel = CnnHyperModel(
        params.space, image_size=int(train_x.shape[1]), num_classes=len(categories), scaling=scaling, seed=params.seed
    )
    project = fingerprint(params.model_dump(mode="json"), processed_identity(catalog))
    recover_search(catalog.tuner_dir / f"hyperband-{project}")  # a torn trial file from a kill: start afresh
    tuner = BudgetedHyperband(
        hypermodel,
        deadline=started + params.max_seconds if params.max_seconds else None,
        max_epochs=params.max_epochs,
        factor=params.factor,
        hyperband_iterations=params.hyperband_iterations,
        seed=params.seed,
        images_per_epoch=int(subset.size),
        directory=str(catalog.tuner_dir),
        project_name=f"hyperband-{project}",
        overwrite=False,
    )
    budget = TimeBudget(params.max_seconds, started=time.monotonic() - (time.time() - started))
    log.info(
        "tune: Hyperband on %d of %d training images, project %s", subset.size, train_y.shape[0], tuner.project_dir
    )
    tuner.search(
        train_data,
        validation_data=val_data,
        epochs=params.max_epochs,
        callbacks=[keras.callbacks.EarlyStopping(OBJECTIVE, patience=params.patience), budget],
        verbose=2,
    )
    records = trial_records(tuner)
    candidates = rank_candidates(records)
    best = candidates[0]
    result: TuningResult = {**best, "tuner_project": str(tuner.project_dir), "candidates": candidates}
    write_tuning_result(catalog, result)
    write_tuning_report(
        catalog,
        {
            "objective": OBJECTIVE,
            "trials": records,
            "best_trial_id": best["trial_id"],
            "seconds": time.time() - started,
            "train_images_used": int(subset.size),
        },
    )
    log.info(
        "tune: best trial %s, val_accuracy %.4f, %s", best["trial_id"], best["val_accuracy"], best["hyperparameters"]
    )
    return result


def run(params: Params) -> TuningResult:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    return tune(params.tune, Catalog.from_paths(params.paths))


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.tune", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
