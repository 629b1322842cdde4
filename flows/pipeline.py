"""The QuickDraw pipeline as a Prefect flow: fetch → split → preprocess → tune → train → evaluate.

Tasks are thin: each calls the same `tasks.<stage>.run` that `dvc.yaml`
runs, so Prefect and DVC can never disagree about what a stage does.

    python -m flows.pipeline [--params params.yaml] [--set key.path=value ...]
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from prefect import flow, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

import tasks.evaluate
import tasks.fetch
import tasks.preprocess
import tasks.split
import tasks.train
import tasks.tune
from quickdraw_dag.cli import run_entry_point
from quickdraw_dag.config import Params
from quickdraw_dag.errors import FetchError, OfflineError


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


@task(name="fetch", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_only_network)
def fetch(params: Params) -> dict[str, Any]:
    return tasks.fetch.run(params)


@task(name="split")
def split(params: Params) -> dict[str, Any]:
    return tasks.split.run(params)


@task(name="preprocess")
def preprocess(params: Params) -> dict[str, Any]:
    return tasks.preprocess.run(params)


@task(name="tune")
def tune(params: Params) -> dict[str, Any]:
    return tasks.tune.run(params)


@task(name="train")
def train(params: Params) -> dict[str, Any]:
    return tasks.train.run(params)


@task(name="evaluate")
def evaluate(params: Params) -> dict[str, Any]:
    return tasks.evaluate.run(params)


@flow(name="quickdraw-pipeline", log_prints=True)
def pipeline(params: Params) -> dict[str, Any]:
    """Run the six stages in order on validated params; stages exchange files only."""
    manifest = fetch(params)
    summary = split(params, wait_for=[manifest])
    processed = preprocess(params, wait_for=[summary])
    best = tune(params, wait_for=[processed])
    history = train(params, wait_for=[best])
    metrics = evaluate(params, wait_for=[history])
    return {
        "drawings_fetched": manifest["drawings"],
        "split_totals": summary["totals"],
        "best_hyperparameters": best["hyperparameters"],
        "epochs_trained": history["epochs_run"],
        "metrics": metrics,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m flows.pipeline", __doc__.splitlines()[0], pipeline, argv)


if __name__ == "__main__":
    sys.exit(main())
