"""The scheduled deployment against a real Prefect server (the test worker's): schedule, then a served run.

They used `prefect_test_harness`, a fresh server and database per test (about 15 CPU s each to start and
migrate); the worker's server is as real, and already running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.loading import load_params
from tests.helpers import TINY_FIXED_PIPELINE, set_params


def start_serving(project: Path, api_url: str, **popen: object) -> subprocess.Popen:
    """`make serve` in `project` (`python -m flows.deploy serve`), reporting to the Prefect API at `api_url`."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(project)}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.deploy", "serve"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


@pytest.mark.slow
def test_deployment_has_the_cron_schedule_and_a_served_run_completes(
    project: Path, worker_prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import DEPLOYMENT_NAME, build_deployment

    monkeypatch.chdir(project)
    set_params(
        project,
        **TINY_FIXED_PIPELINE,
        schedule={"cron": "30 4 * * 2", "timezone": "Europe/Stockholm", "enabled": True},
        mlflow={"enabled": False},
    )
    params = load_params(project / "params.yaml")
    with temporary_settings({PREFECT_API_URL: worker_prefect_server}):
        deployment_id = build_deployment(params).apply()

        async def read() -> tuple:
            async with get_client() as client:
                deployment = await client.read_deployment(deployment_id)
                return deployment, await client.read_deployment_schedules(deployment_id)

        deployment, schedules = anyio.run(read)
        assert deployment.name == DEPLOYMENT_NAME and deployment.parameters == {"params_path": "params.yaml"}
        assert len(schedules) == 1 and schedules[0].active
        assert schedules[0].schedule.cron == "30 4 * * 2" and schedules[0].schedule.timezone == "Europe/Stockholm"

        server = start_serving(project, worker_prefect_server, start_new_session=True)
        try:
            run = run_deployment(f"run-pipeline/{DEPLOYMENT_NAME}", timeout=420)
            assert run.state.is_completed(), run.state
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            output = server.communicate(timeout=60)[0]
    assert Catalog.under(project).model.exists(), output[-3000:]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"fetch", "split", "preprocess", "tune", "train", "evaluate"}


@pytest.mark.slow
def test_make_serve_stops_on_sigterm_within_seconds(project: Path, worker_prefect_server: str) -> None:
    """Prefect's own SIGTERM handler deadlocked (`Runner.astop` never awaited) and needed SIGKILL."""
    import time

    set_params(project, **TINY_FIXED_PIPELINE, mlflow={"enabled": False})
    server = start_serving(project, worker_prefect_server)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # serving: the runner has started polling
            line = server.stdout.readline()
            lines.append(line)
            if "serving" in line or not line:
                break
        time.sleep(8)  # inside the runner's loop, where the old handler deadlocked
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output = "".join(lines) + server.communicate(timeout=60)[0]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert time.monotonic() - started < 30, output[-3000:]
    assert server.returncode == 143, output[-3000:]
    assert "stopped serving" in output and "never awaited" not in output and "Traceback" not in output
