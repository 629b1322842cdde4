"""Whether a process still runs: how a later run tells a killed writer from a live one."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time


def process_alive(pid: int) -> bool:
    """True while `pid` exists on this host (owned by us or by someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# prctl(2) option: the signal this process gets when the thread that created it ends (Linux).
_PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: end this worker when its parent ends, however it ends (SIGKILL included).

    A SIGKILLed stage runs no clean-up, and its pool workers used to live on,
    rasterizing for nobody. On Linux the kernel kills the worker
    (PR_SET_PDEATHSIG); everywhere, a watchdog thread exits once the parent
    pid is no longer its parent (the worker was re-parented).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # no clean-up to run: the parent's next run removes what a killed stage left
