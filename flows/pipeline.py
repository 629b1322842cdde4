"""The QuickDraw pipeline as a Prefect flow: fetch → split → preprocess → tune → train → evaluate.

Tasks are thin: each calls the same `tasks.<stage>.run` that `dvc.yaml`
runs, and follows DVC's semantics: a stage runs only when `dvc status` says
its params or deps changed, and is then recorded with `dvc commit`. So a
second run with nothing changed skips every stage, and after any flow run
`dvc status` is clean and `dvc repro` is a no-op. The evaluate stage logs the
run to MLflow (with this flow run's id).

    python -m flows.pipeline [--params params.yaml] [--set key.path=value ...]

`--set` overrides are validated, then written into params.yaml (as
`dvc exp run -S` does), because DVC must see the values the run used.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from prefect import flow, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

import tasks.evaluate
import tasks.fetch
import tasks.preprocess
import tasks.split
import tasks.train
import tasks.tune
from quickdraw_dag.cli import build_parser, configure_logging
from quickdraw_dag.config import Params, load_params
from quickdraw_dag.dvc_state import commit_stage, persist_overrides, stage_is_current
from quickdraw_dag.errors import FetchError, OfflineError, QuickDrawDagError

log = logging.getLogger(__name__)
STAGES: dict[str, Callable[[Params], Any]] = {
    "fetch": tasks.fetch.run,
    "split": tasks.split.run,
    "preprocess": tasks.preprocess.run,
    "tune": tasks.tune.run,
    "train": tasks.train.run,
    "evaluate": tasks.evaluate.run,
}


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


def run_stage_if_changed(name: str, params: Params) -> dict[str, Any]:
    """DVC's rule: run the stage only if it changed, then commit it to dvc.lock."""
    if stage_is_current(name):
        log.info("%s: unchanged since dvc.lock, skipped", name)
        return {"stage": name, "ran": False}
    result = STAGES[name](params)
    commit_stage(name)
    return {"stage": name, "ran": True, "result": result}


def _stage_task(name: str, **options: Any):
    @task(name=name, **options)
    def stage(params: Params) -> dict[str, Any]:
        return run_stage_if_changed(name, params)

    return stage


fetch = _stage_task("fetch", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_only_network)
split = _stage_task("split")
preprocess = _stage_task("preprocess")
tune = _stage_task("tune")
train = _stage_task("train")
evaluate = _stage_task("evaluate")


@flow(name="quickdraw-pipeline", log_prints=True)
def pipeline(params: Params) -> dict[str, Any]:
    """The six stages in order; stages exchange files only, tasks pass small summaries."""
    outcomes = []
    previous = None
    for stage in (fetch, split, preprocess, tune, train, evaluate):
        previous = stage(params, wait_for=[previous] if previous is not None else None)
        outcomes.append(previous)
    ran = [o["stage"] for o in outcomes if o["ran"]]
    summary = {"ran": ran, "skipped": [o["stage"] for o in outcomes if not o["ran"]]}
    if outcomes[-1]["ran"]:
        summary["metrics"] = outcomes[-1]["result"]
    print(f"stages run: {ran or 'none'}; skipped: {summary['skipped'] or 'none'}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser("python -m flows.pipeline", __doc__.splitlines()[0]).parse_args(argv)
    configure_logging()
    try:
        params = load_params(args.params, args.overrides)  # validate before writing anything
        persist_overrides(Path(args.params), args.overrides)
        pipeline(params)
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
