"""tune: KerasTuner Hyperband over `tune.space`, on val_accuracy.

The hypermodel only samples `tune.space` (the hyperparameters' one
declaration, `SearchSpace`) and calls `build_cnn`. What the search does is
fixed by quantities that repeat: Hyperband's `tune.max_epochs`, `factor` and
`hyperband_iterations` decide the trials and their epochs, on a stratified
`tune.train_fraction` of the training split, with early stopping per trial
(`tune.patience`) and a stop for trials that learned nothing (training and
validation accuracy at chance after their first epoch, their second with batch
normalization). When the best trial only wins a tie (trials equal on
val_accuracy, e.g. all at chance), the log says so and the tuning report's
`ranking` records it. Every trial is seeded from `tune.seed` and its own id and sees the same
data order, so a search gives the same result whatever the order its trials
ran in, a resumed one included. `tune.max_seconds` is only a safety limit: if
it stops the search, the result is written, marked as cut, and the stage exits
with code 3 so that DVC does not record it as a reproduction.

With `tune.workers: N` above 1 the search runs in KerasTuner's distributed
mode (`quickdraw_dag.training.tune_workers`): this stage is the chief, serving the
oracle over gRPC, and N worker processes, started through the caller's mapper
(the flow's task runner, or threads), train trials side by side. Each trial
is still seeded by its id, so a trial with given values and parent trains the
same on any worker; but which values a trial id gets, and which trials
Hyperband promotes, depend on which trials finished first, so the search is
not byte-identical from run to run (with one worker it is).

The tuner project lives under `Catalog.tuner_dir/<fingerprint>` (config +
data), so a killed search resumes where it stopped and never repeats a
finished trial, while a changed config starts afresh. Trials train without
augmentation (a regularizer that slows short trials down). The tuning result
(`Catalog.best_hparams`) holds the best trial and every completed one, best
first; the tuning report (`Catalog.tuning_report`) records every trial with
its time and speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras

from quickdraw_dag.artifacts import (
    Candidate,
    Catalog,
    TuningResult,
    processed_identity,
    read_categories,
    read_scaling,
    write_tuning_report,
    write_tuning_result,
)
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.schema import MlflowParams, Params, TuneParams
from quickdraw_dag.data.stream import MemmapBatches, open_split, stratified_subset
from quickdraw_dag.errors import ConfigError, QuickDrawDagError, SafetyLimitCut
from quickdraw_dag.runtime.atomic import write_json_atomic
from quickdraw_dag.runtime.cli import build_parser, configure_logging, run_entry_point
from quickdraw_dag.runtime.fanout import Mapper, thread_map
from quickdraw_dag.tracking.live_run import LiveRun, tracked_stage
from quickdraw_dag.tracking.session import FLOW_RUN_ENV
from quickdraw_dag.tracking.store import close_stopped_runs, configure
from quickdraw_dag.training.callbacks import (
    ChanceStop,
    EpochHook,
    SafetyLimit,
    TrialTracker,
    fingerprint,
)
from quickdraw_dag.training.checkpoints import recover_search
from quickdraw_dag.training.determinism import seed_everything
from quickdraw_dag.training.stopping import stop_when_signalled
from quickdraw_dag.training.tune_workers import (
    ChiefServer,
    WorkerReport,
    WorkerSpec,
    check_worker_memory,
    chief_bind,
    parse_address,
    start_supervising,
    stop_workers,
    supervise_worker,
)
from quickdraw_dag.training.tuner import (
    JOIN_WAIT_S,
    LOST_WORKER_GRACE_S,
    OBJECTIVE,
    BudgetedHyperband,
    CnnHyperModel,
    DeadlineOracle,
    rank_candidates,
    ranking_note,
    trial_records,
)

log = logging.getLogger(__name__)


@dataclass
class Search:
    """What the chief and every worker build alike from the params and the processed data."""

    params: TuneParams
    catalog: Catalog
    train_data: MemmapBatches
    val_data: MemmapBatches
    hypermodel: CnnHyperModel
    project: str  # the tuner project's folder name: fingerprint of the config and the data
    classes: int
    split_size: int

    @property
    def images(self) -> int:
        return self.train_data.num_samples

    def tuner(self, *, role: str, deadline: float | None, tracker: TrialTracker | None = None) -> BudgetedHyperband:
        return BudgetedHyperband(
            self.hypermodel,
            deadline=deadline,
            max_epochs=self.params.max_epochs,
            factor=self.params.factor,
            hyperband_iterations=self.params.hyperband_iterations,
            seed=self.params.seed,
            images_per_epoch=self.images,
            tracker=tracker,
            role=role,
            workers=self.params.workers,
            directory=str(self.catalog.tuner_dir),
            project_name=self.project,
            overwrite=False,
        )

    def run(self, tuner: BudgetedHyperband, safety: SafetyLimit, chance: ChanceStop) -> None:
        """Trials until the oracle says the search is over (in one process, or as one worker)."""
        tuner.search(
            self.train_data,
            validation_data=self.val_data,
            epochs=self.params.max_epochs,
            shuffle=False,  # MemmapBatches shuffles itself, seeded; Keras would reorder batches with global `random`
            callbacks=[
                EpochHook(self.train_data.set_epoch),  # every trial reads epoch k in the same order
                keras.callbacks.EarlyStopping(OBJECTIVE, patience=self.params.patience),
                chance,
                safety,
                *stop_when_signalled(),
            ],
            verbose=2,
        )


def prepare_search(params: TuneParams, catalog: Catalog) -> Search:
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
    return Search(
        params,
        catalog,
        train_data,
        val_data,
        hypermodel,
        f"hyperband-{project}",
        classes=len(categories),
        split_size=int(train_y.shape[0]),
    )


@dataclass
class SearchOutcome:
    """How a search ended: trials stopped at chance, whether a limit cut it, and who ran it."""

    stopped_at_chance: int
    cut: bool
    incomplete: str | None = None  # why trials were left unrun (lost workers), when they were
    workers: list[WorkerReport] = field(default_factory=list)
    chief: str | None = None


def search_here(search: Search, tuner: BudgetedHyperband, started: float) -> SearchOutcome:
    """The whole search in this process, one trial after another."""
    safety = SafetyLimit(search.params.max_seconds, started=time.monotonic() - (time.time() - started))
    chance = ChanceStop(num_classes=search.classes)
    search.run(tuner, safety, chance)
    return SearchOutcome(chance.stopped_trials, tuner.oracle.refused or safety.cut)


def search_on_workers(
    search: Search, tuner: BudgetedHyperband, deadline: float | None, tracker: TrialTracker | None, mapper: Mapper
) -> SearchOutcome:
    """Serve the oracle as KerasTuner's chief while `tune.workers` workers, started through `mapper`, run the trials."""
    host, port = chief_bind()
    tuner.save()  # the chief's state on disk before any worker asks: a killed search resumes from it
    oracle = tuner.oracle
    oracle.join_until = time.time() + JOIN_WAIT_S
    server = ChiefServer(oracle, host, port)
    specs = [
        WorkerSpec(
            tuner_id=f"tuner{index}",
            chief=server.address,
            tune=search.params.model_dump(mode="json"),
            paths={root: str(path) for root, path in asdict(search.catalog).items()},
            project=search.project,
            deadline=deadline,
            mlflow=tracker.mlflow.model_dump(mode="json") if tracker is not None and tracker.mlflow else None,
            parent_run=tracker.live.run_id if tracker is not None else None,
        )
        for index in range(search.params.workers)
    ]
    log.info(
        "tune: chief on %s for %d workers; a worker on another machine (same code, params and shared "
        "models/ folder) joins with: python -m tasks.tune --join %s --tuner-id <a name of its own>",
        server.address,
        len(specs),
        server.address,
    )
    start_supervising()
    try:
        reports = mapper(supervise_worker, [(spec,) for spec in specs], "tune workers")
        _wait_for_joined_workers(oracle, deadline)
    except BaseException:
        stop_workers()  # Ctrl-C, SIGTERM or an error here: no worker trains on for a chief that is gone
        raise
    finally:
        server.stop()
    lost = [f"{r['tuner_id']} {r['failed']}" for r in reports if r["failed"]]
    if len(lost) == len(reports):
        raise QuickDrawDagError(f"tune: every worker failed: {'; '.join(lost)} (their output is above)")
    unrun = sorted({t.trial_id for t in oracle.ongoing_trials.values()} | set(oracle.get_state()["retry_queue"]))
    return SearchOutcome(
        stopped_at_chance=sum(r["stopped_at_chance"] for r in reports),
        cut=oracle.refused or any(r["cut"] for r in reports),
        incomplete=f"trial(s) {', '.join(unrun)} left unfinished by lost workers" if unrun else None,
        workers=reports,
        chief=server.address,
    )


