"""Prefect flow runs whose process is gone: recorded at start, closed as CRASHED by the next run.

A flow run killed with SIGKILL (or by the machine going away) never reports
its end, so Prefect would show it RUNNING for ever. Each of our flow runs
therefore records the process that runs it as `host:pid` in the run's
`infrastructure_pid` (the field Prefect's process worker fills in the same
form), and on start a flow marks CRASHED, with a message, its own flow's
RUNNING runs whose process on this host no longer exists, together with
their unfinished task runs. Runs from other hosts, runs of live processes
and runs whose `infrastructure_pid` is not ours to read (another worker's
job id) are left alone. `quickdraw_dag.tracking.store` does the same for
MLflow runs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from quickdraw_dag.runtime.processes import process_alive

log = logging.getLogger(__name__)
MAX_RUNS = 200  # per query: the server's default page size


@dataclass(frozen=True)
class RunProcess:
    """The process that runs a flow run, as `infrastructure_pid` holds it: `host:pid`."""

    host: str
    pid: int

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    @staticmethod
    def parse(value: str | None) -> RunProcess | None:
        """`host:pid` back into its parts; None for anything else (another worker's job id)."""
        host, _, pid = (value or "").rpartition(":")
        return RunProcess(host, int(pid)) if host and pid.isdigit() else None

    @staticmethod
    def this() -> RunProcess:
        return RunProcess(socket.gethostname(), os.getpid())


def is_abandoned(infrastructure_pid: str | None, host: str) -> bool:
    """True when the run's recorded process was on `host` and no longer exists."""
    process = RunProcess.parse(infrastructure_pid)
    return process is not None and process.host == host and not process_alive(process.pid)


def record_process(client: Any, flow_run_id: UUID) -> None:
    """Write this process into the flow run's `infrastructure_pid`, unless a worker already did."""
    run = client.read_flow_run(flow_run_id)
    if not run.infrastructure_pid:
        client.update_flow_run(flow_run_id, infrastructure_pid=str(RunProcess.this()))


def close_abandoned_runs(client: Any, flow_name: str, current_run_id: UUID) -> list[UUID]:
    """Mark CRASHED the RUNNING runs of `flow_name` whose process on this host is gone; returns their ids."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
    from prefect.states import Crashed

    host = socket.gethostname()
    running = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
        sort=FlowRunSort.START_TIME_DESC,  # the sync client sends None for both, which the server refuses
        limit=MAX_RUNS,
    )
    closed = []
    for run in running:
        if run.id == current_run_id or not is_abandoned(run.infrastructure_pid, host):
            continue
        message = (
            f"process {RunProcess.parse(run.infrastructure_pid).pid} on {host} ended without finishing this run "
            f"(killed or crashed); marked CRASHED on {time.strftime('%Y-%m-%d %H:%M:%S')} "
            f"by flow run {current_run_id} (pid {os.getpid()})"
        )
        unfinished = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))
            ),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=MAX_RUNS,
        )
        for task_run in unfinished:  # so the run's graph shows no task still running
            client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        closed.append(run.id)
        log.warning("Prefect flow run %s (%s): %s", run.name, run.id, message)
    return closed


def take_over_from_abandoned_runs() -> list[UUID]:
    """In a flow run: record this process, then close the flow's runs whose process is gone.

    Called first thing in a flow, so a killed run shows CRASHED once the next one starts.
    """
    from prefect import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    with get_client(sync_client=True) as client:
        record_process(client, context.flow_run.id)
        return close_abandoned_runs(client, context.flow.name, context.flow_run.id)
