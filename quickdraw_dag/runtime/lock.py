"""One run at a time per workspace: an advisory lock on `.quickdraw.lock`.

Every entry point that writes outputs (stage CLIs, the flows) holds it for
its whole run. A second run started meanwhile waits up to `wait_s` seconds
(`--lock-wait`, default 0) and then refuses with the holder's pid, host,
command and start time. The lock is `flock`: the kernel drops it when the
holder exits or is killed, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from quickdraw_dag.errors import WorkspaceBusyError

LOCK_NAME = ".quickdraw.lock"


def _holder(handle: int) -> str:
    """Who holds the lock; the holder writes this right after locking, so allow it a moment."""
    info: dict = {}
    for _ in range(20):
        try:
            info = json.loads(os.pread(handle, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            info = {}
        if info:
            break
        time.sleep(0.05)
    if not info:
        return "another run"
    return f"{info.get('command', 'a run')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('started')})"


@contextmanager
def file_lock(path: Path, wait_s: float, busy: Callable[[int], Exception], poll_s: float = 0.2) -> Iterator[int]:
    """Hold an exclusive `flock` on `path`, waiting at most `wait_s` seconds; yields the open handle.

    Past the wait, raises `busy(handle)` (the handle lets the caller read who holds it). The kernel
    drops the lock when its holder exits or is killed, so a killed holder never leaves it stuck.
    """
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy(handle) from None
                time.sleep(poll_s)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


@contextmanager
def workspace_lock(root: str | Path = ".", wait_s: float = 0.0) -> Iterator[None]:
    """Hold the workspace lock, waiting at most `wait_s` seconds for it."""
    path = Path(root) / LOCK_NAME

    def busy(handle: int) -> Exception:
        return WorkspaceBusyError(
            f"workspace {Path(root).resolve()} is in use by {_holder(handle)}; "
            f"wait for it to finish, or pass --lock-wait SECONDS to wait (lock file {path})"
        )

    with file_lock(path, wait_s, busy) as handle:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
        }
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
