"""tune: KerasTuner Hyperband over `tune.space`, on val_accuracy.

The hypermodel only samples `tune.space` (the hyperparameters' one
declaration, `SearchSpace`) and calls `build_cnn`. What the search does is
fixed by quantities that repeat: Hyperband's `tune.max_epochs`, `factor` and
`hyperband_iterations` decide the trials and their epochs, on a stratified
`tune.train_fraction` of the training split, with early stopping per trial
(`tune.patience`) and a stop for trials still at chance after their first
epoch. Every trial is seeded from `tune.seed` and its own id and sees the same
data order, so a search gives the same result whatever the order its trials
ran in, a resumed one included. `tune.max_seconds` is only a safety limit: if
it stops the search, the result is written, marked as cut, and the stage exits
with code 3 so that DVC does not record it as a reproduction.

The tuner project lives under `Catalog.tuner_dir/<fingerprint>` (config +
data), so a killed search resumes where it stopped and never repeats a
finished trial, while a changed config starts afresh. Trials train without
augmentation (a regularizer that slows short trials down). The tuning result
(`Catalog.best_hparams`) holds the best trial and every completed one, best
first; the tuning report (`Catalog.tuning_report`) records every trial with
its time and speed.
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
from quickdraw_dag.determinism import seed_everything
from quickdraw_dag.errors import QuickDrawDagError, SafetyLimitCut
from quickdraw_dag.live_run import ending_status, tracked_stage
from quickdraw_dag.model import build_cnn
from quickdraw_dag.stream import MemmapBatches, open_split, stratified_subset
from quickdraw_dag.training import ChanceStop, EpochHook, SafetyLimit, TrialTracker, fingerprint

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
    """Hyperband that hands out no new trial once the safety limit has passed (and remembers it did)."""

    def __init__(self, *args: Any, deadline: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.refused = False

    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        if self.deadline is not None and time.time() >= self.deadline and tuner_id not in self.ongoing_trials:
            self.refused = True
            return kt.engine.trial.Trial(self.get_space(), trial_id="budget", status="STOPPED")
        return super().create_trial(tuner_id)


class BudgetedHyperband(kt.Hyperband):
    """kt.Hyperband with per-trial seeds, a safety deadline and a record of each trial's speed."""

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
        tracker: TrialTracker | None = None,
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
        self.seed = seed
        self.tracker = tracker
        self.images_per_epoch = images_per_epoch
        self.timings_path = Path(self.project_dir) / TIMINGS_FILE
        self.timings: dict[str, dict[str, float]] = (
            json.loads(self.timings_path.read_text()) if self.timings_path.exists() else {}
        )

    def run_trial(self, trial: kt.engine.trial.Trial, *fit_args: Any, **fit_kwargs: Any) -> Any:
        # Each trial's initialisation, dropout and data order depend on the seed and its id only,
        # not on the trials before it: the same search in another order (or resumed) gives the same trials.
        keras.utils.set_random_seed(trial_seed(self.seed, trial.trial_id))
        values = trial.hyperparameters.values
        child = None
        if self.tracker is not None:
            child = self.tracker.begin(
                trial.trial_id,
                SearchSpace.normalize(values),
                int(values.get("tuner/epochs", 0)),
                int(values.get("tuner/initial_epoch", 0)),
            )
            fit_kwargs = {
                **fit_kwargs,
                "callbacks": [*fit_kwargs.get("callbacks", []), self.tracker.epoch_callback(child)],
            }
        started = time.monotonic()
        try:
            histories = super().run_trial(trial, *fit_args, **fit_kwargs)
        except BaseException as error:
            if child is not None:
                self.tracker.end(child, ending_status(error), {})
            raise
        seconds = time.monotonic() - started
        epochs = sum(len(h.history.get("loss", [])) for h in histories) if isinstance(histories, list) else 0
        timing = {
            "seconds": seconds,
            "epochs_run": epochs,
            "images_per_second": epochs * self.images_per_epoch / seconds if seconds > 0 and epochs else 0.0,
        }
        self.timings[trial.trial_id] = timing
        write_json_atomic(self.timings_path, self.timings)
        if child is not None:
            scores = [v for h in histories for v in h.history.get(OBJECTIVE, [])] if isinstance(histories, list) else []
            self.tracker.end(
                child,
                "FINISHED",
                {
                    "score": max(scores) if scores else None,
                    "images_per_second": timing["images_per_second"],
                    "seconds": seconds,
                },
            )
        return histories


