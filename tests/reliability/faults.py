"""Fault-injection helpers shared by the reliability tests: a flow paused mid-stage, leftover processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# Three synthetic classes of 200 drawings: seconds per stage.
TINY_DATA = {
    "data": {"source": "synthetic", "categories": ["circle", "square", "star"]},
    "fetch": {"synthetic_drawings": 200},
}

# The flow, paused where split writes its summary until the file PAUSE_GO appears (a slow disk, injected);
# PAUSE_REACHED appears when it gets there. Run as `python -c PAUSED_FLOW <flow arguments>`.
PAUSED_FLOW = """
import os, sys, time
from pathlib import Path
import tasks.split
original = tasks.split.write_split_summary
def paused(path, summary):
    Path(os.environ["PAUSE_REACHED"]).touch()
    deadline = time.monotonic() + 300
    while not Path(os.environ["PAUSE_GO"]).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    original(path, summary)
tasks.split.write_split_summary = paused
from flows.pipeline import main
sys.exit(main(sys.argv[1:]))
"""


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 240) -> None:
    """Until `condition()` holds; fails if `process` ends first or it takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the process ended before the point to test at"
        assert time.monotonic() < deadline, "the process never reached the point to test at"
        time.sleep(0.1)


def survivors(marker: str) -> list[int]:
    """Processes still running with `marker` in their environment (started by the run under test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
