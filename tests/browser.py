"""Headless Chromium for tests, driven through chromedriver's W3C WebDriver HTTP protocol.

No Selenium: the few commands the tests need (open a page, run a script,
find an element, pointer actions, screenshots) are plain HTTP calls to a
chromedriver this module starts on 127.0.0.1. The `browser` fixture in
`tests/conftest.py` yields a `Browser`; without the binaries it skips with
the reason (and fails under CI=true, where `.ci/run` installs them).

    def test_page(browser):
        browser.get("http://127.0.0.1:5002/")
        browser.wait_for("return document.title")
        browser.screenshot(path)
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Debian's names; the packages `.ci/run` installs.
APT_PACKAGES = "chromium chromium-driver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
HEADLESS_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
)


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed; the message says what to install."""


def find_binaries() -> tuple[str, str]:
    """(chromium, chromedriver): from CHROMIUM_BIN / CHROMEDRIVER_BIN, else PATH and /usr/bin."""
    search = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/bin"
    chromium = os.environ.get("CHROMIUM_BIN") or next(
        (found for name in CHROMIUM_NAMES if (found := shutil.which(name, path=search))), None
    )
    driver = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver", path=search)
    missing = [
        name
        for name, path in (("chromium", chromium), ("chromedriver", driver))
        if not path or not Path(path).is_file()
    ]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} not found (apt-get install {APT_PACKAGES}, "
            "or set CHROMIUM_BIN / CHROMEDRIVER_BIN)"
        )
    return str(chromium), str(driver)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Browser:
    """One headless Chromium session."""

    def __init__(self, driver_url: str, session_id: str, scratch: Path | None = None) -> None:
        self.base = f"{driver_url}/session/{session_id}"
        self.http = requests.Session()
        self.scratch = scratch  # its profile and temporary files, removed when the session ends

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        response = self.http.request(method, f"{self.base}{path}", json=payload, timeout=timeout)
        value = response.json().get("value")
        if response.status_code != 200:
            message = value.get("message", value) if isinstance(value, dict) else value
            raise RuntimeError(f"WebDriver {method} {path}: {message}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def resize(self, width: int, height: int) -> None:
        """Set the window's size (wide grids draw only the columns in sight)."""
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def execute(self, script: str, *args: Any) -> Any:
        """Run `script` (a function body: `return ...`) in the page; returns its value."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def execute_async(self, script: str, *args: Any) -> Any:
        """Run `script`; it calls `arguments[arguments.length - 1](value)` when done."""
        return self._call("POST", "/execute/async", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *args: Any, timeout: float = 30) -> Any:
        """Poll `script` until it returns something truthy; returns that."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {script}")
            time.sleep(0.05)

    def find(self, css: str) -> dict[str, str]:
        """An element reference (usable as an action's origin or a script argument)."""
        return self._call("POST", "/element", {"using": "css selector", "value": css})

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)[ELEMENT]}/click", {})

    def pointer_strokes(self, strokes: Sequence[Sequence[Sequence[float]]], pointer: str = "mouse") -> None:
        """Draw `strokes` (viewport pixels) with one pointer: down, a move per point, up, per stroke."""
        actions: list[dict[str, Any]] = []
        for xs, ys, *_ in strokes:
            actions.append({"type": "pointerMove", "x": int(xs[0]), "y": int(ys[0]), "duration": 0})
            actions.append({"type": "pointerDown", "button": 0})
            for x, y in zip(xs[1:], ys[1:]):
                actions.append({"type": "pointerMove", "x": int(x), "y": int(y), "duration": 0})
            actions.append({"type": "pointerUp", "button": 0})
        source = {"type": "pointer", "id": f"{pointer}-1", "parameters": {"pointerType": pointer}, "actions": actions}
        self._call("POST", "/actions", {"actions": [source]}, timeout=120)
        self._call("DELETE", "/actions")

    def screenshot(self, path: Path) -> Path:
        """The visible viewport as a PNG at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path

    def console_errors(self) -> list[str]:
        """Severe entries of the page's console log so far (scripts that failed, resources refused)."""
        entries = self.http.post(f"{self.base}/se/log", json={"type": "browser"}, timeout=30).json().get("value") or []
        return [entry["message"] for entry in entries if entry.get("level") == "SEVERE"]


@contextmanager
def chromium(window: tuple[int, int] = (1200, 1000)) -> Iterator[Browser]:
    """Start chromedriver and a headless Chromium; both are stopped on exit. Raises `BrowserMissing`."""
    binary, driver = find_binaries()
    port = free_port()
    # The profile, and Chromium's own temporary files (its TMPDIR: a killed renderer leaves a scoped_dir
    # behind in /tmp otherwise, one a suite run), in one folder removed at the end.
    scratch = Path(tempfile.mkdtemp(prefix="chromium-"))
    profile, temporary = scratch / "profile", scratch / "tmp"
    profile.mkdir()
    temporary.mkdir()
    log = tempfile.NamedTemporaryFile(prefix="chromedriver-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [driver, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TMPDIR": str(temporary)},
    )
    url = f"http://127.0.0.1:{port}"
    session_id = None
    failed = True
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/status", timeout=2).json()["value"].get("ready"):
                    break
            except (requests.RequestException, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver did not start; see {log.name}")
            time.sleep(0.1)
        args = [*HEADLESS_ARGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        created = requests.post(f"{url}/session", json={"capabilities": {"alwaysMatch": capabilities}}, timeout=90)
        value = created.json()["value"]
        if created.status_code != 200:
            raise RuntimeError(f"Chromium did not start: {value.get('message', value)}")
        session_id = value["sessionId"]
        yield Browser(url, session_id, scratch)
        failed = False
    finally:
        if session_id is not None:
            with suppress(requests.RequestException):
                requests.delete(f"{url}/session/{session_id}", timeout=30)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if not failed:  # kept when something went wrong: the error names it
            os.unlink(log.name)
        shutil.rmtree(scratch, ignore_errors=True)
