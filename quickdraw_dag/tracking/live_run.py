"""The MLflow parent run of a pipeline run, live: opened by its first stage, closed after evaluate.

A pipeline run is the flow, one `dvc repro`, or one stage command run on its
own. Its parent run is logged to while the stages work (a user watches tuning
and training in the UI), and ends with the real duration and status: FINISHED
after evaluate, FAILED when a stage fails, KILLED when a stage is interrupted
(a SIGKILLed one is closed as KILLED by the next run that finds it).

How stages find the run, by who runs them:

- the flow opens it before the first stage that runs and hands its id to the
  stages through `QUICKDRAW_MLFLOW_RUN`;
- under `dvc repro` (DVC sets `DVC_STAGE`), stages run in separate processes;
  the first one records the pipeline run's start in the ignored workspace file
  `.quickdraw_run.json`, keyed by the `dvc` process, and the first stage that
  logs to MLflow creates the run with that start time; evaluate closes it and
  removes the file. The data stages never contact MLflow (they do not read
  `mlflow.*`, so changing where runs are logged does not rerun them);
- a stage command run on its own gets a run of its own.

Everything here uses `MlflowClient` with explicit run ids: the fluent API
would end a run at process exit, and a parent run outlives its stages.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.errors import SafetyLimitCut
from quickdraw_dag.runtime.atomic import write_json_atomic
from quickdraw_dag.runtime.interrupt import ending_status, on_forced_exit
from quickdraw_dag.tracking.session import (
    FLOW_RUN_ENV,
    RUN_STATE,
    clear_state,
    current_session,
    note_stage_end,
    note_stage_start,
)
from quickdraw_dag.tracking.store import configure, flatten, process_tags

log = logging.getLogger(__name__)
SYSTEM_METRICS_INTERVAL_S = 5.0  # CPU, memory, disk and network, sampled this often while a stage runs


class LiveRun:
    """One MLflow run, logged to by id: metrics as they happen, child runs, status."""

    def __init__(self, run_id: str, experiment_id: str) -> None:
        import mlflow

        self.run_id = run_id
        self.experiment_id = experiment_id
        self.client = mlflow.MlflowClient()

    @classmethod
    def create(
        cls,
        params: MlflowParams,
        *,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        start_time: float | None = None,
    ) -> LiveRun:
        experiment_id = configure(params)
        import mlflow

        client = mlflow.MlflowClient()
        run = client.create_run(
            experiment_id,
            run_name=run_name,
            start_time=int(1000 * (start_time or time.time())),
            tags={**(tags or {}), **process_tags()},
        )
        log.info("mlflow: run %s opened in experiment %s", run.info.run_id, params.experiment)
        return cls(run.info.run_id, experiment_id)

    @classmethod
    def attach(cls, params: MlflowParams, run_id: str) -> LiveRun:
        experiment_id = configure(params)
        live = cls(run_id, experiment_id)
        live.set_tags(process_tags())  # this process writes it now: lets a later run tell a killed writer
        return live

    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params not logged yet (MLflow refuses a second, different value for a key)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in logged]
        for start in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0, run_id: str | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(run_id or self.run_id, metrics=batch)

    def start_child(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"mlflow.parentRunId": self.run_id, **tags, **process_tags()}
        )
        from mlflow.entities import Param

        if params:
            self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def end(self, status: str = "FINISHED", run_id: str | None = None) -> None:
        """Terminate the run (once: a run already ended keeps its status)."""
        target = run_id or self.run_id
        if self.client.get_run(target).info.status == "RUNNING":
            self.client.set_terminated(target, status=status)


def _start_system_metrics(run_id: str) -> Any:
    """MLflow's CPU, memory, disk and network sampling for the run, continuing its steps."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, resume_logging=True)
        monitor.start()
        return monitor
    except Exception as error:  # noqa: BLE001 - system metrics are a nicety; never fail a stage for them
        log.warning("mlflow: no system metrics (%s)", error)
        return None


def _stop_system_metrics(monitor: Any) -> None:
    if monitor is not None:
        try:
            monitor.finish()
        except Exception as error:  # noqa: BLE001 - as above
            log.warning("mlflow: stopping system metrics failed (%s)", error)


