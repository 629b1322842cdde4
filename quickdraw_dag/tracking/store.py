"""The MLflow store: where runs go, who writes them, and closing the runs of killed writers.

Default store: a SQLite file (`mlflow.db`) and an artifact folder
(`mlartifacts/`) in the project, nothing to start; `MLFLOW_TRACKING_URI` (or
`mlflow.tracking_uri`) points elsewhere. Shared by the pipeline's tracking
and the paint flow.

A fresh SQLite store is created (MLflow runs its schema migrations) under an
`flock` on `<database>.lock`: two first runs at once would otherwise both
migrate the same new file, and one fails ("duplicate column name").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quickdraw_dag.config.redact import redact
from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.errors import ConfigError
from quickdraw_dag.runtime.lock import file_lock
from quickdraw_dag.runtime.processes import process_alive

log = logging.getLogger(__name__)
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def tracking_uri(params: MlflowParams) -> str:
    """`MLFLOW_TRACKING_URI`, else `mlflow.tracking_uri`, else the project's SQLite file.

    A relative SQLite path is relative to the DVC project (`DVC_ROOT`, which DVC sets for every stage
    command): `dvc exp run --queue` runs stages in a temporary copy under `.dvc/tmp/exps/`, and their runs
    belong in the project's store, not in the copy's (DVC sets `DVC_ROOT` to the project there too).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri or DEFAULT_TRACKING_URI
    root = os.environ.get("DVC_ROOT")
    path = uri.removeprefix("sqlite:///")
    if root and uri.startswith("sqlite:///") and not Path(path).is_absolute():
        return f"sqlite:///{Path(root) / path}"
    return uri


# The runs list as `make ui` opens it: MLflow's UI shows no metric column until a user picks some (from
# 130-odd), unless the link names a view the experiment holds (its Share feature: the `viewStateShareKey`
# in the link, the view in the tag `mlflow.sharedViewState.<key>`). The UI offers to keep it as the user's own.
RUNS_VIEW_KEY = "quickdraw-runs"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"
RUNS_VIEW = json.dumps(
    {
        "selectedColumns": [
            *(f"attributes.`{name}`" for name in ("Source", "Models", "Dataset")),
            *(f"metrics.`{name}`" for name in ("test_accuracy", "test_map_at_3", "test_macro_f1", "train_seconds")),
            *(f"params.`{name}`" for name in ("train.epochs", "train.seed", "data.source")),
        ],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    },
    sort_keys=True,
)


REACH_TIMEOUT_S = 5.0


def check_store(params: MlflowParams) -> str:
    """The tracking URI, once it answers: a ConfigError naming it when it cannot be used (seconds, not minutes).

    MLflow's client retries a dead server for minutes and then prints a
    traceback; a corrupt or read-only SQLite file fails deep inside a run.
    Checked before anything is written: an http(s) server must accept a
    connection (any HTTP answer will do), a SQLite file must be a readable,
    writable database in a writable folder (or that folder must exist).
    """
    uri = tracking_uri(params)
    if uri.startswith(("http://", "https://")):
        _check_http(uri.rstrip("/") + "/health", f"the MLflow tracking server {redact(uri)}", MLFLOW_HINT)
    elif uri.startswith("sqlite:///"):
        _check_sqlite(Path(uri.removeprefix("sqlite:///")), uri)
    return uri


MLFLOW_HINT = "start it, or point MLFLOW_TRACKING_URI (or mlflow.tracking_uri) at a running one"


