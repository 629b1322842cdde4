"""Robust HTTP download: stream to a temporary file, resume, retry, validate.

The file grows under `<dest>.part`; an interrupted transfer resumes from its
last byte with an HTTP Range request; 5xx answers, timeouts and dropped
connections are retried with exponential backoff; the length is checked
against what the server declared, against the object's MD5 when the server
sends one (Google Cloud Storage does, in `x-goog-hash`), and the whole file
is validated before it is renamed to `dest`. So `dest` either does not exist
or is complete.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth
import urllib3

from quickdraw_dag.runtime.diskspace import disk_full_error, ensure_free, is_disk_full
from quickdraw_dag.config.schema import DOWNLOAD_AUTH_ENV
from quickdraw_dag.errors import ConfigError, DataError, FetchError, OfflineError
from quickdraw_dag.data.hashing import file_digest
from quickdraw_dag.runtime.progress import progress_bar
from quickdraw_dag.config.redact import redact

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 16
# One category file: Google's largest binary file is under 1 GiB; a server that streams without end stops here.
MAX_DOWNLOAD_BYTES = 4 << 30
MAX_DOWNLOAD_ENV = "QUICKDRAW_MAX_DOWNLOAD_BYTES"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    timeout_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    bytes: int
    sha256: str
    attempts: int
    validation: Any = None  # what `validate` returned for the complete file


class _Transient(Exception):
    """A failure worth retrying (the server or the network, not the request)."""


def download(
    url: str,
    dest: Path,
    *,
    policy: RetryPolicy = RetryPolicy(),
    validate: Callable[[Path], Any] | None = None,
    label: str | None = None,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Download `url` to `dest` atomically; raises `FetchError` when it cannot."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    cap = download_cap()
    http = session or requests.Session()
    if http.auth is None:
        http.auth = auth_from_environment()
    attempt = 0
    last_problem = ""
    while True:
        attempt += 1
        try:
            expected_md5 = _transfer(http, url, part, policy.timeout_s, label or dest.name, cap)
            if expected_md5 is not None and file_digest(part, "md5") != expected_md5:
                # A wrong Content-Length or a proxy's cut can end a file at a
                # record boundary, where parsing cannot tell; the hash can.
                part.unlink(missing_ok=True)
                raise _Transient("content does not match the server's MD5 (x-goog-hash); restarting")
            validation = None
            if validate is not None:
                try:
                    validation = validate(part)
                except DataError as error:
                    # Wrong content (an HTML error page, a cut file served as
                    # whole): start again from byte 0 rather than resume it.
                    part.unlink(missing_ok=True)
                    raise _Transient(f"downloaded file is not valid: {error}") from None
            digest = file_digest(part, "sha256")
            size = part.stat().st_size
            os.replace(part, dest)
            return DownloadResult(dest, size, digest, attempt, validation)
        except (
            _Transient,
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as problem:
            last_problem = _describe(problem)
            if _is_offline(problem):
                raise OfflineError(_offline_message(url)) from None
            if attempt > policy.retries:
                break
            wait = policy.delay(attempt)
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.1fs",
                label or redact(url),
                attempt,
                redact(last_problem),
                wait,
            )
            time.sleep(wait)
    raise FetchError(
        f"download of {redact(url)} failed after {attempt} attempt(s): {redact(last_problem)}. "
        f"Nothing was written to {dest}; the partial file {part.name} is kept so a rerun resumes."
    )


def auth_from_environment() -> Any:
    """The download credential from `QUICKDRAW_DOWNLOAD_AUTH`, never from params; None leaves `~/.netrc` to requests.

    `user:password` is HTTP Basic; a value with a space (`Bearer <token>`) is sent as the Authorization header.
    requests drops either when a redirect leads to another host.
    """
    value = os.environ.get(DOWNLOAD_AUTH_ENV, "").strip()
    if not value:
        return None
    if " " in value:
        return _AuthorizationHeader(value)
    user, sep, password = value.partition(":")
    if not sep:
        raise ConfigError(f"{DOWNLOAD_AUTH_ENV}: expected user:password or '<scheme> <credentials>' (e.g. Bearer ...)")
    return requests.auth.HTTPBasicAuth(user, password)


class _AuthorizationHeader(requests.auth.AuthBase):
    """A whole Authorization header value (`Bearer <token>`), as requests' auth hook."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.value
        return request


