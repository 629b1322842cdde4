"""Stopping on SIGINT and SIGTERM: unwind like Ctrl-C, exit 130 or 143, never hang.

Python turns SIGINT into `KeyboardInterrupt`, but SIGTERM (what `kill`,
systemd and schedulers send) kills the process on the spot: no `finally`,
no atexit, so a temporary Prefect server it started keeps running and its
temporary files stay. Inside `stop_on_signals` both signals raise
`Interrupted` (a `KeyboardInterrupt`, so Prefect, Keras and tqdm treat it as
Ctrl-C) in the main thread: the stage stops, writers remove their
temporaries, the caller closes its MLflow run and stops what it started.
If that takes longer than `grace_s`, or a second signal arrives, the
cleanups registered with `on_forced_exit` run and the process exits at once.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 20.0
_FORCED_EXIT_CLEANUPS: list[Callable[[], None]] = []


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a stop signal arrives."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by it (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


def on_forced_exit(cleanup: Callable[[], None]) -> Callable[[], None]:
    """Run `cleanup` if the process has to exit without unwinding; returns a function that unregisters it."""
    _FORCED_EXIT_CLEANUPS.append(cleanup)

    def unregister() -> None:
        if cleanup in _FORCED_EXIT_CLEANUPS:
            _FORCED_EXIT_CLEANUPS.remove(cleanup)

    return unregister


def force_exit(code: int, why: str) -> None:
    """Run the registered cleanups (each at most once, errors ignored) and exit now."""
    print(f"\n{why}: exiting now (exit {code})", file=sys.stderr, flush=True)
    while _FORCED_EXIT_CLEANUPS:
        cleanup = _FORCED_EXIT_CLEANUPS.pop()
        with contextlib.suppress(Exception):  # exiting anyway: one failed cleanup must not stop the others
            cleanup()
    os._exit(code)


def _watchdog(grace_s: float, code: int, done: threading.Event) -> None:
    if not done.wait(grace_s):
        force_exit(code, f"still stopping after {grace_s:.0f} s")


def _swallows_exceptions(frame: FrameType | None, depth: int = 8) -> bool:
    """Whether `frame` runs where Python ignores exceptions: a garbage-collector callback or a finalizer."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None and depth > 0:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame, depth = frame.f_back, depth - 1
    return False


@contextmanager
def stop_on_signals(grace_s: float = GRACE_SECONDS) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` in the main thread for the block (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: dict[str, int] = {}
    done = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        code = 128 + signum
        if _swallows_exceptions(frame):
            # Raised here, `Interrupted` would be printed as "Exception ignored" and lost (a GC callback, a
            # finalizer): the stage would run on to the end and exit 0. Deliver the signal again, just after.
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        if stopping:
            force_exit(code, f"second signal ({signal.Signals(signum).name})")
        stopping["signal"] = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping (cleaning up; a second signal exits at once)",
            file=sys.stderr,
            flush=True,
        )
        threading.Thread(target=_watchdog, args=(grace_s, code, done), daemon=True, name="stop-watchdog").start()
        raise Interrupted(signum)

    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # Python swallows exceptions raised in weakref callbacks, GC callbacks and finalizers ("Exception
        # ignored in ..."): a stop raised there would be lost and the work would finish. Deliver it again.
        if isinstance(info.exc_value, Interrupted):
            stopping.clear()
            threading.Timer(0.05, os.kill, (os.getpid(), info.exc_value.signum)).start()
            return
        previous_hook(info)

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for number, handler in previous.items():
            signal.signal(number, handler)
        if not stopping:
            done.set()  # after a stop, the watchdog stays until the process has exited


def ending_status(error: BaseException) -> str:
    """KILLED for an interrupt (Ctrl-C, a signal turned into an exception), FAILED for anything else."""
    return "KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED"
