"""The temporary Prefect server of a flow run without PREFECT_API_URL, started and stopped by the flow.

Prefect starts such a server itself on first use, as a child in the flow's
process group, and stops it at exit. Two ways that goes wrong: Ctrl-C in a
terminal signals the whole group, so the server dies first and the flow then
spends a minute retrying to report its end to it; and SIGTERM skips Python's
exit handlers, so the server outlives the flow. Here the flow starts the
server in a session of its own (the terminal's Ctrl-C reaches only the flow),
points itself and its workers at it, and stops it on the way out: after
success, an error, Ctrl-C or SIGTERM (with `interrupt.stop_on_signals`), and
also when the process has to exit at once.
"""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quickdraw_dag import TELEMETRY_OFF
from quickdraw_dag.config.redact import redact
from quickdraw_dag.errors import ConfigError, QuickDrawDagError
from quickdraw_dag.runtime.interrupt import Interrupted, force_exit, on_forced_exit

STARTUP_TIMEOUT_S = 120
# Every server the project starts itself runs with telemetry off, whatever the caller's environment says
# (the package sets it in its own process at import; the server gets it again in case a caller changed it).


def _server_class() -> type:
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class DetachedServer(SubprocessASGIServer):
        """Prefect's temporary server, in a session of its own."""

        _instances: dict[int | None, Any] = {}  # not shared with the servers Prefect starts itself

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # Prefect 3.8's own command (SubprocessASGIServer._run_uvicorn_command), plus start_new_session.
            server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
            return subprocess.Popen(
                args=[
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env={
                    **os.environ,
                    **server_env,
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                    **TELEMETRY_OFF,
                },
                start_new_session=True,
            )

    return DetachedServer


def _kill(process: subprocess.Popen[Any] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=5)


def check_prefect_api() -> str | None:
    """PREFECT_API_URL, once its server answers /health; a ConfigError naming it when not (None: none is set).

    Prefect's client retries a dead API for minutes and then prints a traceback: checked before anything is written.
    """
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    if not url:
        return None
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5.0):
            pass
    except urllib.error.HTTPError:
        return url  # it answered
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(
            f"the Prefect API {redact(url)} (PREFECT_API_URL) is not reachable ({redact(str(reason))[:120]}): "
            "start it (`make prefect-server`), or unset PREFECT_API_URL and the flow starts a temporary server"
        ) from None
    return url


@contextmanager
def temporary_server() -> Iterator[str | None]:
    """Start a temporary server unless PREFECT_API_URL names one; yields its API URL (None when not started)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value():
        yield None
        return
    server = _server_class()()
    unregister = on_forced_exit(lambda: _kill(server.server_process))
    watch = None
    try:
        server.start(timeout=STARTUP_TIMEOUT_S)
        os.environ["PREFECT_API_URL"] = server.api_url  # worker processes inherit it
        watch = ServerWatch(server.server_process)
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            except Interrupted:
                if watch.lost is None:
                    raise
                raise ServiceLost(watch.lost) from None
            finally:
                watch.stop()
                if watch.lost is None:
                    from prefect.logging.handlers import APILogWorker

                    APILogWorker.drain_all(timeout=5)  # the last logs, while the server still listens
    finally:
        if watch is not None:
            watch.stop()
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
        unregister()


class ServiceLost(QuickDrawDagError):
    """The flow's temporary Prefect server ended while the flow ran: the flow stops instead of retrying for minutes."""


class ServerWatch:
    """Polls the temporary server's process; if it ends before `stop`, stops the main thread's work at once.

    Prefect's client would retry every state change for about five minutes and then fail with a traceback,
    though the stages themselves need no server. The stop goes through the same path as SIGTERM (the
    stage stops, writers remove their temporaries), then `temporary_server` says what happened; if the
    flow has not unwound within `GRACE_S` (Prefect retries its crash report), the process exits 1.
    """

    POLL_S = 1.0
    GRACE_S = 10.0  # for the stages to stop and the flow to unwind, before exiting without Prefect's retries

    def __init__(self, process: subprocess.Popen[Any] | None) -> None:
        self.process = process
        self.lost: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True, name="prefect-server-watch")
        if process is not None:
            self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(self.POLL_S):
            code = self.process.poll()
            if code is None:
                continue
            if self.done.is_set():
                return  # stopped on purpose, as the run ended
            self.lost = (
                f"the flow's temporary Prefect server (pid {self.process.pid}) ended during the run (exit {code}): "
                "the flow stopped; stages that finished are kept (`dvc status` lists what is left), run it again"
            )
            print(f"\n{self.lost}", file=sys.stderr, flush=True)
            _thread.interrupt_main(signal.SIGTERM)  # the main thread waits on the stages: stop it as SIGTERM does
            if not self.done.wait(self.GRACE_S):
                # Prefect's engine reports the crash, and its events worker drains, to the dead server with
                # retries (over a minute): exit as a killed stage would (stage outputs are written atomically).
                force_exit(1, "the flow's temporary Prefect server is gone")
            return

    def stop(self) -> None:
        self.done.set()
