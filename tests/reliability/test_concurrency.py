"""Two runs started at once in one workspace: one waits for or is refused the lock; no output is torn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, tree_digest

ARGS = (
    "--set",
    "data.source=synthetic",
    "--set",
    "data.categories=[circle, square, line, star]",
    "--set",
    "fetch.synthetic_drawings=2000",
)


def launch(module: str, *args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class TornWatch(threading.Thread):
    """Reads the run's JSON outputs over and over while the runs go; counts any torn read."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(daemon=True)
        self.paths, self.reads, self.torn, self.stop = paths, 0, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.paths:
                try:
                    text = path.read_text()
                except FileNotFoundError:
                    continue
                self.reads += 1
                try:
                    json.loads(text)
                except json.JSONDecodeError:
                    self.torn += 1
            time.sleep(0.005)


@pytest.mark.slow
def test_a_second_flow_is_refused_with_a_clear_message(project: Path, record) -> None:
    runs = [launch("flows.pipeline", "--until", "split", *ARGS, cwd=project) for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 75], [r[2][-2000:] for r in results]
    refused = next(err for code, _, err in results if code == 75)
    assert "is in use by" in refused and "pid" in refused and "--lock-wait" in refused
    assert json.loads(Catalog.under(project).split_summary.read_text())["totals"]["train"] > 0
    record("concurrency", scenario="two flow runs at once, no waiting", runs=2, completed=1, refused=1, torn_outputs=0)


@pytest.mark.slow
def test_runs_that_wait_for_the_lock_complete_one_after_the_other(project: Path, record) -> None:
    outputs = [Catalog.under(project).manifest, Catalog.under(project).split_summary]
    watch = TornWatch(outputs)
    watch.start()
    runs = []
    for _ in range(2):
        runs.append(launch("tasks.fetch", *ARGS, "--lock-wait", "120", cwd=project))
    codes = [run.wait(timeout=300) for run in runs]
    runs = [launch("tasks.split", *ARGS, "--lock-wait", "120", cwd=project) for _ in range(2)]
    codes += [run.wait(timeout=300) for run in runs]
    watch.stop.set()
    watch.join()
    assert codes == [0, 0, 0, 0]
    assert watch.reads > 0 and watch.torn == 0
    first = tree_digest(project / "data")
    assert all(json.loads(path.read_text()) for path in outputs)
    assert not (project / ".quickdraw.lock").read_text()  # released, holder info cleared
    record(
        "concurrency",
        scenario="2 fetch + 2 split at once, waiting for the lock",
        runs=4,
        completed=4,
        refused=0,
        torn_outputs=watch.torn,
        reads_while_writing=watch.reads,
    )
    assert first
