"""play: a page to draw on, with the model guessing live (Quick, Draw!'s game, with your model).

    python -m quickdraw_dag.serving.server [--model URI] [--port 5002] [--save [--save-dir data/user]]

Serves, on 127.0.0.1 only unless told otherwise, the page and its script
and style (all local: nothing is fetched from elsewhere, so it works
offline) and a small JSON API:

- `GET /api/model`: which model answers (name, version, alias, test accuracy, labels);
- `POST /api/guess` with `{"strokes": [[xs, ys, ts], ...], "format": "raw"}`
  (or simplified strokes, or an `image`): the top-3 `label`/`probability`,
  through the same code as the MLflow pyfunc (`pyfunc.classify_rows`);
- `POST /api/save` with `{"label": ..., "strokes": ...}`, only with `--save`:
  appends the drawing to `<save-dir>/<label>.ndjson` in Google's raw format
  (atomically: the file is rewritten under a temporary name and renamed),
  which `data.source: data/user` reads back like any of Google's files.

Only this page may call the API: every request must be addressed to this
machine by name (no DNS rebinding), a POST must come from the page's own
origin (`Origin`, `Sec-Fetch-Site`) with a JSON body (a cross-site form or
`text/plain` fetch is refused before its body is read), and a save must carry
the token the page got from `/api/model`. A saved line passes the fetch
stage's own ndjson check first. Bodies need a Content-Length up to
`MAX_BODY`; a connection idle or half-sent for `SOCKET_TIMEOUT` seconds is
closed, and at most `MAX_CONNECTIONS` are served at once (more get a 503
without a thread). Every refusal is a 4xx (or 503, 507) with a one-line
`{"error": ...}`.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import socket
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from mlflow.exceptions import MlflowException

from quickdraw_dag.config.schema import OFFICIAL_CATEGORIES
from quickdraw_dag.data.formats.ndjson import MAX_LINE_BYTES, read_record
from quickdraw_dag.errors import QuickDrawDagError, clip, excerpt
from quickdraw_dag.runtime.atomic import write_bytes_atomic
from quickdraw_dag.runtime.cli import configure_logging
from quickdraw_dag.serving.classifier import TOP_K
from quickdraw_dag.serving.pyfunc import classify_rows
from quickdraw_dag.serving.registry import DEFAULT_MODEL_URI, ServedModel, load_served_model

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
PAGES = {  # the only files served: no path from a request ever reaches the file system
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
MAX_BODY = 4 << 20  # bytes: a long, detailed drawing is well under 1 MB of JSON
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
DEFAULT_PORT = 5002
DEFAULT_SAVE_DIR = Path("data/user")
DEFAULT_SAVE_LIMIT_MB = 64  # all saved files together: about 30,000 drawings of a person's size
# Seconds a connection may sit idle or half-sent. The page guesses every 120 ms while one draws and
# reconnects by itself after a pause, so this only ends connections nobody uses.
SOCKET_TIMEOUT = 20.0
MAX_CONNECTIONS = 32  # served at once; a browser opens at most 6 to one host
SAVE_TOKEN_HEADER = "X-Save-Token"
SAVING_OFF = "saving is off: start the page with --save"
SAME_ORIGIN_FETCHES = ("same-origin", "none")  # Sec-Fetch-Site of the page's own fetches, or typed by hand


class RequestRefused(Exception):
    """A request answered with `status` and a one-line `message`."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Game:
    """What the page's API does: guess, describe the model, save drawings."""

    def __init__(
        self, served: ServedModel, save_dir: Path | None = None, save_limit: int = DEFAULT_SAVE_LIMIT_MB << 20
    ) -> None:
        self.served = served
        self.save_dir = save_dir
        self.save_limit = save_limit
        self.save_token = secrets.token_urlsafe(24)  # handed to the page only: another site cannot read it
        self._save_lock = threading.Lock()

    def model(self) -> dict[str, Any]:
        description = {**self.served.describe(), "save": self.save_dir is not None, "top_k": TOP_K}
        if self.save_dir is not None:
            description["save_token"] = self.save_token
        return description

    def guess(self, body: dict[str, Any]) -> dict[str, Any]:
        return classify_rows(self.served.classifier, [body], TOP_K)[0]

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append one drawing to `<save_dir>/<label>.ndjson` in Google's raw format, checked as fetch reads it."""
        if self.save_dir is None:
            raise RequestRefused(HTTPStatus.FORBIDDEN, SAVING_OFF)
        label = body.get("label")
        if not isinstance(label, str) or label not in OFFICIAL_CATEGORIES:
            raise ValueError(f"label {excerpt(label)} is not one of Quick, Draw!'s category names")
        record = {
            "word": label,
            "countrycode": "",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
            "recognized": False,  # set below, once the drawing is known to be one
            "key_id": str(secrets.randbits(63)),
            "drawing": body.get("strokes"),
        }
        line = orjson.dumps(record)
        if len(line) >= MAX_LINE_BYTES:
            raise RequestRefused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"this drawing takes {len(line)} bytes, over the {MAX_LINE_BYTES} of one line the fetch stage reads",
            )
        try:  # the fetch stage's own check of a raw ndjson line: what is saved can be trained on
            drawing = read_record(line, "raw", category=label)
        except ValueError as error:
            raise ValueError(f"strokes: {error}") from None
        images = self.served.classifier.images_from_strokes([drawing])
        # Google's meaning: whether the game recognized the drawing (here: the model's first guess)
        record["recognized"] = self.served.classifier.classify(images, 1)[0]["label"] == label
        return self._append(label, orjson.dumps(record) + b"\n", record["recognized"])

    def _append(self, label: str, line: bytes, recognized: bool) -> dict[str, Any]:
        assert self.save_dir is not None
        path = self.save_dir / f"{label}.ndjson"
        with self._save_lock:
            saved = sum(f.stat().st_size for f in self.save_dir.glob("*.ndjson")) if self.save_dir.is_dir() else 0
            if saved + len(line) > self.save_limit:
                raise RequestRefused(
                    HTTPStatus.INSUFFICIENT_STORAGE,
                    f"{self.save_dir} holds {saved} bytes of drawings, and this one would pass the "
                    f"{self.save_limit} bytes allowed (--save-limit-mb); move them elsewhere to save more",
                )
            try:
                before = path.read_bytes() if path.exists() else b""
                if before and not before.endswith(b"\n"):
                    before += b"\n"
                write_bytes_atomic(path, before + line)
            except OSError as error:  # a full disk, a read-only folder: the file stays as it was
                raise RequestRefused(
                    HTTPStatus.INSUFFICIENT_STORAGE, f"cannot save into {path} ({error.strerror or error})"
                ) from None
            count = sum(1 for kept in before.splitlines() if kept.strip()) + 1
        return {"saved": str(path), "drawings": count, "recognized": recognized}


