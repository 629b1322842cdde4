"""Dead or broken services fail fast and say so (issue 25, point 7).

A dead MLFLOW_TRACKING_URI made the flow retry for 4 min 20 s and print a
traceback, and `make reproduce` wait 250 s to say the run does not exist; a
corrupt mlflow.db or a dead PREFECT_API_URL gave tracebacks after params.yaml
had been rewritten. Each is now checked first: one line naming the service
and its URL, exit 2, in seconds, with nothing written.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.helpers import REPO, run_module


def _closed_port() -> int:
    """A port nobody listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _flow(project: Path, env: dict[str, str]) -> tuple[object, float]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        started = time.monotonic()
        done = run_module("flows.pipeline", "--set", "train.epochs=7", cwd=project, code=REPO, timeout=300)
        return done, time.monotonic() - started
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


CASES = {
    "dead MLflow server": lambda project, port: {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"},
    "corrupt mlflow.db": lambda project, port: {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'broken.db'}"},
    "MLflow store under a file": lambda project, port: {
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'params.yaml' / 'store' / 'mlflow.db'}"
    },
    "dead Prefect API": lambda project, port: {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
}
NAMED = {
    "dead MLflow server": "MLflow tracking server http://127.0.0.1:",
    "corrupt mlflow.db": "not a usable SQLite database",
    "MLflow store under a file": "params.yaml is not a writable folder",
    "dead Prefect API": "Prefect API http://127.0.0.1:",
}


@pytest.mark.parametrize("case", CASES)
def test_the_flow_refuses_a_dead_or_broken_service_in_seconds_and_writes_nothing(
    project: Path, case: str, record: Callable[..., None]
) -> None:
    (project / "broken.db").write_bytes(b"this is not SQLite\n" * 100)
    before = (project / "params.yaml").read_bytes()
    done, seconds = _flow(project, CASES[case](project, _closed_port()))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert NAMED[case] in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) <= 3, lines
    assert (project / "params.yaml").read_bytes() == before  # persist_overrides never ran
    assert not (project / "data").exists() and not (project / "dvc.lock").exists()
    assert seconds < 60  # the interpreter's start-up; MLflow's retries took minutes
    record("dead services", case=f"make run with a {case}", exit_2=1, seconds=round(seconds, 1), written=0)


def test_reproduce_refuses_a_dead_tracking_server_in_seconds(project: Path, record: Callable[..., None]) -> None:
    port = _closed_port()
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        done = run_module("quickdraw_dag.orchestration.reproduce", "0" * 32, cwd=project, code=REPO, timeout=300)
        seconds = time.monotonic() - started
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"MLflow tracking server http://127.0.0.1:{port} is not reachable" in done.stderr
    assert "does not exist" not in done.stderr and "Traceback" not in done.stderr
    assert seconds < 60
    record(
        "dead services", case="make reproduce with a dead MLflow server", exit_2=1, seconds=round(seconds, 1), written=0
    )


def test_a_live_server_that_answers_any_status_counts_as_reachable(tmp_path: Path) -> None:
    """Neighbour: a proxy without /health (404) is a live server, not a dead one."""
    from quickdraw_dag.config.schema import MlflowParams
    from quickdraw_dag.tracking.store import check_store
    from tests.http_server import FaultyServer

    server = FaultyServer()
    with server.running():
        assert check_store(MlflowParams(tracking_uri=server.url.rstrip("/"))) == server.url.rstrip("/")
    assert server.requests == [("health", None)]


KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN")
db.execute("UPDATE runs SET status = 'TORN'")
db.execute("INSERT INTO runs SELECT 'filler', randomblob(4000) FROM generate")  # spills pages: a hot journal
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_store_whose_writer_was_killed_mid_write_is_recovered_not_refused(tmp_path: Path) -> None:
    """A SIGKILL during an MLflow write leaves `mlflow.db-journal`; the next stage refused the store (CI, 2026-12-04).

    The check opened the file read-only, and a read-only connection cannot roll
    back a hot journal ("attempt to write a readonly database"). SQLite's own
    recovery must run instead: the store is accepted, the torn write undone.
    """
    import sqlite3
    import subprocess
    import sys

    from quickdraw_dag.config.schema import MlflowParams
    from quickdraw_dag.errors import ConfigError
    from quickdraw_dag.tracking.store import check_store

    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE runs (status TEXT, payload BLOB)")
        db.execute("INSERT INTO runs VALUES ('FINISHED', NULL)")
        db.execute(
            "CREATE TABLE generate AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "WHERE i < 2000) SELECT i FROM n"
        )
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(store)], timeout=60)
    journal = store.with_name("mlflow.db-journal")
    assert killed.returncode == -9 and journal.stat().st_size > 0  # the torn write is on disk
    uri = f"sqlite:///{store}"
    assert check_store(MlflowParams(tracking_uri=uri)) == uri
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("FINISHED",)]  # rolled back, nothing lost
    assert not journal.exists() or journal.stat().st_size == 0
    # neighbours: a cut-short store and a garbage one are still refused, and the check never creates a file
    for name, content in {"cut.db": store.read_bytes()[:96], "garbage.db": b"not SQLite\n" * 100}.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match=f"sqlite:///{tmp_path / name}: not a usable SQLite database"):
            check_store(MlflowParams(tracking_uri=f"sqlite:///{tmp_path / name}"))
    assert check_store(MlflowParams(tracking_uri=f"sqlite:///{tmp_path / 'new' / 'm.db'}"))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("workers", [256, 64])
