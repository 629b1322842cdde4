"""Telemetry off wherever the project starts a server (issue 25, point 12).

`python -m flows.pipeline`, as README shows it, started its temporary Prefect
server with analytics on (only the Makefile's environment switched them off),
and the server logged "Failed to send telemetry". The server's own
environment is read from /proc, with the flow started from a clean one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from quickdraw_dag.orchestration.prefect_server import TELEMETRY_OFF
from tests.helpers import REPO

PROBE = """
import json, sys
import psutil
from quickdraw_dag.orchestration.prefect_server import temporary_server

with temporary_server() as url:
    servers = [p for p in psutil.Process().children(recursive=True) if "uvicorn" in " ".join(p.cmdline())]
    raw = open(f"/proc/{servers[0].pid}/environ", "rb").read()
    env = dict(item.decode().partition("=")[::2] for item in raw.split(b"\\0") if item)
    print(json.dumps({"url": url, "servers": len(servers), "env": env}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("inherited", [{}, {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "0"}])
def test_the_flows_temporary_prefect_server_runs_with_telemetry_off(
    tmp_path: Path, inherited: dict[str, str], record: Callable[..., None]
) -> None:
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        **inherited,  # a user's environment that asks for telemetry: the project's server still sends none
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["url"].startswith("http://127.0.0.1:") and seen["servers"] == 1
    assert {key: seen["env"].get(key) for key in TELEMETRY_OFF} == TELEMETRY_OFF
    assert "Failed to send telemetry" not in done.stderr
    record(
        "telemetry",
        case=f"temporary Prefect server, environment {'clean' if not inherited else 'asking for it'}",
        servers=1,
        telemetry_on=0,
    )