def _wait_for_joined_workers(oracle: DeadlineOracle, deadline: float | None) -> None:
    """Workers that joined from elsewhere (`--join`) may still hold trials: wait for them.

    Past the deadline, a worker that has not answered for `LOST_WORKER_GRACE_S` is given up (its trial
    is reported unfinished); without a deadline the chief waits, and says on whom.
    """
    said = 0.0
    while oracle.ongoing_trials:
        now = time.time()
        if deadline is not None and now > deadline + LOST_WORKER_GRACE_S:
            log.warning("tune: giving up on workers %s past the deadline", sorted(oracle.ongoing_trials))
            return
        if now - said > 60:
            held = {tuner_id: trial.trial_id for tuner_id, trial in oracle.ongoing_trials.items()}
            log.info("tune: waiting for workers that joined from elsewhere: %s (tuner: trial)", held)
            said = now
        time.sleep(1.0)


def tune(
    params: TuneParams, catalog: Catalog, tracker: TrialTracker | None = None, mapper: Mapper | None = None
) -> TuningResult:
    """Run the tune stage; returns the tuning result (best trial and ranked candidates).

    With a `tracker`, every trial is a nested MLflow run logged while it trains. With `tune.workers`
    above 1, the trials run on that many worker processes started through `mapper` (default: threads).
    """
    started = time.time()
    point = params.space.single_point()
    if point is not None:
        return take_the_one_point(params, catalog, point, started)
    search = prepare_search(params, catalog)
    deadline = started + params.max_seconds if params.max_seconds else None
    # a torn trial file from a kill: start afresh (here only: a worker never judges the chief's files)
    recover_search(catalog.tuner_dir / search.project)
    tuner = search.tuner(role="chief" if params.workers > 1 else "tuner0", deadline=deadline, tracker=tracker)
    if tracker is not None:  # trials a killed attempt finished: in this pipeline run's record too
        for record in trial_records(tuner):
            if record["status"] == "COMPLETED":
                tracker.restored(
                    record["trial_id"], record["hyperparameters"], record["score"], record["val_accuracy_history"]
                )
    log.info(
        "tune: Hyperband on %d of %d training images, project %s", search.images, search.split_size, tuner.project_dir
    )
    if params.workers == 1:
        outcome = search_here(search, tuner, started)
    else:
        outcome = search_on_workers(search, tuner, deadline, tracker, mapper or thread_map)
    records = trial_records(tuner)
    candidates = rank_candidates(records)
    best = candidates[0]
    result: TuningResult = {**best, "candidates": candidates}  # no path or time in it: equal searches, equal bytes
    report: dict[str, Any] = {
        "objective": OBJECTIVE,
        "trials": records,
        "best_trial_id": best["trial_id"],
        "tuner_project": str(tuner.project_dir),
        "seconds": time.time() - started,
        "train_images_used": search.images,
        "stopped_at_chance": outcome.stopped_at_chance,
        "cut_by_safety_limit": outcome.cut,
        "ranking": ranking_note(candidates, search.classes),
    }
    if params.workers > 1:
        report.update({"chief": outcome.chief, "workers": outcome.workers, "incomplete": outcome.incomplete})
    write_tuning_result(catalog, result)
    write_tuning_report(catalog, report)
    log.info(
        "tune: best trial %s, val_accuracy %.4f, %s", best["trial_id"], best["val_accuracy"], best["hyperparameters"]
    )
    if report["ranking"]["decided_by"] == "tie-break":
        log.warning("tune: %s", report["ranking"]["note"])
    if outcome.stopped_at_chance:
        log.warning("tune: %d trial(s) stopped early, still at chance (learned nothing)", outcome.stopped_at_chance)
    if outcome.cut or outcome.incomplete:
        why = (
            f"cut by its safety limit tune.max_seconds={params.max_seconds:g}"
            if outcome.cut
            else f"left incomplete: {outcome.incomplete}"
        )
        raise SafetyLimitCut(
            f"tune: the search was {why} after {len(records)} trial(s); the best of those is written, but it is "
            "not the search tune.* describes, so dvc.lock does not record it. "
            + ("Raise tune.max_seconds (or set it to null) and rerun." if outcome.cut else "Rerun to finish it."),
            result=result,
        )
    return result


