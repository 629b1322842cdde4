"""KerasTuner's Hyperband for the CNN: the hypermodel, a budgeted tuner and the ranking of its trials.

The hypermodel only samples `tune.space` (`SearchSpace`, the hyperparameters' one declaration) and
calls `build_cnn`. `BudgetedHyperband` seeds every trial from the search's seed and its own id, stops
handing out trials past the safety deadline, and records each trial's time and speed; `rank_candidates`
orders the completed trials without the clock. The tune stage (`tasks/tune.py`) drives them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from quickdraw_dag.artifacts import Candidate, Scaling
from quickdraw_dag.config.schema import SearchSpace
from quickdraw_dag.errors import QuickDrawDagError
from quickdraw_dag.runtime.atomic import write_json_atomic
from quickdraw_dag.runtime.interrupt import ending_status
from quickdraw_dag.training.callbacks import TrialTracker
from quickdraw_dag.training.model import build_cnn

log = logging.getLogger(__name__)
OBJECTIVE = "val_accuracy"
TIMING_FILE = "timing.json"  # in each trial's folder of the tuner project: its time and speed
IDLE_WAIT_S = 0.5  # a worker the oracle asked to wait (IDLE) asks again after this long
JOIN_WAIT_S = 120.0  # the chief hands out no trial until every worker has asked, or this long has passed
LOST_WORKER_GRACE_S = 120.0  # past the deadline, the chief stops waiting this long after on workers it did not start


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

    def reseed(self, seed: int) -> None:
        """The seed of the models built next (their initial weights and dropout): each trial's own."""
        self.fixed["seed"] = seed

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = {
            name: hp.Choice(name, list(choices)) if len(choices) > 1 else hp.Fixed(name, choices[0])
            for name, choices in self.space.choices().items()
        }
        return build_cnn(**SearchSpace.normalize(values), **self.fixed)


class DeadlineOracle(kt.oracles.HyperbandOracle):
    """Hyperband that hands out no new trial once the safety limit has passed (and remembers it did).

    As a chief of `workers` workers, it also hands out no trial before every worker has asked (or
    `JOIN_WAIT_S` has passed): the worker that imports TensorFlow first would otherwise take every
    trial of a small search.
    """

    def __init__(self, *args: Any, seed: int, deadline: float | None, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, seed=seed, **kwargs)
        # KerasTuner reads a seed of 0 as "none" and draws one from Python's global `random`, which any
        # thread may advance (Prefect's pings do): the trials' values would differ between runs.
        self.seed = seed
        self._seed_state = seed
        self.deadline = deadline
        self.refused = False
        self.workers = workers
        self.join_until: float | None = None  # set when the chief starts serving

    @kt.synchronized
    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        if self.deadline is not None and time.time() >= self.deadline and tuner_id not in self.ongoing_trials:
            self.refused = True
            self.tuner_ids.discard(tuner_id)  # this client is told to stop, as KerasTuner's own STOPPED does
            return kt.engine.trial.Trial(self.get_space(), trial_id="budget", status="STOPPED")
        if self.join_until is not None:
            self.tuner_ids.add(tuner_id)
            if len(self.tuner_ids) < self.workers and time.time() < self.join_until:
                return kt.engine.trial.Trial(self.get_space(), status="IDLE")
            self.join_until = None
        return super().create_trial(tuner_id)


