"""The QuickDraw pipeline as a Prefect flow: fetch → split → preprocess → tune → train → evaluate.

Tasks are thin: each calls the same `tasks.<stage>.run` that `dvc.yaml`
runs, and follows DVC's semantics: a stage runs only when `dvc status` says
its params or deps changed, and is then recorded with `dvc commit`. So a
second run with nothing changed skips every stage, and after any flow run
`dvc status` is clean and `dvc repro` is a no-op. The evaluate stage logs the
run to MLflow (with this flow run's id); the flow then publishes the results
as Prefect artifacts (`quickdraw_dag.orchestration.run_summary`) and, when the project has a
default DVC remote and `versioning.push` is on, pushes the outputs there
(`quickdraw_dag.orchestration.versioning`). On start it marks CRASHED its earlier runs whose
process was killed (`quickdraw_dag.orchestration.prefect_runs`).

    python -m flows.pipeline [--set key.path=value ...] [--until STAGE]
                             [--task-runner threads|processes|dask]
                             [--dask [ADDRESS]] [--workers N] [--lock-wait SECONDS]
                             [--tune-chief HOST:PORT]

With `tune.workers: N` above 1, tune runs KerasTuner's distributed mode: the
chief in the flow's process and one `tune-worker` task per worker on the
flow's task runner (give it `--workers` at least N, else the workers beyond
it start only when one ends).

`--set` overrides are validated, then written into params.yaml (as
`dvc exp run -S` does), because DVC must see the values the run used; for
the same reason the flow reads params.yaml and no other file. For its whole
run the flow holds DVC's repository lock (`dvc repro`, `dvc exp run` and
`dvc checkout` refuse meanwhile) and the workspace lock. SIGINT or SIGTERM
stops it within seconds: the stage unwinds, its MLflow run is marked KILLED,
the temporary Prefect server is stopped, and the exit code is 130 or 143.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import Completed, State
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

import tasks.fetch
import tasks.preprocess
import tasks.split
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.schema import Params
from quickdraw_dag.data.download import ensure_reachable
from quickdraw_dag.errors import FetchError, OfflineError, PushError, QuickDrawDagError, SafetyLimitCut
from quickdraw_dag.orchestration import run_summary
from quickdraw_dag.orchestration.dvc_state import (
    commit_stage,
    persist_overrides,
    repository_lock,
    stage_is_current,
)
from quickdraw_dag.orchestration.prefect_runs import take_over_from_abandoned_runs
from quickdraw_dag.orchestration.prefect_server import check_prefect_api, temporary_server
from quickdraw_dag.orchestration.versioning import describe_push, push_outputs
from quickdraw_dag.runtime.cli import (
    attach_project_loggers,
    build_parser,
    configure_logging,
    exit_code_of,
    require_dvc_params_file,
)
from quickdraw_dag.runtime.fanout import Mapper
from quickdraw_dag.runtime.interrupt import ending_status
from quickdraw_dag.runtime.lock import workspace_lock
from quickdraw_dag.tracking.live_run import FlowRun
from quickdraw_dag.tracking.store import check_store, close_stopped_runs
from quickdraw_dag.training.tune_workers import CHIEF_ENV, check_worker_memory, parse_address, supervise_worker

log = logging.getLogger("flows.pipeline")  # also when run as __main__: a project logger the flow shows
# Stage modules by name, imported when the stage runs: Dask workers unpickle
# this module's tasks and should not pay for importing TensorFlow. (The paint
# flow is a pipeline of its own: paint/dvc.yaml, flows/paint.py.)
STAGES: tuple[str, ...] = ("fetch", "split", "preprocess", "tune", "train", "evaluate")


def stage_function(name: str) -> Callable[..., Any]:
    """`tasks.<name>.run`, the function `dvc.yaml` runs too."""
    return importlib.import_module(f"tasks.{name}").run


def _retry_only_network(task: Any, task_run: TaskRun, state: State) -> bool:
    """Bad params or bad data will not get better on a retry; the network may."""
    try:
        state.result()
    except OfflineError:
        return False
    except FetchError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is final
        return False
    return False


# The MLflow run of the flow run in progress (one flow run per process at a time: the workspace lock).
_FLOW_RUN: list[FlowRun] = []


def run_stage_if_changed(name: str, params: Params, mapper: Mapper | None = None) -> dict[str, Any]:
    """DVC's rule: run the stage only if it changed, then commit it to dvc.lock."""
    if stage_is_current(name):
        log.info("%s: unchanged since dvc.lock, skipped", name)
        return {"stage": name, "ran": False}
    for flow_run in _FLOW_RUN:
        flow_run.ensure_open()  # the pipeline run's MLflow run opens with its first stage that runs
    run = stage_function(name)
    try:
        result = run(params, mapper) if mapper is not None else run(params)
    except SafetyLimitCut as cut:
        # The outputs are written and the pipeline goes on with them, but they are not what the
        # params describe: dvc.lock must not call them reproduced, so the stage is not committed.
        log.warning("%s: %s", name, cut)
        return {"stage": name, "ran": True, "cut": True, "result": cut.result}
    commit_stage(name)
    return {"stage": name, "ran": True, "result": result}


