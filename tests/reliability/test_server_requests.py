"""Both servers against hostile requests (issue 25, points 1 and 2): origins, framing, values, sizes, connections.

The page (`make play`, `serving/server.py`) is served in-process on a free port; `mlflow models serve`
runs for real, as `make serve-model` runs it. Every refusal must be a 4xx (or 503/507) whose body
is one line, with no traceback, and the page must write nothing it was not asked to by itself.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests

from quickdraw_dag.artifacts import Catalog, read_manifest
from quickdraw_dag.config.schema import DataParams, FetchParams
from quickdraw_dag.serving.predict import main as predict_main
from quickdraw_dag.serving.registry import ServedModel, load_served_model
from quickdraw_dag.serving.server import MAX_BODY, Game
from tasks.fetch import fetch
from tests.conftest import Champion
from tests.helpers import serve_page

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("champion")]
FAMILY = "server requests"
HOUSE = [
    [[40.0, 40.0, 200.0, 200.0, 40.0], [260.0, 120.0, 120.0, 260.0, 260.0], [0, 180, 360, 540, 720]],
    [[30.0, 120.0, 210.0], [130.0, 40.0, 130.0], [1100, 1300, 1500]],
]


@pytest.fixture(scope="module")
def served(champion: Champion) -> ServedModel:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", champion.tracking_uri)
        return load_served_model()


def one_line_error(response: requests.Response) -> str:
    """The refusal's message, checked to be one line of JSON with no traceback."""
    assert response.headers["Content-Type"] == "application/json", response.text[:200]
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message and len(message) < 400, message
    return message


