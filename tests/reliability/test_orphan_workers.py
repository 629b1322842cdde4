"""A SIGKILLed stage leaves no pool worker behind (issue 25, point 11).

preprocess rasterizes on a pool of spawned processes; killed with SIGKILL it
runs no clean-up, and its workers used to live on (three outlived a whole
test-suite run). Each worker now ends with its parent.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.helpers import prepare_slow_preprocess, start


def _workers(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(processes: list[psutil.Process]) -> list[int]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _maps_output(process: psutil.Process, data: Path) -> bool:
    try:
        return any(str(data) in region.path for region in process.memory_maps())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _describe(pid: int) -> str:
    try:
        process = psutil.Process(pid)
        return f"{pid} ({process.status()}, parent {process.ppid()}): {' '.join(process.cmdline())[:100]}"
    except psutil.NoSuchProcess:
        return f"{pid} (gone)"


@pytest.mark.slow
def test_sigkilled_preprocess_leaves_no_pool_worker(project: Path, record: Callable[..., None]) -> None:
    prepare_slow_preprocess(project)
    os.environ["QUICKDRAW_WORKERS"] = "3"
    try:
        stage = start("tasks.preprocess", cwd=project)
    finally:
        del os.environ["QUICKDRAW_WORKERS"]
    deadline = time.monotonic() + 240
    # Killed while every worker rasterizes (each maps the output arrays under data/). A worker killed while
    # still starting (importing the stage's module, as spawn does) ends as soon as its start-up does.
    workers: list[psutil.Process] = []
    while len([w for w in workers if _maps_output(w, project / "data")]) < 3:
        assert stage.poll() is None, "preprocess finished before it could be killed"
        assert time.monotonic() < deadline, "the pool never started"
        workers = _workers(stage.pid)
        time.sleep(0.05)
    stage.send_signal(signal.SIGKILL)
    stage.wait()
    killed_at = time.monotonic()
    while _alive(workers) and time.monotonic() - killed_at < 10:
        time.sleep(0.1)
    seconds = time.monotonic() - killed_at
    left = _alive(workers)
    described = [_describe(pid) for pid in left]
    for pid in left:  # never leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} of {len(workers)} workers outlived the killed stage: {described}"
    assert seconds < 5
    record(
        "orphan processes",
        case="SIGKILL preprocess with 3 pool workers",
        workers=len(workers),
        left=0,
        gone_within_s=round(seconds, 1),
    )