def trial_seed(seed: int, trial_id: str) -> int:
    """A trial's own seed: the search's seed and the trial's number, kept below 2**32 (NumPy's limit)."""
    number = int(trial_id) if trial_id.isdigit() else sum(map(ord, trial_id))
    return (seed * 100_003 + number) % 2**32


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
    """Completed trials, best val_accuracy first; a tie goes to the smaller network, then the earlier trial.

    Nothing measured by the clock decides the order, so the same search ranks the same way on any machine.
    """
    scored = [r for r in records if r["score"] is not None and r["status"] == "COMPLETED"]
    if not scored:
        raise QuickDrawDagError("no tuning trial completed: raise tune.max_seconds or lower tune.max_epochs")
    ranked = sorted(scored, key=lambda r: (-r["score"], r["hyperparameters"].get("filters", 0), r["trial_id"]))
    return [
        {"trial_id": r["trial_id"], "val_accuracy": r["score"], "hyperparameters": r["hyperparameters"]} for r in ranked
    ]


def tune(params: TuneParams, catalog: Catalog, tracker: TrialTracker | None = None) -> TuningResult:
    """Run the tune stage; returns the tuning result (best trial and ranked candidates).

    With a `tracker`, every trial is a nested MLflow run logged while it trains.
    """
    started = time.time()
    seed_everything(params.seed, params.deterministic)
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
        tracker=tracker,
        directory=str(catalog.tuner_dir),
        project_name=f"hyperband-{project}",
        overwrite=False,
    )
    if tracker is not None:  # trials a killed attempt finished: in this pipeline run's record too
        for record in trial_records(tuner):
            if record["status"] == "COMPLETED":
                tracker.restored(
                    record["trial_id"], record["hyperparameters"], record["score"], record["val_accuracy_history"]
                )
    safety = SafetyLimit(params.max_seconds, started=time.monotonic() - (time.time() - started))
    chance = ChanceStop(num_classes=len(categories))
    log.info(
        "tune: Hyperband on %d of %d training images, project %s", subset.size, train_y.shape[0], tuner.project_dir
    )
    tuner.search(
        train_data,
        validation_data=val_data,
        epochs=params.max_epochs,
        callbacks=[
            EpochHook(train_data.set_epoch),  # every trial reads epoch k in the same order
            keras.callbacks.EarlyStopping(OBJECTIVE, patience=params.patience),
            chance,
            safety,
        ],
        verbose=2,
    )
    records = trial_records(tuner)
    candidates = rank_candidates(records)
    best = candidates[0]
    result: TuningResult = {**best, "candidates": candidates}  # no path or time in it: equal searches, equal bytes
    cut = tuner.oracle.refused or safety.cut
    write_tuning_result(catalog, result)
    write_tuning_report(
        catalog,
        {
            "objective": OBJECTIVE,
            "trials": records,
            "best_trial_id": best["trial_id"],
            "tuner_project": str(tuner.project_dir),
            "seconds": time.time() - started,
            "train_images_used": int(subset.size),
            "stopped_at_chance": chance.stopped_trials,
            "cut_by_safety_limit": cut,
        },
    )
    log.info(
        "tune: best trial %s, val_accuracy %.4f, %s", best["trial_id"], best["val_accuracy"], best["hyperparameters"]
    )
    if cut:
        raise SafetyLimitCut(
            f"tune: the search was cut by its safety limit tune.max_seconds={params.max_seconds:g} after "
            f"{len(records)} trial(s); the best of those is written, but it is not the search tune.* describes, "
            "so dvc.lock does not record it. Raise tune.max_seconds (or set it to null) and rerun.",
            result=result,
        )
    return result


def run(params: Params) -> TuningResult:
    """The stage as DVC and Prefect call it: this stage's sections only (and where its trials are logged)."""
    with tracked_stage("tune", params.mlflow) as live:
        if live is not None:
            live.log_params({"tune": params.tune.model_dump(mode="json")})
        return tune(params.tune, Catalog.from_paths(params.paths), TrialTracker(live) if live else None)


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.tune", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
