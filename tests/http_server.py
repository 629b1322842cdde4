"""A real local HTTP server for download tests, with injectable faults.

Serves byte strings by path, honours Range requests like Google's bucket,
and before answering each request pops the next fault planned for its path:

- ("status", 500): answer with that status and a short body;
- ("drop", n): declare the full length, send n bytes of the body, hang up;
- ("truncate", n): as "drop" but for every request from now on;
- ("slow", s): wait s seconds before answering (longer than the client's timeout);
- ("length", k): declare a Content-Length k bytes short, send everything, hang up;
- ("html200",): an HTML error page with status 200, as some proxies and portals do;
- ("trickle", n, s): send the body n bytes at a time, s seconds apart (a slow link);
- ("endless", n): no Content-Length, then n-byte blocks without end (until the client hangs up).

With `require_authorization` set, a request without that Authorization header gets 401.

Like Google Cloud Storage, every answer carries the whole object's MD5 in
`x-goog-hash` (unless `send_md5` is off).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultyServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, deque] = defaultdict(deque)
        self.sticky: dict[str, tuple] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.send_md5 = True
        # When set, a request without exactly this Authorization header gets 401 (a private mirror).
        self.require_authorization: str | None = None
        self.authorizations: list[str | None] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def plan(self, path: str, *faults: tuple) -> None:
        self.faults[path].extend(faults)

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                # the client may give up (its timeout), as a real client does
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer()

            def _answer(self) -> None:
                path = self.path.lstrip("/").replace("%20", " ")
                owner.requests.append((path, self.headers.get("Range")))
                owner.authorizations.append(self.headers.get("Authorization"))
                if owner.require_authorization and self.headers.get("Authorization") != owner.require_authorization:
                    return self._plain(401, b"unauthorized")
                body = owner.files.get(path)
                if body is None:
                    return self._plain(404, b"not found")
                fault = owner.faults[path].popleft() if owner.faults[path] else owner.sticky.get(path)
                if fault and fault[0] == "slow":
                    time.sleep(fault[1])
                if fault and fault[0] == "status":
                    return self._plain(fault[1], b"<html>server error</html>")
                if fault and fault[0] == "endless":
                    return self._endless(fault[1])
                if fault and fault[0] == "html200":
                    return self._plain(200, b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>")
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                if owner.send_md5:
                    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
                    self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={md5}")
                declared = len(payload) - fault[1] if fault and fault[0] == "length" else len(payload)
                self.send_header("Content-Length", str(max(0, declared)))
                self.end_headers()
                if fault and fault[0] == "length":
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault and fault[0] in ("drop", "truncate"):
                    self.wfile.write(payload[: fault[1]])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault and fault[0] == "trickle":
                    for at in range(0, len(payload), fault[1]):
                        self.wfile.write(payload[at : at + fault[1]])
                        self.wfile.flush()
                        time.sleep(fault[2])
                    return
                self.wfile.write(payload)

            def _endless(self, chunk: int) -> None:
                """200 with no Content-Length, then bytes until the client hangs up (a broken or hostile server)."""
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                block = b"\0" * chunk
                for _ in range(1 << 20):  # 64 GiB at 64 KiB: the client stops first
                    self.wfile.write(block)
                owner.endless_done = True

            def _plain(self, status: int, text: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        return Handler

    @contextmanager
    def running(self) -> Iterator[FaultyServer]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