def raw_exchange(port: int, request: bytes, wait: float = 10) -> tuple[int, str, bool]:
    """Send `request` as bytes; (status, one-line error, whether the server then closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
        while len(body) < length:
            body += connection.recv(65536)
        connection.settimeout(2)
        try:
            closed = connection.recv(1) == b""
        except TimeoutError:
            closed = False
    message = orjson.loads(body)["error"]
    assert "\n" not in message and "Traceback" not in message
    return int(head.split(b" ")[1]), message, closed


def post(url: str, path: str, body: Any, **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return requests.post(f"{url}{path}", data=data, headers={"Content-Type": "application/json", **headers}, timeout=60)


# ----- point 1: only the page writes into training data -----


def test_other_origins_cannot_save_or_guess(served: ServedModel, tmp_path: Path, record) -> None:
    """A cross-origin text/plain POST needs no preflight in a browser: it must be refused, and nothing written."""
    user = tmp_path / "user"
    game = Game(served, user)
    body = orjson.dumps({"label": "bear", "strokes": HOUSE})
    with serve_page(game) as url:
        here = url.removeprefix("http://")
        token = requests.get(f"{url}/api/model", timeout=10).json()["save_token"]
        attempts = {  # headers → the status it must get
            "text/plain from another site": ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),
            "text/plain, no origin (a form)": ({"Content-Type": "text/plain;charset=UTF-8"}, 415),
            "form-urlencoded": ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            "multipart": ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
            "no content type": ({}, 415),
            "JSON from another site": ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
            "JSON from another local port": ({"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403),
            "JSON from localhost, not 127.0.0.1": (
                {"Content-Type": "application/json", "Origin": f"http://localhost:{here.split(':')[1]}"},
                403,
            ),
            "origin null (sandbox, file://)": ({"Content-Type": "application/json", "Origin": "null"}, 403),
            "https origin": ({"Content-Type": "application/json", "Origin": f"https://{here}"}, 403),
            "Sec-Fetch-Site cross-site": ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403),
            "Sec-Fetch-Site same-site": ({"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, 403),
            "same origin, no token": ({"Content-Type": "application/json", "Origin": url}, 403),
            "same origin, wrong token": (
                {"Content-Type": "application/json", "Origin": url, "X-Save-Token": token[:-1] + "x"},
                403,
            ),
            "token, another site": (
                {"Content-Type": "application/json", "Origin": "http://evil.example", "X-Save-Token": token},
                403,
            ),
        }
        for name, (headers, status) in attempts.items():
            answer = requests.post(f"{url}/api/save", data=body, headers=headers, timeout=30)
            assert answer.status_code == status, (name, answer.text)
            one_line_error(answer)
        for name in ("text/plain from another site", "JSON from another site", "Sec-Fetch-Site cross-site"):
            answer = requests.post(f"{url}/api/guess", data=body, headers=attempts[name][0], timeout=30)
            assert answer.status_code in (403, 415), (name, answer.text)
        assert not user.exists()  # nothing written by any of them
        mine = {
            "Content-Type": "application/json; charset=utf-8",
            "Origin": url,
            "Sec-Fetch-Site": "same-origin",
            "X-Save-Token": token,
        }
        answer = requests.post(f"{url}/api/save", data=body, headers=mine, timeout=30)
        assert answer.status_code == 200, answer.text
    assert [p.name for p in user.iterdir()] == ["bear.ndjson"]
    assert len((user / "bear.ndjson").read_bytes().splitlines()) == 1
    record(
        FAMILY,
        check="requests from other origins, content types or without the page's token",
        cases=len(attempts) + 3,
        refused=len(attempts) + 3,
    )


def long_stroke(points: int) -> list:
    """One stroke of `points` raw points: about 19 bytes of JSON each."""
    return [[[float(i % 997) for i in range(points)], [float(i % 991) for i in range(points)], list(range(points))]]


def saved_cases() -> dict[str, tuple[Any, int, str]]:
    """Save bodies → the status and a piece of the message each must get."""
    far = [[[0.0, 2e9], [0.0, 10.0], [0, 10]]]
    return {
        "x = 2e9 (README's data/user training exited 2 on it)": (
            {"label": "bear", "strokes": far},
            400,
            "beyond ±1e+09",
        ),
        "x = -2e9": ({"label": "bear", "strokes": [[[0.0, -2e9], [0.0, 1.0], [0, 1]]]}, 400, "beyond ±1e+09"),
        "x = 1e307": ({"label": "bear", "strokes": [[[1e307, 0.0], [0.0, 1.0], [0, 1]]]}, 400, "beyond"),
        "x spans ±1e308": ({"label": "bear", "strokes": [[[-1e308, 1e308], [0.0, 1.0], [0, 1]]]}, 400, "beyond"),
        "an integer of 30 digits": (
            b'{"label": "bear", "strokes": [[[100000000000000000000000000000, 0], [0, 1], [0, 1]]]}',
            400,
            "",
        ),
        "x = 1e400 (not a double)": (b'{"label": "bear", "strokes": [[[1e400, 0], [0, 1], [0, 1]]]}', 400, "infinity"),
        "NaN": (b'{"label": "bear", "strokes": [[[NaN, 0], [0, 1], [0, 1]]]}', 400, ""),
        "a string coordinate": ({"label": "bear", "strokes": [[["1", 0], [0, 1], [0, 1]]]}, 400, "not a finite number"),
        "a boolean coordinate": ({"label": "bear", "strokes": [[[True, 0], [0, 1], [0, 1]]]}, 400, "not a finite"),
        "t shorter than x": ({"label": "bear", "strokes": [[[0, 5], [0, 1], [0]]]}, 400, "t must be a list as long"),
        "simplified strokes (no times)": ({"label": "bear", "strokes": [[[0, 5], [0, 1]]]}, 400, "must be 3 lists"),
        "no strokes": ({"label": "bear"}, 400, "non-empty list of strokes"),
        "empty strokes": ({"label": "bear", "strokes": []}, 400, "non-empty list of strokes"),
        "label as a list": ({"label": ["bear"], "strokes": HOUSE}, 400, "not one of Quick, Draw!'s category names"),
        "label as an object": ({"label": {"bear": 1}, "strokes": HOUSE}, 400, "category names"),
        "label as a number": ({"label": 3, "strokes": HOUSE}, 400, "category names"),
        "label null": ({"label": None, "strokes": HOUSE}, 400, "category names"),
        "label a path": ({"label": "../../etc/passwd", "strokes": HOUSE}, 400, "category names"),
        "a list body": ([{"label": "bear", "strokes": HOUSE}], 400, "must be a JSON object"),
        "one drawing over a line's limit": ({"label": "bear", "strokes": long_stroke(140_000)}, 413, "of one line"),
    }


def test_saved_drawings_pass_the_fetch_stages_checks_and_can_be_trained_on(
    served: ServedModel, tmp_path: Path, record
) -> None:
    user = tmp_path / "user"
    with serve_page(Game(served, user)) as url:
        mine = {"Origin": url, "X-Save-Token": requests.get(f"{url}/api/model", timeout=10).json()["save_token"]}
        for name, (body, status, words) in saved_cases().items():
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            assert len(data) < MAX_BODY, name
            answer = post(url, "/api/save", data, **mine)
            assert answer.status_code == status, (name, answer.text[:300])
            assert words in one_line_error(answer), (name, answer.text[:300])
        assert not user.exists()  # nothing saved by a refused drawing
        edges = {  # the limits themselves are accepted, and each is read back by fetch
            "bear": [[[-1e9, 1e9], [0.0, 3.5], [0, 20]]],
            "frog": [[[1e9, 1e9 - 1], [1e9, -1e9], [0, 5]]],
            "duck": [[[7], [7], [0]]],  # a dot
        }
        for label, strokes in edges.items():
            for _ in range(2):
                answer = post(url, "/api/save", {"label": label, "strokes": strokes}, **mine)
                assert answer.status_code == 200, answer.text
    # The README's training command on data/user starts with fetch: it reads every saved drawing back.
    catalog = Catalog.under(tmp_path / "workspace")
    manifest = fetch(DataParams(source=str(user), categories=tuple(edges)), FetchParams(), catalog)
    assert {c: (e["format"], e["drawings"]) for c, e in manifest["categories"].items()} == dict.fromkeys(
        edges, ("raw", 2)
    )
    assert read_manifest(catalog)["drawings"] == 6
    record(
        FAMILY,
        check="drawings the page refuses to save (the fetch stage's own checks, sizes)",
        cases=len(saved_cases()),
        refused=len(saved_cases()),
    )


def test_saving_stops_at_the_total_limit_with_507(served: ServedModel, tmp_path: Path) -> None:
    user = tmp_path / "user"
    with serve_page(Game(served, user, save_limit=3000)) as url:
        mine = {"Origin": url, "X-Save-Token": requests.get(f"{url}/api/model", timeout=10).json()["save_token"]}
        statuses = [post(url, "/api/save", {"label": "bear", "strokes": HOUSE}, **mine) for _ in range(12)]
    codes = [answer.status_code for answer in statuses]
    kept = codes.index(507)
    assert kept >= 3 and set(codes[kept:]) == {507} and set(codes[:kept]) == {200}
    assert "--save-limit-mb" in one_line_error(statuses[kept])
    lines = (user / "bear.ndjson").read_bytes()
    assert len(lines) <= 3000 and len(lines.splitlines()) == kept  # the refused ones left the file as it was
    # a save folder that cannot be written (here: a file in its place) is a 507 too, not a traceback
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    with serve_page(Game(served, blocked)) as url:
        mine = {"Origin": url, "X-Save-Token": requests.get(f"{url}/api/model", timeout=10).json()["save_token"]}
        answer = post(url, "/api/save", {"label": "bear", "strokes": HOUSE}, **mine)
    assert answer.status_code == 507 and "cannot save into" in one_line_error(answer)
    assert blocked.read_text() == "not a folder"


# ----- point 2: framing, values, sizes, connections -----


def test_bad_or_missing_lengths_are_refused_before_any_body_is_read(served: ServedModel, record) -> None:
    server_options = {"timeout": 2.0}
    with serve_page(Game(served), **server_options) as url:
        port = int(url.rsplit(":", 1)[1])

        def request(*headers: str, body: bytes = b"") -> bytes:
            lines = ["POST /api/guess HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json", *headers]
            return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

        cases = {
            "Content-Length: -1 (read to EOF before)": (request("Content-Length: -1", body=b"{" * 1000), 400),
            "Content-Length: abc (a traceback before)": (request("Content-Length: abc"), 400),
            "Content-Length: +5": (request("Content-Length: +5", body=b"{}   "), 400),
            "Content-Length: 1e3": (request("Content-Length: 1e3"), 400),
            "Content-Length: ٣ (a non-ASCII digit)": (
                request("Content-Length: \u0663".encode().decode("latin-1")),
                400,
            ),
            "two different Content-Lengths": (request("Content-Length: 2", "Content-Length: 3", body=b"{}"), 400),
            "no Content-Length": (request(body=b"{}"), 411),
            "chunked": (request("Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"), 411),
            "over the cap": (request(f"Content-Length: {MAX_BODY + 1}"), 413),
            "2**70 bytes": (request(f"Content-Length: {2**70}"), 413),
        }
        for name, (raw, status) in cases.items():
            got, message, closed = raw_exchange(port, raw)
            assert got == status, (name, message)
            assert closed, f"{name}: the connection must close, its body unread"
        # a body shorter than declared: the connection is closed after the timeout, with no thread left behind
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(request("Content-Length: 100", body=b'{"strokes"'))
            started = time.monotonic()
            assert stalled.recv(1) == b""
            assert time.monotonic() - started < 5
        good = post(url, "/api/guess", {"strokes": HOUSE, "format": "raw"})
        assert good.status_code == 200 and good.json()["label"]
    record(
        FAMILY,
        check="bad, missing or oversized Content-Length, chunked, short bodies",
        cases=len(cases) + 1,
        refused=len(cases) + 1,
    )


def guess_cases() -> dict[str, tuple[Any, int, str]]:
    """Guess rows → status and words; values near the float limits and bodies of the wrong shape."""
    return {
        "x = 1e307 (OverflowError before)": ({"strokes": [[[1e307, 0.0], [0.0, 1.0], [0, 1]]]}, 400, "beyond ±1e+09"),
        "x spans ±1e308": ({"strokes": [[[-1e308, 1e308], [0.0, 1.0], [0, 1]]]}, 400, "beyond ±1e+09"),
        "y = -1.7e308": ({"strokes": [[[0.0, 1.0], [-1.7e308, 0.0]]]}, 400, "beyond ±1e+09"),
        "x = 2**63": ({"strokes": [[[2**63, 0], [0, 1]]]}, 400, "beyond ±1e+09"),
        "x = -2**63": ({"strokes": [[[-(2**63), 0], [0, 1]]]}, 400, "beyond ±1e+09"),
        "x = 1e9 + 1, raw": ({"strokes": [[[1e9 + 1, 0.0], [0.0, 1.0], [0, 1]]], "format": "raw"}, 400, "beyond"),
        "format as a list": ({"strokes": HOUSE, "format": ["raw"]}, 400, "format must be one of"),
        "format as an object": ({"strokes": HOUSE, "format": {"raw": 1}}, 400, "format must be one of"),
        "format as a number": ({"strokes": HOUSE, "format": 3}, 400, "format must be one of"),
        "strokes as an object": ({"strokes": {"x": [1]}}, 400, "non-empty list of strokes"),
        "strokes as a string of bad JSON": ({"strokes": "[[["}, 400, "row 0"),
        "image of 1e308": ({"image": [[1e308, 0.0], [0.0, 0.0]]}, 400, "grey levels must lie in 0-255"),
        "image 3-D": ({"image": [[[0, 1]], [[1, 0]]]}, 400, "2-D array"),
        "image as an object": ({"image": {"a": 1}}, 400, "2-D array"),
        "image ragged": ({"image": [[0, 1], [1]]}, 400, "rectangular"),
        "neither strokes nor image": ({"label": ["bear"]}, 400, "needs 'strokes' or 'image'"),
    }


def test_hostile_values_get_a_one_line_400_on_the_page(served: ServedModel, record) -> None:
    with serve_page(Game(served)) as url:
        for name, (row, status, words) in guess_cases().items():
            answer = post(url, "/api/guess", row)
            assert answer.status_code == status, (name, answer.text[:300])
            assert words in one_line_error(answer), (name, answer.text[:300])
        assert post(url, "/api/guess", {"strokes": HOUSE, "format": "raw"}).status_code == 200  # still serving
    record(
        FAMILY,
        check="guesses with values near ±1e308, 2**63, wrong shapes and types (page)",
        cases=len(guess_cases()),
        refused=len(guess_cases()),
    )


@pytest.mark.parametrize("length", [100_000, 300_000])
def test_an_extreme_bounding_box_costs_what_its_pixels_cost(served: ServedModel, length: int, record) -> None:
    """2 × 100,000 pixels took 10 s of CPU; 2 × 300,000 tried to allocate 105 GiB. Now: bounded by the input."""
    strip = np.zeros((2, length), np.uint8)
    strip[:, ::7] = 255  # ink along the whole strip
    body = orjson.dumps({"image": strip.tolist()})
    assert len(body) < MAX_BODY
    with serve_page(Game(served)) as url:
        started = time.process_time()
        answer = post(url, "/api/guess", body)
        cpu = time.process_time() - started
    assert answer.status_code == 200 and answer.json()["label"] in served.classifier.card.categories
    assert cpu < 3.0, f"{cpu:.1f} s of CPU for one {length}-pixel strip"
    record(FAMILY, check=f"an image 2 × {length:,} pixels", cases=1, refused=0, cpu_s=round(cpu, 2))


def test_half_sent_requests_hold_a_bounded_number_of_threads(served: ServedModel, record) -> None:
    """300 half-sent requests held 309 threads; now at most max_connections, each for the timeout at most."""
    before = threading.active_count()
    with serve_page(Game(served), timeout=3.0, max_connections=8) as url:
        port = int(url.rsplit(":", 1)[1])
        sockets, answered, peak = [], {"503": 0, "closed": 0, "waiting": 0}, 0
        try:
            for _ in range(300):
                connection = socket.create_connection(("127.0.0.1", port), timeout=10)
                connection.sendall(b"POST /api/guess HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
                sockets.append(connection)
            time.sleep(0.5)
            peak = threading.active_count() - before
            for connection in sockets:
                connection.settimeout(0.05)
                try:
                    answered["503" if b" 503 " in connection.recv(200) else "closed"] += 1
                except TimeoutError:
                    answered["waiting"] += 1  # held by one of the slots, until its timeout
                except ConnectionError:
                    answered["closed"] += 1  # closed with our unread bytes: a reset, after its 503
        finally:
            for connection in sockets:
                connection.close()
        assert peak <= 8 + 1, f"{peak} threads for 300 half-sent requests"  # + the serve_forever thread
        assert answered["waiting"] <= 8 and answered["503"] > 0, answered  # the rest were answered at once
        deadline = time.monotonic() + 10
        while threading.active_count() - before > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() - before <= 1  # the timeouts freed every slot
        assert post(url, "/api/guess", {"strokes": HOUSE, "format": "raw"}).status_code == 200
    record(FAMILY, check="300 half-sent requests at once", cases=300, refused=300, peak_threads=peak, **answered)


def test_a_burst_of_connections_waits_in_the_listen_backlog_not_in_syn_retransmits() -> None:
    """socketserver's backlog of 5 dropped the 7th simultaneous SYN: a 1 s retransmit for that client (the
    300 connections above took 45 s to open). With nobody accepting yet, 40 connections all complete their
    handshake in the kernel's queue (a dropped SYN would hit the connect timeout)."""
    from quickdraw_dag.serving.server import make_server

    server = make_server(None, port=0, timeout=3.0, max_connections=8)  # listening, not accepting: no loop
    try:
        port = server.server_address[1]
        connections = [socket.create_connection(("127.0.0.1", port), timeout=0.5) for _ in range(40)]
        for connection in connections:
            connection.close()
    finally:
        server.server_close()
    assert len(connections) == 40 and server.request_queue_size >= 40


