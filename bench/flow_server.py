"""What a flow run's own temporary Prefect server costs: the same tiny flow run, alternately starting its own
server and pointed at a running one (the tests' `worker_prefect_server`), side by side in one process.

    python -m bench.flow_server [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.workspace import copy_project

TINY = {
    "data": {"source": "synthetic", "categories": ["circle", "square", "star"]},
    "fetch": {"synthetic_drawings": 200},
}


def flow_seconds(project: Path, api_url: str | None) -> float:
    """One `flows.pipeline --until fetch` from scratch, timed; fails loudly if the flow fails."""
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PYTHONPATH"] = str(project)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    subprocess.run(["rm", "-rf", str(project / "data")], check=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--until", "fetch"], cwd=project, env=env, capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode(errors="replace")[-2000:])
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    from prefect.server.api.server import SubprocessASGIServer

    with tempfile.TemporaryDirectory() as scratch:
        project = copy_project(Path(scratch) / "project")
        params = yaml.safe_load((project / "params.yaml").read_text())
        for section, values in TINY.items():
            params[section].update(values)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        server = SubprocessASGIServer()
        server.start(timeout=180)
        try:
            own, shared = [], []
            for _ in range(rounds):
                own.append(flow_seconds(project, None))
                shared.append(flow_seconds(project, server.api_url))
        finally:
            server.stop()
    load = os.getloadavg()
    print(f"own server: {', '.join(f'{s:.1f} s' for s in own)}; shared: {', '.join(f'{s:.1f} s' for s in shared)}")
    print(f"ratio shared/own: {sum(shared) / sum(own):.2f} (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")


if __name__ == "__main__":
    main()