def _check_http(url: str, what: str, hint: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=REACH_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # it answered: reachable (a proxy may not know /health)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(f"{what} is not reachable ({redact(str(reason))[:120]}): {hint}") from None


def _check_sqlite(path: Path, uri: str) -> None:
    import sqlite3

    folder = path.parent if str(path.parent) else Path(".")
    if not path.exists():
        existing = next(parent for parent in [folder.absolute(), *folder.absolute().parents] if parent.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):  # missing folders are created
            raise ConfigError(f"MLflow store {uri}: cannot create it: {existing} is not a writable folder")
        return
    if not path.is_file() or not os.access(path, os.R_OK | os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"MLflow store {uri}: {path} (or its folder, for SQLite's journal) is not writable: fix its permissions, "
            "or point MLFLOW_TRACKING_URI at another store"
        )
    try:
        # Read-write, never read-only: a writer SIGKILLed mid-transaction leaves a hot journal, which
        # SQLite rolls back on the first read; a read-only connection cannot, and calls a healthy store
        # "attempt to write a readonly database". mode=rw still never creates the file.
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=REACH_TIMEOUT_S)) as db:
            # the header and the schema: a garbage or truncated file fails here ("file is not a database");
            # no integrity_check, which reads every page (seconds for a large store, at every stage)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            problem = "ok"
    except sqlite3.Error as error:
        problem = str(error)
    if problem != "ok":
        raise ConfigError(
            f"MLflow store {uri}: not a usable SQLite database ({problem[:120]}): restore it from a backup, "
            "or point MLFLOW_TRACKING_URI at another store"
        )


def configure(params: MlflowParams) -> str:
    """Point MLflow at the store and experiment; returns the experiment id."""
    import mlflow

    uri = check_store(params)
    mlflow.set_tracking_uri(uri)
    with store_creation_lock(uri):  # the first call creates (migrates) a new store; so may another process
        experiment = mlflow.get_experiment_by_name(params.experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            experiment_id = mlflow.create_experiment(params.experiment, artifact_location=artifact_location(uri))
    tags = experiment.tags if experiment else {}
    if tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
        # MLflow 3's UI opens an experiment on its GenAI overview unless told it is for model training.
        mlflow.MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    if tags.get(RUNS_VIEW_TAG) != RUNS_VIEW:
        mlflow.MlflowClient().set_experiment_tag(experiment_id, RUNS_VIEW_TAG, RUNS_VIEW)
    mlflow.set_experiment(experiment_id=experiment_id)
    close_abandoned_runs(experiment_id)
    return experiment_id


@contextmanager
def store_creation_lock(uri: str, timeout_s: float = 300.0) -> Iterator[None]:
    """Hold an flock on `<database>.lock` beside a local SQLite store (other stores: nothing to do)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)

    def busy(handle: int) -> Exception:
        return TimeoutError(f"{database}: another process has been creating this MLflow store for {timeout_s:.0f} s")

    with file_lock(database.with_name(database.name + ".lock"), timeout_s, busy, poll_s=0.1):
        yield


def mark_interrupted_runs(params: MlflowParams, since: float, why: str) -> list[str]:
    """Mark KILLED, with a `killed_note`, this process's runs since `since` (epoch seconds) that did not finish.

    Called when a stop signal ends a run: MLflow's own handling would leave the
    active run FAILED (or, at exit, FINISHED). Nothing to do when this process
    never imported MLflow.
    """
    if "mlflow" not in sys.modules:
        return []
    import socket

    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")
    client = mlflow.MlflowClient(tracking_uri(params))
    experiment = client.get_experiment_by_name(params.experiment)
    if experiment is None:
        return []
    pid, host = str(os.getpid()), socket.gethostname()
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.pid = '{pid}' and attributes.start_time >= {int(since * 1000)}",
        max_results=1000,
    )
    marked = []
    for run in found:
        if run.data.tags.get("host") != host or run.info.status == "FINISHED":
            continue
        client.set_tag(run.info.run_id, "killed_note", f"{why}; marked KILLED by its own process {pid} on {host}")
        client.set_terminated(run.info.run_id, status="KILLED")
        marked.append(run.info.run_id)
    return marked


def close_stopped_runs(params: Any, why: str, since: float) -> list[str]:
    """A tracked stage's `on_stop` (`run_entry_point`): its unfinished MLflow runs since `since`, marked KILLED."""
    return mark_interrupted_runs(params.mlflow, since, why)


def process_tags() -> dict[str, str]:
    """Who writes this run: lets a later run tell a killed writer from a live one.

    Under `dvc repro` or `dvc exp run` each stage is a process of its own and the pipeline run outlives
    them; the `dvc` process that runs them all (`dvc_process`, pid and start time) is then its owner.
    """
    import socket

    from quickdraw_dag.tracking.session import current_session

    tags = {"host": socket.gethostname(), "pid": str(os.getpid())}
    session = current_session()
    if session.mode == "dvc" and session.key and session.key != "unknown":
        tags["dvc_process"] = session.key
    return tags


def dvc_process_alive(key: str) -> bool:
    """True while the `dvc` process `pid:start_time` (`session.dvc_process_key`) still runs (not a reused pid)."""
    import psutil

    pid, _, started = key.partition(":")
    if not pid.isdigit() or not started:
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.3f}" == started
    except psutil.Error:
        return False


