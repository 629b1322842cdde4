"""Scheduled runs: a deployment of the pipeline with the cron schedule from params.yaml.

    python -m flows.deploy serve      # serve the deployment: scheduled and on-demand runs

`schedule.cron` and `schedule.timezone` define the schedule; with
`schedule.enabled: false` the deployment exists with its schedule paused, so
runs start only on demand (`prefect deployment run 'run-pipeline/quickdraw-scheduled'`
or the UI). Each run reads params.yaml afresh, so a scheduled run picks up
the current params, and follows DVC's rule: unchanged stages are skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.schedules import Cron

from flows.pipeline import pipeline
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.schema import DEFAULT_PARAMS_PATH, Params
from quickdraw_dag.errors import ConfigError, QuickDrawDagError, excerpt
from quickdraw_dag.orchestration.dvc_state import repository_lock
from quickdraw_dag.orchestration.prefect_runs import take_over_from_abandoned_runs
from quickdraw_dag.runtime.cli import configure_logging, require_dvc_params_file
from quickdraw_dag.runtime.lock import workspace_lock

DEPLOYMENT_NAME = "quickdraw-scheduled"


@flow(name="run-pipeline", log_prints=True)
def run_pipeline(params_path: str = str(DEFAULT_PARAMS_PATH)) -> dict[str, Any]:
    """Load params.yaml (validated) and run the pipeline as a subflow, holding DVC's and the workspace's locks."""
    require_dvc_params_file(params_path)
    take_over_from_abandoned_runs()  # runs of a `make serve` that was killed
    params = load_params(params_path)
    with repository_lock(), workspace_lock():  # a scheduled run never overlaps a manual one or `dvc repro`
        return pipeline(params)


def build_deployment(params: Params, params_path: str = str(DEFAULT_PARAMS_PATH)):
    """The deployment object: entrypoint, cron schedule (active only if enabled), parameters."""
    schedule = params.schedule
    return run_pipeline.to_deployment(
        name=DEPLOYMENT_NAME,
        schedules=[Cron(schedule.cron, timezone=schedule.timezone, active=schedule.enabled)],
        parameters={"params_path": params_path},
        tags=["quickdraw"],
        description="QuickDraw DAG pipeline on the schedule from params.yaml",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve"], help="serve the scheduled deployment (blocks)")
    parser.add_argument("--params", default=str(DEFAULT_PARAMS_PATH))
    args = parser.parse_args(argv)
    configure_logging()
    try:
        require_dvc_params_file(args.params)
        params = load_params(args.params)
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    try:  # Prefect's own check of the schedule, before saying "serving" (params validation asks the same croniter)
        deployment = build_deployment(params, str(Path(args.params)))
    except ValueError as error:  # pydantic's ValidationError is one
        print(f"error: {args.params}: schedule refused by Prefect: {excerpt(str(error), 200)}", file=sys.stderr)
        return ConfigError.exit_code
    state = "active" if params.schedule.enabled else "paused (schedule.enabled: false)"
    print(f"serving {DEPLOYMENT_NAME}: cron {params.schedule.cron!r} in {params.schedule.timezone}, {state}")
    return serve_until_stopped(deployment)


def serve_until_stopped(deployment: Any) -> int:
    """`prefect.serve`, except that SIGTERM stops it: exit 143 (Ctrl-C: 130), the runner shut down.

    Prefect 3.8's runner handles SIGTERM by waiting, inside the signal handler, on the event loop the
    handler interrupted, so `make serve` hung (`coroutine 'Runner.astop' was never awaited`) until
    SIGKILL. Here the handler raises instead, and `asyncio.run` unwinds the runner as for Ctrl-C.
    """
    import asyncio
    import signal

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    class StoppableRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            raise TerminationSignal(signal.SIGTERM)

    runner = StoppableRunner(pause_on_shutdown=True)
    runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal) as stop:
        print(f"stopped serving {DEPLOYMENT_NAME} ({'SIGTERM' if isinstance(stop, TerminationSignal) else 'Ctrl-C'})")
        return 143 if isinstance(stop, TerminationSignal) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