FIXED_TRIAL = "fixed"


def take_the_one_point(params: TuneParams, catalog: Catalog, point: dict[str, Any], started: float) -> TuningResult:
    """A space of one value per hyperparameter: write that point as the result, training no trial.

    A trial could only score the point, not choose it; train does not need its score. Nothing is
    read but the space, so this costs the stage's start-up only (the default: params.yaml says why).
    """
    candidate: Candidate = {"trial_id": FIXED_TRIAL, "val_accuracy": None, "hyperparameters": point}
    note = "tune.space has one value per hyperparameter: nothing to search, so no trial was trained"
    report: dict[str, Any] = {
        "objective": OBJECTIVE,
        "trials": [],
        "best_trial_id": FIXED_TRIAL,
        "tuner_project": None,
        "seconds": time.time() - started,
        "train_images_used": 0,
        "stopped_at_chance": 0,
        "cut_by_safety_limit": False,
        "ranking": {"decided_by": "fixed space", "tied_trials": [], "at_chance": 0, "note": note},
    }
    if params.workers > 1:
        report.update({"chief": None, "workers": [], "incomplete": None})
    result: TuningResult = {**candidate, "candidates": [candidate]}
    write_tuning_result(catalog, result)
    write_tuning_report(catalog, report)
    log.info("tune: %s; hyperparameters %s", note, point)
    return result