# One task per category job of the fan-out stages. DVC decides whether a
# stage runs, so Prefect's own input caching is off.
_JOB = {"cache_policy": NO_CACHE}
CATEGORY_TASKS: dict[Callable[..., Any], Task] = {
    tasks.fetch.download_category: task(
        tasks.fetch.download_category,
        name="download-category",
        task_run_name="fetch-download-{category}",
        retries=2,
        retry_delay_seconds=[5, 30],
        retry_condition_fn=_retry_only_network,
        **_JOB,
    ),
    tasks.fetch.locate_local: task(
        tasks.fetch.locate_local, name="validate-local-file", task_run_name="fetch-validate-{category}", **_JOB
    ),
    tasks.fetch.copy_local: task(
        tasks.fetch.copy_local, name="copy-local-file", task_run_name="fetch-copy-{item.category}", **_JOB
    ),
    tasks.fetch.make_synthetic: task(
        tasks.fetch.make_synthetic,
        name="synthesize-category",
        task_run_name="fetch-synthesize-{category}",
        **_JOB,
    ),
    tasks.split.split_category: task(
        tasks.split.split_category, name="split-category", task_run_name="split-{category}", **_JOB
    ),
    tasks.preprocess.preprocess_category: task(
        tasks.preprocess.preprocess_category, name="preprocess-category", task_run_name="preprocess-{category}", **_JOB
    ),
    # tune.workers > 1: one task per KerasTuner worker, each watching its worker process (restarts are its own).
    supervise_worker: task(supervise_worker, name="tune-worker", task_run_name="tune-worker-{spec.tuner_id}", **_JOB),
}
FANNED_OUT = ("fetch", "split", "preprocess")


# Prefect's graph draws an edge from each task run to the task runs it waited for: the flow passes the
# previous step's states as `wait_for`, per category where both steps are per category (split-bear waits
# for fetch-copy-bear), else all of them. Keyed by category; None holds a whole-stage task's state.
_UPSTREAM: dict[str | None, list[Any]] = {}


def category_of(job: tuple[Any, ...]) -> str | None:
    """The category a fan-out job works on (its first argument, or that argument's `category`)."""
    first = job[0] if job else None
    return first if isinstance(first, str) else getattr(first, "category", None)


def upstream(key: str | None = None) -> list[Any]:
    """What a task should wait for: the same category's last task run, else every last task run."""
    return _UPSTREAM.get(key) or [state for states in _UPSTREAM.values() for state in states]


def prefect_map(function: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], desc: str) -> list[Any]:
    """A `Mapper` that runs each category job as a task on the flow's task runner, after its upstream."""
    if not jobs:
        return []
    futures = [CATEGORY_TASKS[function].submit(*job, wait_for=upstream(category_of(job))) for job in jobs]
    results = [future.result() for future in futures]
    _UPSTREAM.clear()
    _UPSTREAM.update({category_of(job): [future] for job, future in zip(jobs, futures)})
    return results