def make_handler(game: Game, timeout: float = SOCKET_TIMEOUT) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection for a whole drawing session
        # Headers and body go out as two writes; with Nagle's algorithm the second waits for the
        # client's delayed ACK, adding 40 ms to every guess.
        disable_nagle_algorithm = True
        server_version = "quickdraw-play"

        def setup(self) -> None:
            self.timeout = timeout  # the socket's: a half-sent request or an idle connection ends
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.debug("%s " + format, self.client_address[0], *args)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not self._from_loopback():
                return
            if self.path == "/api/model":
                self._json(HTTPStatus.OK, game.model())
            elif self.path in PAGES:
                name, content_type = PAGES[self.path]
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), content_type)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {clip(self.path)}"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if not self._from_loopback():
                return
            routes = {"/api/guess": game.guess, "/api/save": game.save}
            self.body_read = False
            try:
                if self.path not in routes:
                    raise RequestRefused(HTTPStatus.NOT_FOUND, f"no endpoint {clip(self.path)}")
                self._check_origin()
                self._check_json_type()
                if self.path == "/api/save":
                    self._check_save_token()
                body = self._read_json_object()
                self._json(HTTPStatus.OK, routes[self.path](body))
            except RequestRefused as refused:
                self._error(refused.status, str(refused))
            except (ValueError, MlflowException) as error:  # orjson's decode error is a ValueError
                self._error(HTTPStatus.BAD_REQUEST, error.message if isinstance(error, MlflowException) else str(error))
            except TimeoutError:
                raise  # a half-sent body: http.server closes the connection
            except Exception as error:  # noqa: BLE001 - never a traceback to the client; the log has it
                log.exception("play: %s failed", self.path)
                self._error(
                    HTTPStatus.INTERNAL_SERVER_ERROR, f"the server failed on this request ({type(error).__name__})"
                )

        def _check_origin(self) -> None:
            """Only the page's own fetches: a cross-site form or fetch names its origin or its site."""
            site = self.headers.get("Sec-Fetch-Site")
            if site is not None and site not in SAME_ORIGIN_FETCHES:
                raise RequestRefused(HTTPStatus.FORBIDDEN, f"a request from another site ({clip(site)}) is refused")
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                raise RequestRefused(HTTPStatus.FORBIDDEN, f"origin {excerpt(origin)} is not this page's")

        def _check_save_token(self) -> None:
            if game.save_dir is None:
                raise RequestRefused(HTTPStatus.FORBIDDEN, SAVING_OFF)
            sent = self.headers.get(SAVE_TOKEN_HEADER) or ""
            if not secrets.compare_digest(sent.encode(), game.save_token.encode()):
                raise RequestRefused(
                    HTTPStatus.FORBIDDEN,
                    f"a save needs the page's {SAVE_TOKEN_HEADER} (from /api/model): reload the page",
                )

        def _check_json_type(self) -> None:
            """JSON only: a browser sends it cross-origin only after a preflight, which this server never allows."""
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise RequestRefused(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"the body must be application/json, not {excerpt(content_type)}"
                )

        def _read_json_object(self) -> dict[str, Any]:
            """The body, of the length declared, at most MAX_BODY; refused before it is read otherwise."""
            if self.headers.get("Transfer-Encoding"):
                raise RequestRefused(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
            lengths = self.headers.get_all("Content-Length") or []
            if not lengths:
                raise RequestRefused(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
            if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
                raise RequestRefused(
                    HTTPStatus.BAD_REQUEST, f"Content-Length {excerpt(', '.join(lengths))} is not a byte count"
                )
            length = int(lengths[0])
            if length > MAX_BODY:
                raise RequestRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes, over {MAX_BODY}")
            data = self.rfile.read(length)
            self.body_read = True
            if len(data) < length:
                raise RequestRefused(HTTPStatus.BAD_REQUEST, f"the body ended after {len(data)} of {length} bytes")
            body = orjson.loads(data)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            return body

        def _from_loopback(self) -> bool:
            """Refuse requests addressed to another host name (a DNS-rebinding page cannot reach the API)."""
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host in LOOPBACK_NAMES or self.server.server_address[0] not in ("127.0.0.1", "::1"):
                return True
            self._error(HTTPStatus.FORBIDDEN, f"host {excerpt(host)} is not this machine")
            return False

        def _error(self, status: HTTPStatus, message: str) -> None:
            if not getattr(self, "body_read", True):
                self.close_connection = True  # the body is left unread: this connection cannot carry another
            self._json(status, {"error": " ".join(message.split())})

        def _json(self, status: HTTPStatus, value: Any) -> None:
            self._send(status, orjson.dumps(value), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            # Everything comes from this server: no CDN, no inline script, works offline.
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

    return Handler


class PageServer(ThreadingHTTPServer):
    """http.server's threaded server, with at most `max_connections` served at once.

    One more connection is answered 503 from the accepting thread and closed: a few hundred
    half-sent requests hold no more than `max_connections` threads, each for `timeout` at most.
    """

    daemon_threads = True
    # The listen backlog: socketserver's 5 let a burst of connections (a browser opens six at once) overflow
    # the kernel's accept queue, and each dropped SYN cost its client a 1 s retransmit (300 connections:
    # 45 s; with 64, 0.05 s). Connections waiting here hold no thread.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse_busy(self, request: socket.socket) -> None:
        body = orjson.dumps({"error": f"busy: {self.max_connections} connections already open; try again"})
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(0.5)  # never let a client that reads nothing stall the accepting thread
            request.sendall(head.encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)


def make_server(
    game: Game,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    timeout: float = SOCKET_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> PageServer:
    return PageServer((host, port), make_handler(game, timeout), max_connections)


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m quickdraw_dag.serving.server"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=f"an MLflow model URI or path (default: {DEFAULT_MODEL_URI})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--save", action="store_true", help="let the page save labelled drawings (off by default)")
    parser.add_argument(
        "--save-dir", type=Path, default=DEFAULT_SAVE_DIR, help=f"where --save appends (default: {DEFAULT_SAVE_DIR})"
    )
    parser.add_argument(
        "--save-limit-mb",
        type=int,
        default=DEFAULT_SAVE_LIMIT_MB,
        help=f"saving stops (507) once the saved files hold this many MB (default: {DEFAULT_SAVE_LIMIT_MB})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.save_limit_mb < 1:
        print("error: --save-limit-mb: must be at least 1", file=sys.stderr)
        return 2
    configure_logging()
    try:
        served = load_served_model(args.model)
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    try:
        server = make_server(
            Game(served, args.save_dir if args.save else None, args.save_limit_mb << 20), args.host, args.port
        )
    except OSError as error:
        print(f"error: --port {args.port}: cannot listen on {args.host} ({error.strerror})", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    accuracy = f", test accuracy {served.test_accuracy:.1%}" if served.test_accuracy is not None else ""
    version = f" version {served.version}" if served.version else ""
    saving = f"; saving drawings to {args.save_dir}/" if args.save else ""
    print(f"play: http://{host}:{port}/  (model {served.uri}{version}{accuracy}{saving}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
