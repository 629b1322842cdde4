"""`make prefect-server` on a non-default port, and flow runs against it.

The server is the real one the Makefile starts (`make prefect-server PREFECT_PORT=<free port>`,
with its own PREFECT_HOME, so its own database), on 127.0.0.1:

- its UI calls the API on that same port (`/ui-settings`), not on Prefect's default 4200;
- a flow run killed with SIGKILL shows CRASHED, with a message, once the next run of the flow
  starts, and so do its unfinished task runs; runs of live processes or other hosts are left alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO, TINY_FIXED_PIPELINE, kill_when, run_module, set_params, start

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prefect-server")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make prefect-server` on a free port (never 4200); yields its address, e.g. http://127.0.0.1:43121."""
    port = free_port()
    assert port != 4200
    home = tmp_path_factory.mktemp("prefect-home")
    venv = Path(sys.executable).parent.parent
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(home)
    log = (home / "server.log").open("w")
    # -o: the venv is already installed; make must not reinstall it
    command = ["make", "-s", "-C", str(REPO), "-o", f"{venv}/.installed-stamp", "prefect-server"]
    server = subprocess.Popen(
        [*command, f"PREFECT_PORT={port}", f"VENV={venv}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, (home / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the server did not answer within 180 s"
        try:
            if httpx.get(f"{address}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    try:
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_the_ui_calls_the_api_on_the_servers_own_port(prefect_server: str) -> None:
    settings = httpx.get(f"{prefect_server}/ui-settings", timeout=10).json()
    assert settings["api_url"] == f"{prefect_server}/api"  # was http://127.0.0.1:4200/api whatever the port
    page = httpx.get(f"{prefect_server}/", timeout=10, follow_redirects=True)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_a_killed_flow_run_shows_crashed_once_the_next_run_starts(
    prefect_server: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Running

    from flows.pipeline import pipeline

    api = f"{prefect_server}/api"
    monkeypatch.setenv("PREFECT_API_URL", api)  # for the flow processes
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'store.db'}")
    set_params(project, **TINY_FIXED_PIPELINE)
    host = socket.gethostname()

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:

        def runs(*ids) -> list:
            return client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["quickdraw-pipeline"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))) if ids else None,
                sort=FlowRunSort.START_TIME_DESC,
                limit=50,
                offset=0,
            )

        def tasks_of(run_id) -> list:
            return client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=200,
                offset=0,
            )

        # Runs the next flow must leave alone: a live process here, another host, another worker's job id.
        bystanders = {}
        for label, owner in (("live", f"{host}:{os.getpid()}"), ("elsewhere", "other-host:1"), ("k8s", "ns:job-x")):
            created = client.create_flow_run(pipeline, name=f"bystander-{label}", state=Running())
            client.update_flow_run(created.id, infrastructure_pid=owner)
            bystanders[label] = created.id

        first = start("flows.pipeline", cwd=project)
        victim = {}

        def busy_in_a_task() -> bool:
            """The first run has recorded its process and has a task running: kill it there."""
            mine = [r for r in runs() if r.infrastructure_pid == f"{host}:{first.pid}"]
            if mine:
                victim["run"] = mine[0]
                return any(t.state_type == StateType.RUNNING for t in tasks_of(mine[0].id))
            return False

        kill_when(first, busy_in_a_task, timeout=300)
        killed = runs(victim["run"].id)[0]
        assert killed.state_type == StateType.RUNNING  # nothing closed it: Prefect alone would show it for ever

        second = run_module("flows.pipeline", "--until", "fetch", cwd=project, code=REPO)
        assert second.returncode == 0, second.stderr[-3000:]

        killed = runs(victim["run"].id)[0]
        assert killed.state_type == StateType.CRASHED and killed.state.name == "Crashed"
        assert f"process {first.pid} on {host}" in killed.state.message and "killed" in killed.state.message
        leftover = [t.name for t in tasks_of(killed.id) if t.state_type in (StateType.RUNNING, StateType.PENDING)]
        assert leftover == []
        assert any(t.state_type == StateType.CRASHED for t in tasks_of(killed.id))
        latest = [r for r in runs() if r.id not in bystanders.values() and r.id != killed.id]
        assert latest and latest[0].state_type == StateType.COMPLETED  # the second run itself
        assert latest[0].infrastructure_pid.startswith(f"{host}:")
        for label, run_id in bystanders.items():
            assert runs(run_id)[0].state_type == StateType.RUNNING, label