def work(spec: WorkerSpec) -> dict[str, Any]:
    """One KerasTuner worker of a distributed search (its process has the `KERASTUNER_*` variables set).

    Builds the same search as the chief from the same params and data (it must arrive at the chief's
    tuner project, else its params, data or code differ), logs each trial it runs as a run nested in
    the pipeline's MLflow run, and runs trials until the chief says the search is over.
    """
    params = TuneParams.model_validate_json(json.dumps(spec.tune))
    catalog = Catalog(**{root: Path(path) for root, path in spec.paths.items()})
    search = prepare_search(params, catalog)
    project_dir = catalog.tuner_dir / search.project
    if (spec.project and search.project != spec.project) or not (project_dir / "chief.json").exists():
        raise ConfigError(
            f"worker {spec.tuner_id}: no search of these tune params and processed data at {project_dir} "
            f"(the chief's is {spec.project or 'elsewhere'}): a worker needs the chief's code, params and data, "
            "and its models/ folder (a shared file system)"
        )
    tracker = None
    if spec.mlflow is not None and spec.parent_run:
        mlflow_params = MlflowParams.model_validate_json(json.dumps(spec.mlflow))
        tracker = TrialTracker(LiveRun(spec.parent_run, configure(mlflow_params)))
    tuner = search.tuner(role=spec.tuner_id, deadline=spec.deadline, tracker=tracker)
    began = spec.deadline - params.max_seconds if spec.deadline is not None and params.max_seconds else time.time()
    safety = SafetyLimit(params.max_seconds, started=time.monotonic() - (time.time() - began))
    chance = ChanceStop(num_classes=search.classes)
    search.run(tuner, safety, chance)
    return {
        "tuner_id": spec.tuner_id,
        "trials": tuner.completed,
        "stopped_at_chance": chance.stopped_trials,
        "cut": safety.cut,
    }


def run(params: Params, mapper: Mapper | None = None) -> TuningResult:
    """The stage as DVC and Prefect call it: this stage's sections only (and where its trials are logged).

    `mapper` starts the workers of a distributed search (`tune.workers` > 1): the flow passes its task
    runner's; without one they run on threads of this process, each watching its worker process.
    """
    if mapper is None:  # every worker on this machine: refuse before starting any that would not fit
        check_worker_memory(params.tune.workers)
    with tracked_stage("tune", params.mlflow) as live:
        if live is not None:
            live.log_params({"tune": params.tune.model_dump(mode="json")})
        tracker = TrialTracker(live, params.mlflow) if live else None
        return tune(params.tune, Catalog.from_paths(params.paths), tracker, mapper)


def worker_main(argv: Sequence[str]) -> int:
    """`--join HOST:PORT --tuner-id ID`: a worker of a search whose chief runs elsewhere (no workspace lock:
    it joins a run that holds it). `--worker-spec FILE`: a worker started by the tune stage itself."""
    parser = build_parser("python -m tasks.tune --join HOST:PORT --tuner-id ID", "join a distributed search")
    parser.add_argument("--join", metavar="HOST:PORT", help="the chief's address, as its log says")
    parser.add_argument("--tuner-id", help="this worker's name; restarted under the same name, it takes its trial back")
    parser.add_argument("--worker-spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.worker_spec:
            raw = json.loads(Path(args.worker_spec).read_text())
            result = Path(raw.pop("result"))
            write_json_atomic(result, work(WorkerSpec(**raw)))
            return 0
        if not args.join or not args.tuner_id:
            parser.error("--join HOST:PORT and --tuner-id ID are both needed")
        host, port = parse_address(args.join, "--join")
        params = load_params(args.params, args.overrides)
        os.environ.update(
            {"KERASTUNER_TUNER_ID": args.tuner_id, "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": str(port)}
        )
        spec = WorkerSpec(
            tuner_id=args.tuner_id,
            chief=args.join,
            tune=params.tune.model_dump(mode="json"),
            paths=params.paths.model_dump(mode="json"),
            project="",
            deadline=None,
            mlflow=params.mlflow.model_dump(mode="json") if params.mlflow.enabled else None,
            parent_run=os.environ.get(FLOW_RUN_ENV),
        )
        print(json.dumps(work(spec)))
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=")[0] in ("--join", "--worker-spec") for a in args):
        return worker_main(args)
    return run_entry_point("python -m tasks.tune", __doc__.splitlines()[0], run, argv, on_stop=close_stopped_runs)


if __name__ == "__main__":
    sys.exit(main())
