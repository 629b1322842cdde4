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

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quickdraw_dag import TELEMETRY_OFF
from quickdraw_dag.config.redact import redact
from quickdraw_dag.errors import ConfigError
from quickdraw_dag.runtime.interrupt import on_forced_exit

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
    try:
        server.start(timeout=STARTUP_TIMEOUT_S)
        os.environ["PREFECT_API_URL"] = server.api_url  # worker processes inherit it
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)  # the last logs, while the server still listens
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
        unregister()