def test_predict_refuses_overflowing_coordinates_in_one_line(
    champion_store: Champion, tmp_path: Path, capsys: pytest.CaptureFixture, record
) -> None:
    cases = {
        "x1e307.json": [[[1e307, 0.0], [0.0, 1.0]]],
        "span.json": [[[-1e308, 1e308], [0.0, 1.0], [0, 1]]],
        "int.json": [[[2**63, 0], [0, 1]]],
    }
    for name, drawing in cases.items():
        (tmp_path / name).write_text(json.dumps(drawing))
        assert predict_main([str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err and name in err and "beyond ±1e+09" in err, err
    strip = tmp_path / "strip.png"
    from PIL import Image

    wide = np.full((2, 300_000), 255, np.uint8)
    wide[:, ::5] = 0
    Image.fromarray(wide).save(strip)
    started = time.process_time()
    assert predict_main([str(strip), "--json"]) == 0
    assert time.process_time() - started < 10
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"]
    record(
        FAMILY,
        check="predict: coordinates near ±1e308 and a 2 × 300,000 picture",
        cases=len(cases) + 1,
        refused=len(cases),
    )


# ----- point 2: mlflow models serve (MLflow's own server, our pyfunc's checks) -----


def test_mlflow_models_serve_answers_hostile_rows_with_a_one_line_400(
    champion: Champion, tmp_path: Path, record
) -> None:
    from tests.integration.test_serving import mlflow_serving

    rows = {name: row for name, (row, _, _) in guess_cases().items()}
    with mlflow_serving(champion, tmp_path) as url:
        for name, row in rows.items():
            answer = requests.post(f"{url}/invocations", json={"dataframe_records": [row]}, timeout=60)
            assert answer.status_code == 400, (name, answer.text[:300])
            body = answer.json()
            assert "stack_trace" not in body and "\n" not in body["message"], (name, answer.text[:500])
            assert body["message"].startswith("row 0: ") or "column" in body["message"], (name, body["message"])
        # only unknown columns: a 400 naming the expected ones, not 200 with no predictions
        for records in ([{"drawing": HOUSE}], [{"foo": 1}, {"foo": 2}]):
            answer = requests.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=60)
            assert answer.status_code == 400, answer.text[:300]
            assert "expected columns 'strokes'" in answer.json()["message"]
        # outputs match inputs row for row, or it is a 400
        mixed = [{"strokes": HOUSE, "format": "raw"}, {"image": np.zeros((28, 28), int).tolist()}, {"strokes": HOUSE}]
        answer = requests.post(f"{url}/invocations", json={"dataframe_records": mixed}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
        half = [{"strokes": HOUSE}, {"format": "raw"}]
        answer = requests.post(f"{url}/invocations", json={"dataframe_records": half}, timeout=60)
        assert answer.status_code == 400 and answer.json()["message"].startswith("row 1: a row needs")
        # an extreme bounding box: bounded by the input's size
        strip = np.zeros((2, 300_000), np.uint8)
        strip[:, ::7] = 255
        started = time.monotonic()
        answer = requests.post(
            f"{url}/invocations", json={"dataframe_records": [{"image": strip.tolist()}]}, timeout=120
        )
        assert answer.status_code == 200 and time.monotonic() - started < 30
        # framing is uvicorn's: a bad Content-Length is refused there, before our code
        port = int(url.rsplit(":", 1)[1])
        for length in ("-1", "abc"):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
                connection.sendall(
                    f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {length}\r\n\r\n".encode()
                )
                status = connection.recv(200).split(b" ")[1]
            assert status == b"400", (length, status)
    record(
        FAMILY,
        check="mlflow models serve: hostile rows, unknown columns, a 2 × 300,000 image, bad lengths",
        cases=len(rows) + 7,
        refused=len(rows) + 5,
    )


ATTACKER = """<!doctype html><title>another site</title>
<form id="form" method="POST" action="{target}/api/save" enctype="text/plain">
<input name='{{"label": "bear", "strokes": [[[0, 9], [0, 9], [0, 9]]], "pad": "' value='"}}'></form>"""
ATTACKS = """const done = arguments[arguments.length - 1], target = arguments[0], outcomes = {};
const body = JSON.stringify({label: "bear", strokes: [[[0, 9], [0, 9], [0, 9]]]});
const tries = {
  "no-cors text/plain": () => fetch(target + "/api/save", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body}),
  "cors JSON (needs a preflight)": () => fetch(target + "/api/save", {method: "POST",
      headers: {"Content-Type": "application/json"}, body}),
  "read the token": () => fetch(target + "/api/model").then((r) => r.json()),
  "no-cors guess": () => fetch(target + "/api/guess", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body}),
};
(async () => {
  for (const [name, attempt] of Object.entries(tries)) {
    try { const r = await attempt(); outcomes[name] = r && r.type ? r.type : JSON.stringify(r); }
    catch (error) { outcomes[name] = "refused: " + error.name; }
  }
  done(outcomes);
})();"""


@contextmanager
def another_site(html: str) -> Iterator[str]:
    """A page on another local origin (another port), as a site a user visits while playing."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Site(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_in_a_real_browser_another_site_cannot_save_and_the_page_can(
    served: ServedModel, browser, tmp_path: Path, record
) -> None:
    """Chromium on another origin: fetches and a text/plain form post write nothing; the page's own save works."""
    user = tmp_path / "user"
    with serve_page(Game(served, user)) as url, another_site(ATTACKER.format(target=url)) as site:
        browser.get(site)
        outcomes = browser.execute_async(ATTACKS, url)
        assert outcomes["cors JSON (needs a preflight)"] == "refused: TypeError", outcomes
        assert outcomes["read the token"] == "refused: TypeError", outcomes  # no CORS: the token stays unread
        assert outcomes["no-cors text/plain"] == "opaque" and outcomes["no-cors guess"] == "opaque", outcomes
        browser.execute("document.getElementById('form').submit()")
        browser.wait_for("return location.href.endsWith('/api/save')")
        answer = browser.execute("return document.body.innerText")
        assert "from another site (same-site) is refused" in answer, answer  # another port of this host
        assert not user.exists(), "another site wrote into the training data"
        # the page itself: draw, pick a label, save
        browser.get(url)
        browser.wait_for("return !document.getElementById('save').hidden")
        box = browser.execute("return document.getElementById('canvas').getBoundingClientRect().toJSON()")
        left, top = box["left"] + 40, box["top"] + 40
        browser.pointer_strokes([([left, left + 120, left + 120], [top, top, top + 90])])
        browser.execute("document.getElementById('label').value = 'frog'")
        browser.click("#save button")
        saved = browser.wait_for("const t = document.getElementById('saved').textContent; return t && t")
        assert saved.startswith("Saved to ") and "(1 drawings)" in saved, saved
        browser.execute("document.getElementById('saved').textContent = ''")
        browser.execute("document.getElementById('label').value = 'bear'")
        browser.click("#save button")
        saved = browser.wait_for("const t = document.getElementById('saved').textContent; return t && t")
        assert saved.endswith("bear.ndjson (1 drawings)."), saved
    for label in ("frog", "bear"):
        lines = (user / f"{label}.ndjson").read_bytes().splitlines()
        assert len(lines) == 1 and orjson.loads(lines[0])["word"] == label
    data = DataParams(source=str(user), categories=("bear", "frog"))
    manifest = fetch(data, FetchParams(), Catalog.under(tmp_path / "w"))
    assert {c: e["drawings"] for c, e in manifest["categories"].items()} == {"bear": 1, "frog": 1}
    record(FAMILY, check="Chromium on another origin: 3 fetches and a text/plain form post", cases=4, refused=4)
