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
import functools
import gc
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 20.0
REDELIVERY_SECONDS = 0.02  # how soon a deferred stop is tried again
# A deferred stop is retried with a signal of its own, so that a user's second SIGTERM or Ctrl-C is never
# taken for a retry (Python merges the signals of one number that arrive before its handler runs). Where
# there are no real-time signals, the stop signal itself is sent again, and counted.
REDELIVERY_SIGNAL: int | None = signal.SIGRTMAX - 2 if hasattr(signal, "SIGRTMAX") else None
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


@functools.cache
def _fragile_package_dirs() -> tuple[str, ...]:
    """Where the packages live that an exception raised at an arbitrary line can corrupt (TensorFlow)."""
    spec = importlib.util.find_spec("tensorflow")
    locations = list(spec.submodule_search_locations or []) if spec else []
    # Both spellings: a virtual environment reached through a symbolic link names its files by the link.
    return tuple({os.path.join(path, "") for location in locations for path in (location, os.path.realpath(location))})


def _inside_fragile_code(frame: FrameType | None) -> bool:
    """Whether TensorFlow's Python is anywhere on the stack: raised there, a stop breaks its state.

    Measured: raised inside a device scope's entry, it became "RuntimeError: Exiting device scope without
    proper scope nesting" (exit 1, run FAILED); raised in an import that TensorFlow's C++ makes, it was
    printed as a SystemError and dropped, and the stage ran on to exit 0. Keras's own loops are plain
    Python and unwind cleanly; they check for a deferred stop after every batch (`StopWhenSignalled`).
    """
    fragile = _fragile_package_dirs()
    while fragile and frame is not None:
        if frame.f_code.co_filename.startswith(fragile):
            return True
        frame = frame.f_back
    return False


@dataclass
class _Stop:
    """The state of one `stop_on_signals` block: the stop received, and our own redeliveries in flight."""

    signum: int | None = None
    raised: bool = False
    sent: int = 0  # without REDELIVERY_SIGNAL: stop signals we sent and not yet handled
    closed: bool = False
    timers: list[threading.Timer] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def deliver_later(self) -> None:
        """Try again shortly: by then the main thread may have left the code it could not stop in."""
        timer = threading.Timer(REDELIVERY_SECONDS, self._redeliver)
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def _redeliver(self) -> None:
        if self.closed or self.signum is None:
            return
        if REDELIVERY_SIGNAL is None:
            self.sent += 1
        # To the main thread itself: sent to the process, another thread may take it, and a main thread
        # blocked in a system call (a sleep, a lock) would not be woken to run the handler.
        signal.pthread_kill(threading.main_thread().ident or 0, REDELIVERY_SIGNAL or self.signum)

    def close(self) -> None:
        """No retry after this returns: a retry signal arriving once its handler is gone would kill the process."""
        self.closed = True
        for timer in self.timers:
            timer.cancel()
        for timer in self.timers:
            if timer is not threading.current_thread():
                timer.join()

    def interrupted(self) -> Interrupted:
        assert self.signum is not None
        self.raised = True
        return Interrupted(self.signum)


_ACTIVE: list[_Stop] = []  # the main thread's `stop_on_signals` block, if one is open


def raise_if_stopping() -> None:
    """At a safe point of the work, raise the stop a signal asked for, if it has not stopped the work yet.

    Called after every Keras batch (`StopWhenSignalled`) and when the block's work has returned. Work that
    reaches one after a signal was not stopped by it: the stop was deferred out of TensorFlow's code, or it
    was raised where C code dropped it (a `print` between its two writes did, once in a few runs).
    """
    if _ACTIVE and threading.current_thread() is threading.main_thread():
        stop = _ACTIVE[-1]
        if stop.signum is not None:
            raise stop.interrupted()


@contextmanager
def stop_on_signals(grace_s: float = GRACE_SECONDS) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` in the main thread for the block (elsewhere: no change).

    Where raising would be lost or would corrupt a library (a finalizer, TensorFlow's code), the stop is
    deferred: the signal is sent again every few milliseconds until it lands in safe code, Keras raises it
    after the batch, and the block raises it when its work returns. The grace period runs from the first
    signal, deferred or not.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = _Stop()

    def take(frame: FrameType | None) -> None:
        """Raise the stop here, or defer it if here is a finalizer or TensorFlow's code."""
        if stop.raised:
            return  # already unwinding
        if _swallows_exceptions(frame) or _inside_fragile_code(frame):
            stop.deliver_later()
            return
        raise stop.interrupted()

    def handle(signum: int, frame: FrameType | None) -> None:
        code = 128 + signum
        if stop.sent:  # one of our own retries (only without REDELIVERY_SIGNAL)
            stop.sent -= 1
            take(frame)
            return
        if stop.signum is not None:
            force_exit(code, f"second signal ({signal.Signals(signum).name})")
        stop.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping (cleaning up; a second signal exits at once)",
            file=sys.stderr,
            flush=True,
        )
        threading.Thread(target=_watchdog, args=(grace_s, code, stop.done), daemon=True, name="stop-watchdog").start()
        take(frame)

    def retry(signum: int, frame: FrameType | None) -> None:
        take(frame)

    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # Python swallows exceptions raised in weakref callbacks, GC callbacks and finalizers ("Exception
        # ignored in ..."): a stop raised there would be lost and the work would finish. Deliver it again.
        if isinstance(info.exc_value, Interrupted) and stop.signum is not None:
            stop.raised = False
            stop.deliver_later()
            return
        previous_hook(info)

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    if REDELIVERY_SIGNAL is not None:
        previous[REDELIVERY_SIGNAL] = signal.signal(REDELIVERY_SIGNAL, retry)
    sys.unraisablehook = unraisable
    _ACTIVE.append(stop)
    try:
        yield
    finally:
        _ACTIVE.remove(stop)
        stop.close()
        sys.unraisablehook = previous_hook
        for number, handler in previous.items():
            signal.signal(number, handler)
        if stop.signum is None:
            stop.done.set()  # after a stop, the watchdog stays until the process has exited


def ending_status(error: BaseException) -> str:
    """KILLED for an interrupt (Ctrl-C, a signal turned into an exception), FAILED for anything else."""
    return "KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED"