def test_more_tuning_workers_than_memory_holds_are_refused_before_any_starts(
    project: Path, workers: int, record: Callable[..., None]
) -> None:
    """Issue 25, point 6: tune.workers is bounded by the memory available (1.6 GB per TensorFlow worker)."""
    import psutil

    from quickdraw_dag.errors import ConfigError
    from quickdraw_dag.training.tune_workers import WORKER_MEMORY_BYTES, check_worker_memory

    fit = max(1, int(psutil.virtual_memory().available) // WORKER_MEMORY_BYTES)
    assert workers > fit, "this machine holds that many workers: the case cannot be made here"
    before = (project / "params.yaml").read_bytes()
    started = time.monotonic()
    done = run_module("flows.pipeline", "--set", f"tune.workers={workers}", cwd=project, code=REPO, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"tune.workers: {workers} workers need about" in done.stderr and "at most" in done.stderr
    assert (project / "params.yaml").read_bytes() == before and not (project / "data").exists()
    # the bound itself, on figures: 8 GB holds 5 workers, 1 is never refused, 2 GB holds 1
    with pytest.raises(ConfigError, match="at most 5 on this machine"):
        check_worker_memory(6, available=8_000_000_000)
    check_worker_memory(5, available=8_000_000_000)
    check_worker_memory(1, available=1)
    with pytest.raises(ConfigError, match="at most 1 on"):
        check_worker_memory(2, available=2_000_000_000)
    record(
        "bounded resources",
        case=f"tune.workers={workers}",
        bound=f"{fit} workers ({WORKER_MEMORY_BYTES / 1e9:.1f} GB each)",
        stopped_within_s=round(time.monotonic() - started, 1),
        left_behind=0,
    )


def lost_line(out: str) -> str:
    return next(line for line in out.splitlines() if "ended during the run" in line)


def _in_group(process: psutil.Process, group: int) -> bool:
    try:
        return os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE
    except (OSError, psutil.Error):  # gone meanwhile
        return False


@pytest.mark.slow
def test_a_flow_whose_temporary_prefect_server_dies_mid_run_stops_promptly_and_says_so(
    project: Path, record: Callable[..., None]
) -> None:
    """It hung about five minutes (Prefect's client retrying every state change) and exited 1 with a traceback."""
    import signal
    import subprocess
    import sys

    from tests.helpers import TINY_FIXED_PIPELINE, set_params

    set_params(
        project, **{**TINY_FIXED_PIPELINE, "train": {"epochs": 30, "max_seconds": None}}, versioning={"push": False}
    )
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # the flow's own server
    log = project.parent / "flow.log"  # a file, not a pipe nobody reads until the end
    with log.open("w") as sink:
        flow = subprocess.Popen(
            [sys.executable, "-m", "flows.pipeline"],
            cwd=project,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        server = None
        give_up = time.monotonic() + 240
        # Once the flow is into its stages (fetch's output exists), the server dies under it.
        while time.monotonic() < give_up and flow.poll() is None:
            servers = [
                p for p in psutil.Process(flow.pid).children(recursive=True) if "uvicorn" in " ".join(p.cmdline())
            ]
            if servers and (project / "data" / "raw").exists():
                server = servers[0]
                break
            time.sleep(0.5)
        assert server is not None, "the flow ended before its stages started"
        server.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        flow.wait(timeout=180)
        seconds = time.monotonic() - killed
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
    out = log.read_text()
    assert flow.returncode == 1, out[-3000:]
    assert seconds < 60, (seconds, out[-3000:])  # not Prefect's minutes of retries
    assert f"temporary Prefect server (pid {server.pid}) ended during the run" in out, out[-3000:]
    # The last word is ours (a stage stopped mid-write may have had Prefect log its task's failure before it)
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert last in ("the flow's temporary Prefect server is gone: exiting now (exit 1)", f"error: {lost_line(out)}"), (
        last
    )
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE
    left = [p.pid for p in psutil.process_iter() if _in_group(p, flow.pid)]
    assert left == [], left  # nothing the flow started outlives it
    record(
        "dead services",
        case="the flow's temporary Prefect server killed during the run",
        stopped_within_s=round(seconds, 1),
        left_running=len(left),
    )