def _transfer(http: requests.Session, url: str, part: Path, timeout_s: float, label: str, cap: int) -> str | None:
    """One attempt: resume `part` if it has bytes, else start it; returns the object's MD5 if sent."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {"Accept-Encoding": "identity"}
    with http.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
        status = response.status_code
        expected_md5 = _md5_from_goog_hash(response.headers.get("x-goog-hash", ""))
        if status == 416 and have:
            # Nothing after byte `have`: either complete already or stale.
            total = _total_from_content_range(response.headers.get("Content-Range", ""))
            if total == have:
                return expected_md5
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 for a resume at byte {have}; restarting")
        if status >= 500 or status in (408, 429):
            raise _Transient(f"HTTP {status} {response.reason}")
        if status in (401, 403):
            raise FetchError(
                f"{redact(url)}: HTTP {status} {response.reason} (not retried): the server wants credentials; "
                f"set {DOWNLOAD_AUTH_ENV}=user:password (or 'Bearer <token>') or add the host to ~/.netrc"
            )
        if status not in (200, 206):
            raise FetchError(f"{redact(url)}: HTTP {status} {response.reason} (not retried)")
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Transient(f"server resumed at byte {start}, expected {have}; restarting")
            mode = "ab"
        else:
            have = 0
            mode = "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > cap:
            part.unlink(missing_ok=True)
            raise FetchError(_too_large(url, f"the server announces {total} bytes", cap))
        if total is not None:
            ensure_free(part.parent, total - have, f"download of {label}")  # the server said how much is coming
        with (
            open(part, mode) as handle,
            progress_bar(total=total, initial=have, desc=label, unit="B", unit_scale=True) as bar,
        ):
            try:
                # read1 hands over whatever arrived, so bytes received before
                # a dropped connection are kept and the resume starts after them.
                while chunk := response.raw.read1(CHUNK_BYTES):
                    if handle.tell() + len(chunk) > cap:  # no or a false Content-Length: never past the cap
                        handle.close()
                        part.unlink(missing_ok=True)
                        raise FetchError(_too_large(url, f"it sent more than {cap} bytes", cap))
                    handle.write(chunk)
                    bar.update(len(chunk))
            except (urllib3.exceptions.HTTPError, OSError) as error:
                if is_disk_full(error):  # a full disk is not a network problem: no retry
                    handle.close()
                    part.unlink(missing_ok=True)  # so that "nothing was written there" is true
                    raise disk_full_error(part, total) from None
                handle.flush()
                got = handle.tell()
                raise _Transient(
                    f"connection closed at byte {got} of {total if total is not None else '?'} ({type(error).__name__})"
                ) from error
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Transient(f"connection closed at byte {size} of {total}")
    if total is not None and size > total:
        part.unlink(missing_ok=True)
        raise _Transient(f"received {size} bytes, more than the declared {total}; restarting")
    return expected_md5


def download_cap() -> int:
    """The most bytes one file may have: MAX_DOWNLOAD_BYTES, or QUICKDRAW_MAX_DOWNLOAD_BYTES when set."""
    value = os.environ.get(MAX_DOWNLOAD_ENV, "").strip()
    if not value:
        return MAX_DOWNLOAD_BYTES
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{MAX_DOWNLOAD_ENV}: expected a positive number of bytes (got {value[:40]!r})")
    return int(value)


def _too_large(url: str, what: str, cap: int) -> str:
    return (
        f"{redact(url)}: {what}, more than the {cap} bytes allowed for one file; stopped and removed the partial "
        f"file (raise {MAX_DOWNLOAD_ENV} if the file really is that large)"
    )


def _md5_from_goog_hash(value: str) -> str | None:
    """Hex MD5 from `x-goog-hash: crc32c=…,md5=<base64>` (absent for composite objects)."""
    import base64
    import binascii

    for item in value.split(","):
        name, _, encoded = item.strip().partition("=")
        if name == "md5" and encoded:
            try:
                return base64.b64decode(encoded, validate=True).hex()
            except (binascii.Error, ValueError):
                return None
    return None


def _parse_content_range(value: str) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if not match:
        raise _Transient(f"partial response without a valid Content-Range ({value!r})")
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _total_from_content_range(value: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", value.strip())
    return int(match.group(1)) if match else None


def _describe(problem: BaseException) -> str:
    text = str(problem)
    return text if len(text) < 300 else text[:300] + "…"


REACH_TIMEOUT_S = 10.0  # a connection to Google's bucket opens in well under a second when online


def ensure_reachable(url: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise `OfflineError` at once when the download host (or the proxy for it) cannot be reached.

    Checked once before any download starts (and before a flow writes anything), so an offline run
    says so once, not once per category: the host name must resolve and a TCP connection must open.
    A name that resolves on a machine without a route out (a cached DNS answer, a captive network)
    is offline too.
    """
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = getproxies().get(parts.scheme) if not proxy_bypass(host) else None
    if proxy:  # downloads go through the proxy: it is what must answer
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or host, proxied.port or 80
    try:
        socket.getaddrinfo(host, port)
    except (socket.gaierror, UnicodeError):
        raise OfflineError(_offline_message(url, "the host name does not resolve")) from None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except TimeoutError:
        raise OfflineError(_offline_message(url, f"no answer from {host}:{port} within {timeout_s:g}s")) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OfflineError(_offline_message(url, f"{host}:{port}: {reason.lower()}")) from None


def _is_offline(problem: BaseException) -> bool:
    """True when the host name cannot be resolved: retrying will not help."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [problem]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return True
        stack.extend(
            [item.__cause__, item.__context__, *[a for a in getattr(item, "args", ()) if isinstance(a, BaseException)]]
        )
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return "Name or service not known" in str(problem) or "Failed to resolve" in str(problem)


def _offline_message(url: str, why: str = "the host name does not resolve") -> str:
    url = redact(url)
    host = urlsplit(url).hostname
    return (
        f"cannot reach {host} ({why}) to download {url}.\n"
        "The 'quickdraw' source downloads from Google's bucket and needs the internet. "
        "To work offline, use the real drawings that ship with the project:\n"
        "  make run ARGS='--set data.source=samples/quickdraw'\n"
        "or point data.source at a folder of Google's files (<name>.bin, <name>.ndjson, "
        "full_simplified_<name>.ndjson, full_raw_<name>.ndjson, <name>.npy, full_numpy_bitmap_<name>.npy)."
    )
