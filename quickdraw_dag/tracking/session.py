"""Which pipeline run a stage belongs to, without MLflow: the flow's, one `dvc repro`'s, or its own.

The data stages (fetch, split, preprocess) import only this: they never talk to
MLflow, but under `dvc repro` the first of them marks when the pipeline run
began, so the MLflow run opened later by tune, train or evaluate starts then.
See `quickdraw_dag.tracking.live_run` for the MLflow side.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quickdraw_dag.runtime.atomic import write_json_atomic

FLOW_RUN_ENV = "QUICKDRAW_MLFLOW_RUN"  # set by the flow for the stages it runs
DVC_STAGE_ENV = "DVC_STAGE"  # set by DVC for every stage command it runs
RUN_STATE = Path(".quickdraw_run.json")  # workspace root; git- and dvc-ignored
SHELLS = {"sh", "bash", "dash", "zsh", "fish"}


@dataclass(frozen=True)
class Session:
    """Who runs this stage: the flow (its run id), `dvc repro` (its process), or nobody (the stage alone)."""

    mode: str  # "flow" | "dvc" | "alone"
    key: str | None = None


def current_session() -> Session:
    if os.environ.get(FLOW_RUN_ENV):
        return Session("flow", os.environ[FLOW_RUN_ENV])
    if os.environ.get(DVC_STAGE_ENV):
        return Session("dvc", dvc_process_key())
    return Session("alone")


def dvc_process_key() -> str:
    """The `dvc` process running this stage command (through its shell): pid and start time."""
    import psutil

    process = psutil.Process(os.getpid()).parent()
    while process is not None and process.name() in SHELLS:
        process = process.parent()
    if process is None:
        return "unknown"
    return f"{process.pid}:{process.create_time():.3f}"


def read_state(root: Path = Path(".")) -> dict[str, Any] | None:
    try:
        return json.loads((root / RUN_STATE).read_text())
    except (OSError, ValueError):
        return None


def clear_state(root: Path = Path(".")) -> None:
    (root / RUN_STATE).unlink(missing_ok=True)


def note_stage_start(stage: str, root: Path = Path(".")) -> dict[str, Any] | None:
    """Under `dvc repro`: record that this pipeline run started (at its first stage), without MLflow.

    A state left by another `dvc repro` belongs to a pipeline run that is over;
    its MLflow run, if it had one, is closed as the next tracked stage opens its own.
    """
    session = current_session()
    if session.mode != "dvc":
        return None
    state = read_state(root)
    if state is None or state.get("session") != session.key:
        state = {
            "session": session.key,
            "started": time.time(),
            "run_id": None,
            "previous_run_id": (state or {}).get("run_id"),
        }
    state.update({"stage": stage, "stage_status": "running"})
    write_json_atomic(root / RUN_STATE, state)
    return state


def note_stage_end(stage: str, root: Path = Path(".")) -> None:
    state = read_state(root)
    if state is not None and current_session().mode == "dvc" and state.get("stage") == stage:
        state["stage_status"] = "done"
        write_json_atomic(root / RUN_STATE, state)


@contextmanager
def data_stage(stage: str, root: Path = Path(".")) -> Iterator[None]:
    """A stage that does not log to MLflow still marks when the pipeline run began (under `dvc repro`)."""
    note_stage_start(stage, root)
    yield
    note_stage_end(stage, root)
