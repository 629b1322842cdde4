"""A pytest plugin: the run fails if any process the test session started is still alive at its end.

How a process is known to be the session's, even once orphaned (a SIGKILLed stage's pool workers are
re-parented to init and are no longer anyone's descendants):

- the controller puts a fresh token in the environment (`QUICKDRAW_TEST_SESSION`) before it starts the
  xdist workers; every process exec'd below it inherits the token, and forked ones share their parent's;
- each test sets `QUICKDRAW_TEST_STARTED_BY` to its node id while it runs, so an exec'd process names
  its test; processes forked straight from a worker are named by the after-test scan of its descendants.

At the end each worker checks its own processes (after its session fixtures are torn down) and hands the
list to the controller, which checks again once the workers are gone, reports, fails the run and only
then stops what is left, so a failed run does not leave the machine busy either.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import psutil
import pytest

TOKEN = "QUICKDRAW_TEST_SESSION"


STARTED_BY = "QUICKDRAW_TEST_STARTED_BY"


# Servers and pools get this long to finish exiting after their fixture's teardown (the env var: for the
# guard's own tests, which leave processes on purpose).
GRACE_S = float(os.environ.get("QUICKDRAW_TEST_GRACE_S", "10"))


@dataclass(frozen=True)
class Leak:
    """A process of the session alive at its end, and the test that started it."""

    pid: int
    created: float
    command: str
    test: str

    def line(self) -> str:
        return f"pid {self.pid}: {self.command} (started by {self.test})"


class ProcessGuard:
    """Records which test started each child process, and finds the session's processes left at its end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.worker = getattr(config, "workerinput", None) is not None
        self.me = psutil.Process()
        self.started_by: dict[tuple[int, float], str] = {}
        self.leaks: dict[tuple[int, float], Leak] = {}
        self.ran: set[str] = set()  # the tests this process ran
        self.workers: set[int] = set()  # xdist's own: they exit on their own after reporting (slowly under load)
        if not self.worker:
            # Fresh per run: a run started from inside a test must not count as its parent's processes.
            os.environ[TOKEN] = uuid.uuid4().hex
        self.token = os.environ[TOKEN]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item):  # noqa: ANN201 (a hook wrapper's generator)
        os.environ[STARTED_BY] = item.nodeid
        self.ran.add(item.nodeid)
        try:
            yield
        finally:
            os.environ.pop(STARTED_BY, None)
            self._note_children(item.nodeid)

    def _note_children(self, nodeid: str) -> None:
        """Name the test beside every descendant first seen after it (setup, call and teardown)."""
        for child in self.me.children(recursive=True):
            try:
                self.started_by.setdefault((child.pid, child.create_time()), nodeid)
            except psutil.NoSuchProcess:
                continue

    def _ours(self) -> list[psutil.Process]:
        """This session's processes other than this one and its ancestors (in a worker: only its own)."""
        skip = {self.me.pid, *(p.pid for p in self.me.parents()), *self.workers}
        found = {p.pid: p for p in self.me.children(recursive=True)}
        for proc in psutil.process_iter():
            if proc.pid in skip or proc.pid in found:
                continue
            try:
                environ = proc.environ()
            except (psutil.Error, OSError):
                continue
            if environ.get(TOKEN) != self.token:
                continue
            if self.worker and environ.get(STARTED_BY) not in self.ran:
                # Another worker's (it may still be running tests), or xdist's own workers. Not told apart by
                # PYTEST_XDIST_WORKER: a process's exec-time environment holds its parent's value, which is an
                # outer worker's name for all of them when this session runs inside a test.
                continue
            found[proc.pid] = proc
        return [p for pid, p in found.items() if pid not in skip and not self._own_helper(p)]

    def _own_helper(self, proc: psutil.Process) -> bool:
        """multiprocessing's resource tracker or forkserver of this very process: one per process, started by
        the first pool or shared-memory use, and gone when this process exits (its pipe closes) - not a leak."""
        try:
            return proc.ppid() == self.me.pid and any(
                f"from multiprocessing.{helper} import main" in " ".join(proc.cmdline())
                for helper in ("resource_tracker", "forkserver")
            )
        except psutil.Error:
            return False

    def _describe(self, proc: psutil.Process) -> Leak | None:
        try:
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                key = (proc.pid, proc.create_time())
                command = " ".join(proc.cmdline())[:200] or proc.name()
                try:
                    environ = proc.environ()
                except (psutil.Error, OSError):
                    environ = {}
        except psutil.NoSuchProcess:
            return None
        # The after-test scan first: a process forked from this one shares its environment from exec time.
        test = self.started_by.get(key) or environ.get(STARTED_BY) or "no test: session setup or teardown"
        return Leak(proc.pid, key[1], command, test)

    def check(self) -> None:
        """Wait a little for the session's processes to exit, then keep those still alive as leaks."""
        # Those a worker reported have had their grace (and a worker knows better which test forked them).
        reported = {pid for pid, _ in self.leaks}
        _, alive = psutil.wait_procs([p for p in self._ours() if p.pid not in reported], timeout=GRACE_S)
        for proc in alive:
            leak = self._describe(proc)
            if leak is not None:
                self.leaks.setdefault((leak.pid, leak.created), leak)

    @pytest.hookimpl(trylast=True)  # after the runner has torn the session fixtures down
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.check()
        if self.worker:
            # Sent to the controller with xdist's "workerfinished" event.
            self.config.workeroutput["leaked_processes"] = [vars(leak) for leak in self.leaks.values()]
            self.config.workeroutput["worker_pid"] = self.me.pid
            return
        if self.leaks:
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self._stop_leaks()

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under -p no:xdist
    def pytest_testnodedown(self, node, error) -> None:  # noqa: ANN001 (xdist's node type is private)
        output = getattr(node, "workeroutput", {})
        if "worker_pid" in output:
            self.workers.add(output["worker_pid"])
        for fields in output.get("leaked_processes", []):
            leak = Leak(**fields)
            self.leaks[(leak.pid, leak.created)] = leak

    def _stop_leaks(self) -> None:
        procs = []
        for leak in self.leaks.values():
            try:
                proc = psutil.Process(leak.pid)
                if proc.create_time() == leak.created:
                    procs.append(proc)
                    proc.terminate()
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001
        if self.worker or not self.leaks:
            return
        terminalreporter.section("processes outlived the test session", sep="=", red=True, bold=True)
        for leak in sorted(self.leaks.values(), key=lambda leak: (leak.test, leak.pid)):
            terminalreporter.write_line(leak.line())
        terminalreporter.write_line(f"{len(self.leaks)} process(es) left running: the run fails (they are now stopped)")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ProcessGuard(config), "quickdraw-process-guard")