def skipped_state(outcome: dict[str, Any]) -> State:
    """A stage DVC found unchanged: Completed, named Skipped in Prefect's UI, with its outcome as result."""
    return Completed(name="Skipped", message=f"{outcome['stage']}: unchanged since dvc.lock", data=outcome)


@task(name="skipped-stage", task_run_name="{name}", cache_policy=NO_CACHE)
def skipped_stage(name: str) -> State:
    """A fan-out stage DVC skipped has no category tasks: this one shows it in the graph, as Skipped."""
    return skipped_state({"stage": name, "ran": False})


def run_stage_task(name: str, params: Params, mapper: Mapper | None = None) -> dict[str, Any]:
    """Run a stage as the graph shows it: after the previous stage, Skipped when DVC skips it."""
    if mapper is not None:  # fan-out: its category tasks are the graph's bars
        outcome = run_stage_if_changed(name, params, mapper)
        if not outcome["ran"]:
            _UPSTREAM.clear()
            _UPSTREAM[None] = [skipped_stage(name, return_state=True, wait_for=upstream())]
        return outcome
    state = STAGE_TASKS[name](params, return_state=True, wait_for=upstream())
    outcome = state.result()  # raises what the stage raised
    _UPSTREAM.clear()
    _UPSTREAM[None] = [state]
    return outcome


def _stage_task(name: str) -> Task:
    """A whole-stage task; called directly, so it runs in the flow's process, not on the runner."""

    def stage(params: Params) -> dict[str, Any] | State:
        outcome = run_stage_if_changed(name, params)
        return outcome if outcome["ran"] else skipped_state(outcome)

    return task(stage, name=name, task_run_name=name, cache_policy=NO_CACHE)


STAGE_TASKS = {name: _stage_task(name) for name in STAGES if name not in FANNED_OUT}


def _retry_only_transfers(task: Any, task_run: TaskRun, state: State) -> bool:
    """A push that failed in transfer may get through next time; a bad DVC config will not."""
    try:
        state.result()
    except PushError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is final
        return False
    return False


# The only step after the stages that talks to the network: retried like downloads.
PUSH_TASK = task(
    push_outputs,
    name="dvc-push",
    task_run_name="dvc-push",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=_retry_only_transfers,
    cache_policy=NO_CACHE,
)


@flow(name="quickdraw-pipeline", log_prints=True)
def pipeline(params: Params, until: str = STAGES[-1]) -> dict[str, Any]:
    """The stages in order, up to `until`; stages exchange files only, tasks pass small summaries.

    fetch, split and preprocess fan out one mapped task per category; their
    final step (manifest, split summary, scaling) runs here, in order. A run
    that reaches evaluate publishes the results as the run's artifacts.
    """
    take_over_from_abandoned_runs()
    names = STAGES[: STAGES.index(until) + 1]
    outcomes = []
    _FLOW_RUN[:] = [flow_mlflow_run(params)]
    _UPSTREAM.clear()
    try:
        for name in names:
            fanned = name in FANNED_OUT or (name == "tune" and params.tune.workers > 1)
            outcomes.append(run_stage_task(name, params, prefect_map if fanned else None))
    except BaseException as error:
        _FLOW_RUN.pop().close(ending_status(error))
        raise
    _FLOW_RUN.pop().close("FINISHED")
    ran = [o["stage"] for o in outcomes if o["ran"]]
    summary = {"ran": ran, "skipped": [o["stage"] for o in outcomes if not o["ran"]]}
    evaluated = [o for o in outcomes if o["stage"] == "evaluate"]
    if evaluated:
        if evaluated[0]["ran"]:
            summary["metrics"] = evaluated[0]["result"]
        summary["console"] = run_summary.publish(params, summary.get("metrics"))["console"]
    print(f"stages run: {ran or 'none'}; skipped: {summary['skipped'] or 'none'}")
    if params.versioning.push:
        summary["push"] = PUSH_TASK(wait_for=upstream())
        print(describe_push(summary["push"]))
    return summary


