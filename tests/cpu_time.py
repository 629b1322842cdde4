"""A pytest plugin: the CPU seconds each test costs, where the suite's time goes on a machine it keeps busy.

`--durations` lists wall time, which on two busy cores says as much about the other worker as about the
test. With QUICKDRAW_TEST_CPU_LOG set, each test appends one JSON line: the CPU its worker spent (`self`)
and the CPU of the processes it started and reaped (`children`: stage subprocesses, `dvc`, servers it
stopped). A process reaped later (a session fixture's server) counts where it is reaped.

    QUICKDRAW_TEST_CPU_LOG=/tmp/cpu.jsonl make test
    python -m tests.cpu_time /tmp/cpu.jsonl      # the 25 costliest tests, and the totals
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LOG = "QUICKDRAW_TEST_CPU_LOG"


def _cpu_seconds() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, reaped.ru_utime + reaped.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    target = os.environ.get(LOG)
    if not target:
        yield
        return
    own, reaped = _cpu_seconds()
    started = time.monotonic()
    yield
    own_after, reaped_after = _cpu_seconds()
    line = {
        "test": item.nodeid,
        "self": round(own_after - own, 2),
        "children": round(reaped_after - reaped, 2),
        "wall": round(time.monotonic() - started, 2),
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
    }
    with open(target, "a", encoding="utf-8") as handle:  # one short line per append: workers never interleave
        handle.write(json.dumps(line) + "\n")


def summary(log: Path, top: int = 25) -> str:
    """The `top` costliest tests by CPU seconds, then the totals per worker."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda row: -(row["self"] + row["children"]))
    lines = [f"{'cpu s':>7} {'wall s':>7}  test"]
    lines += [f"{row['self'] + row['children']:7.1f} {row['wall']:7.1f}  {row['test']}" for row in rows[:top]]
    for worker in sorted({row["worker"] for row in rows}):
        mine = [row for row in rows if row["worker"] == worker]
        cpu = sum(row["self"] + row["children"] for row in mine)
        lines.append(f"{worker}: {len(mine)} tests, {cpu:.0f} CPU s in {sum(row['wall'] for row in mine):.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.cpu_time LOG")
    print(summary(Path(sys.argv[1])))