def close_abandoned_runs(experiment_id: str) -> list[str]:
    """Mark KILLED, with a note, the RUNNING runs whose writer on this host is gone.

    A run killed mid-way (SIGKILL, OOM, power) never reaches its end, so
    MLflow would show it RUNNING forever. Only runs tagged by this project
    with this host's name are judged; runs from other hosts are left alone.
    """
    import socket

    import mlflow

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get("pid", "")
        if tags.get("host") != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        if dvc_process_alive(tags.get("dvc_process", "")):
            continue  # its stage ended, its `dvc repro` / `dvc exp run` goes on: the next stage continues the run
        note = (
            f"process {pid} on {host} ended without finishing this run (killed or crashed); "
            f"marked KILLED on {time.strftime('%Y-%m-%d %H:%M:%S')} by pid {os.getpid()}"
        )
        client.set_tag(run.info.run_id, "killed_note", note)
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
        log.warning("MLflow run %s: %s", run.info.run_id, note)
    return closed


def artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store (`<db folder>/mlartifacts`); servers choose their own."""
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        return (database.resolve().parent / DEFAULT_ARTIFACT_DIR).as_uri()
    if uri.startswith("file:") or "://" not in uri:
        return Path(DEFAULT_ARTIFACT_DIR).resolve().as_uri()
    return None


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} → {'a.b': '1'}; lists become their JSON text."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return {prefix.rstrip("."): redact(text)}  # no credentials of URLs in MLflow params


def ui_url(params: MlflowParams, port: int, host: str = "127.0.0.1") -> str:
    """Where `make ui` shows this project's runs: the experiment in MLflow's model-training view.

    MLflow 3.17's UI opens every experiment in its GenAI view unless the link asks for the
    model-training one (the experiment's kind tag alone does not switch it).
    """
    import mlflow

    base = f"http://{host}:{port}/#"
    mlflow.set_tracking_uri(tracking_uri(params))
    try:
        experiment = mlflow.get_experiment_by_name(params.experiment)
    except Exception:  # noqa: BLE001 - no store yet: the experiments list is the page to open
        experiment = None
    if experiment is None:  # no store yet: the experiments list is the page to open
        return f"{base}/experiments?workflowType=machine_learning"
    view = f"&viewStateShareKey={RUNS_VIEW_KEY}" if RUNS_VIEW_TAG in experiment.tags else ""
    return f"{base}/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning{view}"


def wait_for_port(port: int, pid: int | None, timeout_s: float = 300.0, host: str = "127.0.0.1") -> bool:
    """True once `host:port` accepts a connection; False if process `pid` (the server) ends first, or on timeout.

    `make ui` prints its link only then: the UI takes tens of seconds to start, and a link that does not
    answer yet looks broken.
    """
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pid is not None and not process_alive(pid):
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.25)
    return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    from quickdraw_dag.config.loading import load_params

    parser = argparse.ArgumentParser(prog="python -m quickdraw_dag.tracking.store")
    parser.add_argument("command", choices=["ui-url"], help="print the link that opens the runs in `make ui`")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--when-up", type=int, metavar="PID", help="print it once the port answers; nothing if server PID ends first"
    )
    args = parser.parse_args(argv)
    link = ui_url(load_params(args.params).mlflow, args.port)
    if args.when_up is not None and not wait_for_port(args.port, args.when_up):
        return 1
    print(f"MLflow UI: {link}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