def flow_mlflow_run(params: Params) -> FlowRun:
    """This flow run's MLflow run (opened lazily, with every params section of the pipeline and its ids)."""
    from quickdraw_dag.artifacts import Catalog, git_tracked_outputs
    from quickdraw_dag.tracking.lineage import demo_tags, git_state, not_code, orchestrator_ids
    from quickdraw_dag.tracking.record import PipelineRun, run_name

    flow_run_id, deployment = orchestrator_ids()
    sections = PipelineRun.of(params)
    tags = {
        "orchestrator": "prefect",
        "prefect_flow_run_id": flow_run_id or "none",
        "prefect_deployment": deployment or "none",
        "data_source": params.data.source,
        **demo_tags(),
        **git_state(not_code=not_code(git_tracked_outputs(Catalog.from_paths(params.paths)))),
    }
    return FlowRun(params.mlflow, run_name(params.data), tags, sections.as_dict())


def task_runner(kind: str, workers: int, dask_address: str | None = None) -> TaskRunner:
    """`threads` (Prefect's default), `processes`, or `dask` (a local cluster, or `dask_address`)."""
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    logging.getLogger("distributed").setLevel(logging.WARNING)  # cluster start/stop chatter
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    # One single-threaded worker process per core: rasterizing holds the GIL.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
    )


def print_results(outcome: dict[str, Any]) -> None:
    """The run's last lines: what it produced (`run_summary.console_summary`), after Prefect's own."""
    if outcome.get("console"):
        print(outcome["console"], flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m flows.pipeline", __doc__.splitlines()[0])
    parser.add_argument("--until", choices=STAGES, default=STAGES[-1], help="last stage to run")
    parser.add_argument(
        "--task-runner",
        choices=["threads", "processes", "dask"],
        default="threads",
        help="where per-category tasks run (default: threads)",
    )
    parser.add_argument(
        "--dask",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on Dask: a local cluster, or the scheduler at ADDRESS (tcp://host:8786)",
    )
    parser.add_argument("--workers", type=int, default=2, help="threads, processes or local Dask workers")
    parser.add_argument(
        "--tune-chief",
        metavar="HOST:PORT",
        help="with tune.workers > 1: where the tuning chief listens (e.g. 10.0.0.5:8470, this host on the cluster "
        "network, so that workers on other machines join with python -m tasks.tune --join HOST:PORT --tuner-id "
        "NAME); default 127.0.0.1, a free port",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers: must be at least 1")
    if args.tune_chief:
        try:
            parse_address(args.tune_chief, "--tune-chief")
        except QuickDrawDagError as error:
            parser.error(str(error))
        os.environ[CHIEF_ENV] = args.tune_chief  # read by the tune stage, in this process
    runner_kind = "dask" if args.dask is not None else args.task_runner
    configure_logging()
    loaded: list[Params] = []

    def work() -> None:
        require_dvc_params_file(args.params)
        params = load_params(args.params, args.overrides)  # validate before writing anything
        check_prefect_api()  # services answer, or one line naming them, before anything is written
        if params.mlflow.enabled:
            check_store(params.mlflow)
        if runner_kind != "dask":  # tuning workers on this machine
            check_worker_memory(params.tune.workers)
        loaded.append(params)
        # DVC's lock first: while `dvc repro` runs, refuse without taking the workspace lock from its stages.
        with repository_lock(wait_s=args.lock_wait):
            if params.data.source_kind == "quickdraw" and not stage_is_current("fetch"):
                ensure_reachable(params.fetch.download.base_url)  # offline: say so once, before writing anything
            with workspace_lock(wait_s=args.lock_wait):
                persist_overrides(Path(args.params), args.overrides)
                runner = task_runner(runner_kind, args.workers, args.dask or None)
                # One temporary server for the flow and its workers, stopped however the run ends.
                with temporary_server():
                    attach_project_loggers()  # the stages' INFO lines, in the console and Prefect's UI
                    outcome = pipeline.with_options(task_runner=runner)(params, until=args.until)
        print_results(outcome)

    return exit_code_of(work, lambda why, since: close_stopped_runs(loaded[0], why, since) if loaded else [])


if __name__ == "__main__":
    sys.exit(main())
