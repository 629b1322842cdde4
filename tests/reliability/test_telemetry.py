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

from quickdraw_dag import TELEMETRY_OFF
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


ENTRY = """
import json, os, sys
import {package}
print(json.dumps({{key: os.environ.get(key) for key in [*json.loads(sys.argv[1]), "TF_CPP_MIN_LOG_LEVEL"]}}))
"""
HOSTILE = {"DO_NOT_TRACK": "0", "MLFLOW_DISABLE_TELEMETRY": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}


def run_entry(code: str, caller: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in {*TELEMETRY_OFF, "TF_CPP_MIN_LOG_LEVEL"}}
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(TELEMETRY_OFF))],
        cwd=REPO,
        env={**clean, **caller, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("package", ["tasks", "flows", "bench", "quickdraw_dag.serving"])
@pytest.mark.parametrize("caller", [{}, HOSTILE], ids=["clean", "asking-for-telemetry"])
def test_every_entry_package_turns_telemetry_off_in_its_own_process(package: str, caller: dict[str, str]) -> None:
    """`python -m tasks.<stage>` (as dvc repro runs it), `flows.*`, `bench.*` and the serving modules import
    their package first, so MLflow's client telemetry is off in our processes whatever the caller's environment."""
    result = run_entry(ENTRY.format(package=package), caller)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert {key: seen[key] for key in TELEMETRY_OFF} == TELEMETRY_OFF
    assert seen["TF_CPP_MIN_LOG_LEVEL"] == "2"
