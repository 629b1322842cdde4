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
"""

from __future__ import annotations

import argparse
import logging
import secrets
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
from quickdraw_dag.errors import QuickDrawDagError
from quickdraw_dag.runtime.atomic import write_bytes_atomic
from quickdraw_dag.runtime.cli import configure_logging
from quickdraw_dag.serving.classifier import TOP_K
from quickdraw_dag.serving.pyfunc import classify_rows
from quickdraw_dag.serving.registry import DEFAULT_MODEL_URI, ServedModel, load_served_model
from quickdraw_dag.serving.strokes import StrokeError, parse_drawing

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


class Game:
    """What the page's API does: guess, describe the model, save drawings."""

    def __init__(self, served: ServedModel, save_dir: Path | None = None) -> None:
        self.served = served
        self.save_dir = save_dir
        self._save_lock = threading.Lock()

    def model(self) -> dict[str, Any]:
        return {**self.served.describe(), "save": self.save_dir is not None, "top_k": TOP_K}

    def guess(self, body: dict[str, Any]) -> dict[str, Any]:
        return classify_rows(self.served.classifier, [body], TOP_K)[0]

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append one drawing to `<save_dir>/<label>.ndjson` in Google's raw format."""
        if self.save_dir is None:
            raise PermissionError("saving is off: start the page with --save")
        label, drawing = body.get("label"), body.get("strokes")
        if label not in OFFICIAL_CATEGORIES:
            raise ValueError(f"label {label!r} is not one of Quick, Draw!'s category names")
        if not isinstance(drawing, list) or not all(isinstance(s, list) and len(s) == 3 for s in drawing):
            raise ValueError("strokes must be Google's raw [xs, ys, ts] per stroke")
        try:
            parse_drawing(drawing, "raw")
        except StrokeError as error:
            raise ValueError(f"strokes: {error}") from None
        guess = self.guess({"strokes": drawing, "format": "raw"})
        record = {
            "word": label,
            "countrycode": "",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
            # Google's meaning: whether the game recognized the drawing (here: the model's first guess)
            "recognized": guess["label"] == label,
            "key_id": str(secrets.randbits(63)),
            "drawing": drawing,
        }
        path = self.save_dir / f"{label}.ndjson"
        with self._save_lock:
            before = path.read_bytes() if path.exists() else b""
            if before and not before.endswith(b"\n"):
                before += b"\n"
            write_bytes_atomic(path, before + orjson.dumps(record) + b"\n")
            count = sum(1 for line in before.splitlines() if line.strip()) + 1
        return {"saved": str(path), "drawings": count, "recognized": record["recognized"]}


def make_handler(game: Game) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection for a whole drawing session
        # Headers and body go out as two writes; with Nagle's algorithm the second waits for the
        # client's delayed ACK, adding 40 ms to every guess.
        disable_nagle_algorithm = True
        server_version = "quickdraw-play"

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
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if not self._from_loopback():
                return
            routes = {"/api/guess": game.guess, "/api/save": game.save}
            if self.path not in routes:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True  # the body stays unread
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
                return
            try:
                body = orjson.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                self._json(HTTPStatus.OK, routes[self.path](body))
            except PermissionError as error:
                self._json(HTTPStatus.FORBIDDEN, {"error": str(error)})
            except (ValueError, MlflowException) as error:  # orjson's decode error is a ValueError
                message = error.message if isinstance(error, MlflowException) else str(error)
                self._json(HTTPStatus.BAD_REQUEST, {"error": message})

        def _from_loopback(self) -> bool:
            """Refuse requests addressed to another host name (a DNS-rebinding page cannot reach the API)."""
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host in LOOPBACK_NAMES or self.server.server_address[0] not in ("127.0.0.1", "::1"):
                return True
            self._json(HTTPStatus.FORBIDDEN, {"error": f"host {host!r} is not this machine"})
            return False

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
            self.end_headers()
            self.wfile.write(body)

    return Handler


def make_server(game: Game, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(game))
    server.daemon_threads = True
    return server


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        served = load_served_model(args.model)
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    try:
        server = make_server(Game(served, args.save_dir if args.save else None), args.host, args.port)
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
