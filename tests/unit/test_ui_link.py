"""`make ui` prints its link only once the UI's port answers, and nothing when the server died first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from quickdraw_dag.tracking.store import wait_for_port
from tests.helpers import REPO


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listen_later(port: int, after_s: float, stop: threading.Event) -> threading.Thread:
    """A server that starts listening on `port` after `after_s` (as the MLflow UI does after its start-up)."""

    def serve() -> None:
        time.sleep(after_s)
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            stop.wait(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_the_link_waits_for_the_port_and_gives_up_when_the_server_ends() -> None:
    port, stop = free_port(), threading.Event()
    started = time.monotonic()
    listen_later(port, 1.5, stop)
    try:
        assert wait_for_port(port, os.getpid(), timeout_s=30)
        assert time.monotonic() - started >= 1.4  # not before it answers
    finally:
        stop.set()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    began = time.monotonic()
    assert not wait_for_port(free_port(), ended.pid, timeout_s=30)  # the server died: no link, at once
    assert time.monotonic() - began < 5
    assert not wait_for_port(free_port(), None, timeout_s=1)  # nothing ever listens: gives up at the timeout


def test_the_command_prints_the_link_only_once_the_ui_answers(tmp_path) -> None:
    port, stop = free_port(), threading.Event()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}"}
    command = [sys.executable, "-m", "quickdraw_dag.tracking.store", "ui-url", "--port", str(port)]
    command += ["--params", str(REPO / "params.yaml"), "--when-up", str(os.getpid())]
    started = time.monotonic()
    listen_later(port, 3.0, stop)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    finally:
        stop.set()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"MLflow UI: http://127.0.0.1:{port}/#/experiments")
    assert time.monotonic() - started >= 3.0
