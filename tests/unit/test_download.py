"""The real download path against a real local HTTP server with injected faults."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from quickdraw import QuickDrawDataGroup

from quickdraw_dag.config.schema import DataParams, DownloadParams, FetchParams
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.download import RetryPolicy, download
from quickdraw_dag.data.formats import validate_file
from quickdraw_dag.data.formats.binary import encode_binary, read_binary
from quickdraw_dag.errors import FetchError, OfflineError
from tasks.fetch import fetch
from tests.helpers import catalog_of
from tests.http_server import FaultyServer

FAST = RetryPolicy(retries=3, backoff_s=0.01, backoff_max_s=0.05, timeout_s=5)


@pytest.fixture(scope="module")
def body() -> bytes:
    return encode_binary(synthetic.generate("circle", 400, seed=3))


@pytest.fixture()
def server(body: bytes):
    faulty = FaultyServer()
    faulty.files["circle.bin"] = body
    with faulty.running():
        yield faulty


def check_binary(path: Path) -> None:
    read_binary(path)


def test_dropped_connection_resumes_with_range_and_is_byte_identical(server, body, tmp_path) -> None:
    server.plan("circle.bin", ("drop", 5000), ("drop", 9000))
    result = download(server.url + "circle.bin", tmp_path / "circle.bin", policy=FAST, validate=check_binary)
    assert (tmp_path / "circle.bin").read_bytes() == body
    assert result.sha256 == hashlib.sha256(body).hexdigest() and result.attempts == 3
    assert [r for _, r in server.requests] == [None, "bytes=5000-", "bytes=14000-"]
    assert not (tmp_path / "circle.bin.part").exists()


def test_server_error_then_success_is_retried(server, body, tmp_path) -> None:
    server.plan("circle.bin", ("status", 500), ("status", 503))
    result = download(server.url + "circle.bin", tmp_path / "circle.bin", policy=FAST, validate=check_binary)
    assert result.attempts == 3 and (tmp_path / "circle.bin").read_bytes() == body


def test_body_that_stays_truncated_leaves_no_file(server, tmp_path) -> None:
    server.sticky["circle.bin"] = ("truncate", 0)
    server.plan("circle.bin", ("truncate", 3000))
    with pytest.raises(FetchError, match=r"failed after 4 attempt\(s\): connection closed at byte 3000"):
        download(server.url + "circle.bin", tmp_path / "circle.bin", policy=FAST, validate=check_binary)
    assert not (tmp_path / "circle.bin").exists()
    assert (tmp_path / "circle.bin.part").stat().st_size == 3000  # kept for a later resume


def test_html_page_with_status_200_is_rejected(tmp_path) -> None:
    faulty = FaultyServer()
    faulty.files["circle.bin"] = b"<html><body>Quota exceeded</body></html>\n" * 3
    with faulty.running(), pytest.raises(FetchError, match="downloaded file is not valid"):
        download(faulty.url + "circle.bin", tmp_path / "circle.bin", policy=FAST, validate=check_binary)
    assert not (tmp_path / "circle.bin").exists() and not (tmp_path / "circle.bin.part").exists()


def test_not_found_is_not_retried(server, tmp_path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        download(server.url + "missing.bin", tmp_path / "missing.bin", policy=FAST)
    assert len(server.requests) == 1


def test_offline_error_says_how_to_use_local_files(tmp_path) -> None:
    slow = RetryPolicy(retries=5, backoff_s=30)  # would take minutes if it retried
    with pytest.raises(OfflineError) as error:
        download("http://no-such-host.invalid/apple.bin", tmp_path / "apple.bin", policy=slow)
    assert "data.source" in str(error.value) and "samples/quickdraw" in str(error.value)


def test_fetch_stage_downloads_into_the_quickdraw_cache_layout(server, body, tmp_path) -> None:
    server.files["square.bin"] = encode_binary(synthetic.generate("square", 50, seed=1))
    server.plan("circle.bin", ("drop", 777), ("status", 502))
    data = DataParams(source="quickdraw", categories=("circle", "square"))
    params = FetchParams(download=DownloadParams(base_url=server.url, retries=3, backoff_s=0.01, timeout_s=5))
    catalog = catalog_of(tmp_path)
    manifest = fetch(data, params, catalog)
    assert catalog.raw_file("circle.bin").read_bytes() == body
    entry = manifest["categories"]["circle"]
    assert entry["drawings"] == 400 and entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["origin"] == server.url + "circle.bin" and entry["format"] == "binary"
    group = QuickDrawDataGroup("circle", max_drawings=None, cache_dir=str(catalog.raw), print_messages=False)
    assert group.drawing_count == 400
    # A rerun keeps complete files: no new request for them.
    before = len(server.requests)
    fetch(data, params, catalog)
    assert len(server.requests) == before


def test_each_downloaded_file_is_validated_and_hashed_once(server, body, tmp_path, monkeypatch) -> None:
    import quickdraw_dag.data.download
    import tasks.fetch
    from quickdraw_dag.data.hashing import file_digest

    calls = {"validate": 0, "sha256": 0}

    def counting_validate(*args, **kwargs):
        calls["validate"] += 1
        return validate_file(*args, **kwargs)

    def counting_digest(path, algorithm="sha256"):
        calls["sha256"] += algorithm == "sha256"
        return file_digest(path, algorithm)

    monkeypatch.setattr(tasks.fetch, "validate_file", counting_validate)
    monkeypatch.setattr(tasks.fetch, "file_digest", counting_digest)
    monkeypatch.setattr(quickdraw_dag.data.download, "file_digest", counting_digest)
    data = DataParams(source="quickdraw", categories=("circle", "square"))
    params = FetchParams(download=DownloadParams(base_url=server.url, retries=0, timeout_s=5))
    server.files["square.bin"] = encode_binary(synthetic.generate("square", 50, seed=1))
    manifest = fetch(data, params, catalog_of(tmp_path))
    assert calls == {"validate": 2, "sha256": 2}  # one of each per file (it was two of each)
    assert manifest["categories"]["circle"]["sha256"] == hashlib.sha256(body).hexdigest()


def test_reachability_needs_a_name_that_resolves_and_a_port_that_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from quickdraw_dag.data.download import ensure_reachable

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        ensure_reachable(f"http://127.0.0.1:{open_port}/qd/")  # answers: no error
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        with pytest.raises(OfflineError, match=rf"cannot reach 127.0.0.1 \(127.0.0.1:{closed}: connection refused\)"):
            ensure_reachable(f"http://127.0.0.1:{closed}/qd/")
        with pytest.raises(OfflineError, match="the host name does not resolve"):
            ensure_reachable("https://no-such-host.invalid/qd/")
        # through a proxy, the proxy is what must answer (and a bypassed host is reached directly)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed}")
        with pytest.raises(OfflineError, match=f"127.0.0.1:{closed}: connection refused"):
            ensure_reachable(f"http://example.invalid:{open_port}/qd/")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{open_port}")
        ensure_reachable("http://example.invalid/qd/")  # the name is the proxy's to resolve
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with pytest.raises(OfflineError, match="connection refused"):
            ensure_reachable(f"http://127.0.0.1:{closed}/qd/")
    ensure_reachable("not a url")  # no host: nothing to check (the params' validator rejects it first)