class BudgetedHyperband(kt.Hyperband):
    """kt.Hyperband with per-trial seeds, a safety deadline and a record of each trial's speed.

    `role` names its state file in the project: `tuner0` for a search in one process (as before),
    `chief` for the chief of distributed workers, a worker's own tuner id for a worker (which
    KerasTuner connects to the chief when the `KERASTUNER_*` variables are set).
    """

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
        role: str = "tuner0",
        workers: int = 1,
        **kwargs: Any,
    ) -> None:
        oracle = DeadlineOracle(
            kt.Objective(OBJECTIVE, "max"),
            max_epochs=max_epochs,
            factor=factor,
            hyperband_iterations=hyperband_iterations,
            seed=seed,
            deadline=deadline,
            workers=workers,
            # with workers, a lost worker's trial is handed back as INVALID and must run again elsewhere
            max_retries_per_trial=1 if workers > 1 else 0,
        )
        self.role = role
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.seed = seed
        self.tracker = tracker
        self.images_per_epoch = images_per_epoch
        self.completed: list[str] = []  # the trials this process ran to the end
        self.waiting = False

    def _get_tuner_fname(self) -> str:
        return os.path.join(str(self.project_dir), f"{self.role}.json")

    def pre_create_trial(self) -> None:
        # KerasTuner asks again at once when the oracle says IDLE (waiting on other workers' trials):
        # pause between requests instead of spinning on the chief.
        if self.waiting:
            time.sleep(IDLE_WAIT_S)
        self.waiting = True

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        self.waiting = False
        super().on_trial_begin(trial)

    def run_trial(self, trial: kt.engine.trial.Trial, *fit_args: Any, **fit_kwargs: Any) -> Any:
        # Each trial's initialisation, dropout and data order depend on the seed and its id only,
        # not on the trials before it: the same search in another order (or resumed) gives the same trials.
        seed = trial_seed(self.seed, trial.trial_id)
        keras.utils.set_random_seed(seed)
        self.hypermodel.reseed(seed)
        values = trial.hyperparameters.values
        child = None
        if self.tracker is not None:
            child = self.tracker.begin(
                trial.trial_id,
                SearchSpace.normalize(values),
                int(values.get("tuner/epochs", 0)),
                int(values.get("tuner/initial_epoch", 0)),
                worker=self.role,
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
            "worker": self.role,
        }
        write_json_atomic(Path(self.get_trial_dir(trial.trial_id)) / TIMING_FILE, timing)
        self.completed.append(trial.trial_id)
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


def read_timings(project_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Each finished trial's time and speed, by trial id (written by whichever process ran it)."""
    timings = {}
    for path in Path(project_dir).glob(f"trial_*/{TIMING_FILE}"):
        try:
            timings[path.parent.name.removeprefix("trial_")] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a trial killed while writing it: its time is unknown, as for a trial never finished
    return timings


def trial_seed(seed: int, trial_id: str) -> int:
    """A trial's own seed: the search's seed and the trial's number, kept below 2**32 (NumPy's limit)."""
    number = int(trial_id) if trial_id.isdigit() else sum(map(ord, trial_id))
    return (seed * 100_003 + number) % 2**32


def trial_records(tuner: BudgetedHyperband) -> list[dict[str, Any]]:
    """Every trial: values, score, epochs, status, seconds, speed (and the worker that ran it)."""
    records = []
    timings = read_timings(tuner.project_dir)
    for trial in tuner.oracle.trials.values():
        values = SearchSpace.normalize(trial.hyperparameters.values)
        timing = timings.get(trial.trial_id, {})
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
                "worker": timing.get("worker"),
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


TIE_TOLERANCE = 1e-6  # val_accuracy is a share of whole images: closer than this is the same count


def ranking_note(candidates: list[Candidate], classes: int) -> dict[str, Any]:
    """Whether the search could rank its best trial above the rest, and why not when it could not (pure).

    `decided_by` is `score` when the best trial beats the runner-up, `tie-break` when it ties with
    others (the smaller network, then the earlier trial, won), `single trial` when only one completed.
    `at_chance` counts completed trials whose score is within 10% of chance, 1/classes.
    """
    chance = 1.0 / max(1, classes)
    best = candidates[0]["val_accuracy"]
    tied = [c["trial_id"] for c in candidates if abs(c["val_accuracy"] - best) <= TIE_TOLERANCE]
    at_chance = sum(1 for c in candidates if c["val_accuracy"] <= 1.1 * chance)
    if len(candidates) == 1:
        decided_by = "single trial"
    else:
        decided_by = "tie-break" if len(tied) > 1 else "score"
    note = {"decided_by": decided_by, "tied_trials": tied if len(tied) > 1 else [], "at_chance": at_chance}
    if decided_by == "tie-break":
        everyone = len(tied) == len(candidates)
        note["note"] = (
            f"{'all ' if everyone else ''}{len(tied)} trials tied at val_accuracy {best:.4f}"
            + (f" (chance is {chance:.4f})" if at_chance >= len(tied) else "")
            + ": the search could not rank them; trial "
            f"{candidates[0]['trial_id']} won the tie-break (smaller network, then earlier trial). "
            "Longer trials (tune.max_epochs) or more validation drawings separate them."
        )
    return note