@contextmanager
def tracked_stage(
    stage: str, params: MlflowParams, *, closes: bool = False, root: Path = Path(".")
) -> Iterator[LiveRun | None]:
    """The pipeline run's MLflow run for this stage: attached, or opened here; closed if `closes` or alone.

    On failure the run ends FAILED (KILLED when interrupted), whoever opened it.
    """
    if not params.enabled:
        yield None
        return
    session = current_session()
    monitor = None
    if session.mode == "flow":
        live = LiveRun.attach(params, session.key or "")
    elif session.mode == "dvc":
        state = note_stage_start(stage, root) or {}
        if state.get("run_id"):
            live = LiveRun.attach(params, state["run_id"])
        else:
            live = LiveRun.create(
                params,
                run_name=f"dvc-repro-{time.strftime('%Y%m%d-%H%M%S')}",
                tags={"orchestrator": "dvc"},
                start_time=state.get("started"),
            )
            _close_previous(state.get("previous_run_id"))
            state.update({"run_id": live.run_id})
            write_json_atomic(root / RUN_STATE, state)
    else:
        live = LiveRun.create(
            params,
            run_name=f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={"orchestrator": "cli", "stage_alone": stage},
        )
    # A process that must exit at once (a second signal, or stopping took too long) still closes its run.
    forget = on_forced_exit(lambda: live.end("KILLED"))
    try:  # from here on, however the stage ends (a signal may come at any line), the run is closed
        monitor = _start_system_metrics(live.run_id)
        live.set_tags({"stage": stage})
        yield live
    except SafetyLimitCut:
        # Outputs were written: not a failure. The flow goes on with them; a `dvc repro` or a lone
        # stage stops here, so its pipeline run is over.
        live.set_tags({f"safety_cut.{stage}": "true"})
        if session.mode != "flow":
            live.end("FINISHED")
            clear_state(root) if session.mode == "dvc" else None
        raise
    except BaseException as error:
        live.end(ending_status(error))
        if session.mode == "dvc":
            clear_state(root)
        raise
    finally:
        forget()
        _stop_system_metrics(monitor)
    if closes or session.mode == "alone":
        live.end("FINISHED")
        if session.mode == "dvc":
            clear_state(root)
    elif session.mode == "dvc":
        note_stage_end(stage, root)


def _close_previous(run_id: str | None) -> None:
    """A run left by an earlier `dvc repro` that ended without evaluate (`dvc repro train`, say)."""
    if not run_id:
        return
    import mlflow

    client = mlflow.MlflowClient()
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "ended_note", "its dvc repro ended before evaluate")
            client.set_terminated(run_id, status="FINISHED")
    except Exception as error:  # noqa: BLE001 - the store may have been replaced meanwhile
        log.warning("mlflow: could not close run %s (%s)", run_id, error)


class FlowRun:
    """The flow's pipeline run: opened before its first stage that runs, closed when the flow ends.

    The stages the flow runs in its own process find it through `QUICKDRAW_MLFLOW_RUN`. System
    metrics are sampled while the tracked stages run (their `tracked_stage`), not during the data
    stages: a sampling thread alive while Prefect hands per-category tasks to Dask gets pulled into
    what Dask must pickle, and cannot be.
    """

    def __init__(self, params: MlflowParams, run_name: str, tags: dict[str, str], logged_params: dict[str, Any]):
        self.params = params
        self.run_name = run_name
        self.tags = tags
        self.logged_params = logged_params
        self.live: LiveRun | None = None

    def ensure_open(self) -> None:
        if self.live is not None or not self.params.enabled:
            return
        self.live = LiveRun.create(self.params, run_name=self.run_name, tags=self.tags)
        self.live.log_params(self.logged_params)
        os.environ[FLOW_RUN_ENV] = self.live.run_id

    def close(self, status: str) -> None:
        if self.live is None:
            return
        self.live.end(status)  # after evaluate the run is FINISHED already; this changes nothing then
        os.environ.pop(FLOW_RUN_ENV, None)
        self.live = None
