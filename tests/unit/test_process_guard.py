"""The session-end check (tests/process_guard.py): a run that leaves a process alive fails and names it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import REPO, run_bounded

LEAKY = """
import os
import subprocess
import sys
import time
import time
from pathlib import Path

PIDS = Path(__file__).with_name("pids")


def note(pid):
    with PIDS.open("a") as handle:
        handle.write(f"{pid}\\n")


def test_leaves_a_child():
    note(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]).pid)


def test_orphans_a_grandchild():
    # The shell exits at once: its sleeper is re-parented to init, as a SIGKILLed stage's pool workers are.
    shell = subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    note(int(shell.stdout))


def test_forks_a_child():
    pid = os.fork()
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    note(pid)


def test_cleans_up():
    child = subprocess.Popen(["sleep", "120"])
    child.kill()
    child.wait()
"""


def run_inner(tmp_path: Path, tests: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.process_guard"]\n')
    (tmp_path / "test_inner.py").write_text(tests)
    env = {**os.environ, "PYTHONPATH": str(REPO), "QUICKDRAW_TEST_GRACE_S": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("mode", [("-n", "2"), ("-p", "no:xdist")], ids=["xdist-workers", "one-process"])
def test_a_run_that_leaves_processes_fails_names_each_with_its_test_and_stops_them(
    tmp_path: Path, mode: tuple[str, str]
) -> None:
    result = run_inner(tmp_path, LEAKY, *mode)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "4 passed" in out, out
    assert "processes outlived the test session" in out, out
    leaks = [line for line in out.splitlines() if line.startswith("pid ")]
    assert len(leaks) == 3, out
    for test in ("test_leaves_a_child", "test_orphans_a_grandchild", "test_forks_a_child"):
        assert sum(f"test_inner.py::{test})" in line for line in leaks) == 1, (test, out)
    assert not any("test_cleans_up" in line for line in leaks), out
    assert any("sleep 120" in line for line in leaks), out
    pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 3
    assert [pid for pid in pids if alive(pid)] == [], "the check stops what it reports"


def test_a_run_that_reaps_its_children_passes_with_no_report(tmp_path: Path) -> None:
    # One process only: the whole suite, on two workers, is the check that xdist's own processes never count.
    clean = LEAKY.split("def test_leaves_a_child")[0] + "def test_cleans_up" + LEAKY.split("def test_cleans_up")[1]
    result = run_inner(tmp_path, clean, "-p", "no:xdist")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 passed" in out and "outlived" not in out, out


def test_multiprocessing_s_own_resource_tracker_is_not_a_leak_but_a_pool_worker_left_is(tmp_path: Path) -> None:
    # The tracker lives as long as the process that started it (here the test session itself) and then exits.
    tests = """
import multiprocessing
from multiprocessing import resource_tracker


def test_starts_the_tracker():
    resource_tracker.ensure_running()


def test_leaves_a_spawned_child():
    multiprocessing.get_context("spawn").Process(target=__import__("time").sleep, args=(120,)).start()
"""
    result = run_inner(tmp_path, tests, "-p", "no:xdist")
    out = result.stdout + result.stderr
    leaks = [line for line in out.splitlines() if line.startswith("pid ")]
    assert result.returncode == 1 and "2 passed" in out, out
    assert len(leaks) == 1 and "test_leaves_a_spawned_child" in leaks[0], out
    assert not any("resource_tracker import main" in line for line in leaks), out


def test_a_failing_run_keeps_its_own_exit_status(tmp_path: Path) -> None:
    result = run_inner(tmp_path, LEAKY + "\n\ndef test_fails():\n    assert 1 == 2\n", "-p", "no:xdist")
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "1 failed, 4 passed" in out and "processes outlived" in out, out


def test_a_timed_out_command_is_killed_with_every_process_it_started(tmp_path: Path) -> None:
    # subprocess.run would kill the shell alone and orphan its sleeper, as a flow's server was orphaned.
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 60"], timeout=2)
    assert time.monotonic() - started < 30
    grandchild = int(pidfile.read_text())
    assert not alive(grandchild)


def test_a_command_within_its_time_returns_its_output_and_status(tmp_path: Path) -> None:
    done = run_bounded(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
