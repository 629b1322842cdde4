"""Secrets stay out of everything stored (issue 25, point 5).

A credential in `fetch.download.base_url` was masked in MLflow params but
stored in clear in the run's `dvc/params.yaml` and `dvc/dvc.lock` artifacts
and in the workspace's `dvc.lock`. Credentials now come from the environment
(`QUICKDRAW_DOWNLOAD_AUTH`) or `~/.netrc`, never from params: a URL that
carries one is refused (exit 2) before anything is written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.schema import DOWNLOAD_AUTH_ENV
from quickdraw_dag.data.formats.binary import encode_binary
from quickdraw_dag.data.synthetic import generate
from quickdraw_dag.errors import ConfigError
from tests.helpers import REPO, TINY_FIXED_PIPELINE, git_commit_all, run_module, set_params
from tests.http_server import FaultyServer

TOKEN = "plantedT0ken9f3b2a"  # noqa: S105 - a test secret, searched for in every stored file


@pytest.mark.parametrize(
    "override",
    [
        f"fetch.download.base_url=http://alice:{TOKEN}@127.0.0.1:9/quickdraw/",
        f"fetch.download.base_url=http://{TOKEN}@127.0.0.1:9/quickdraw/",  # a token as the user name
        f"fetch.download.base_url=https://mirror.example/quickdraw/?token={TOKEN}",
        f"fetch.download.base_url=https://mirror.example/quickdraw/?X-Goog-Signature={TOKEN}",
        f"fetch.download.base_url=https://mirror.example/quickdraw/?api_key={TOKEN}",
        f"mlflow.tracking_uri=postgresql://mlflow:{TOKEN}@db/mlflow",
        f"mlflow.tracking_uri=http://user:{TOKEN}@127.0.0.1:5000",
    ],
)
def test_a_url_with_credentials_is_refused_without_repeating_them(override: str, record: Callable[..., None]) -> None:
    with pytest.raises(ConfigError) as error:
        load_params(REPO / "params.yaml", [override], root=None)
    message = str(error.value)
    assert TOKEN not in message and "must not carry credentials" in message
    key = override.partition("=")[0]
    assert key in message and ("QUICKDRAW_DOWNLOAD_AUTH" in message or "MLFLOW_TRACKING_URI" in message)
    record("secrets", case=f"{key} with a credential refused", exit_2=1, leaks=0, files_scanned=0)


@pytest.mark.parametrize(
    "url", ["https://mirror.example/quickdraw/?a=1", "https://mirror.example/quickdraw/#x", "https://m.example/q?"]
)
def test_a_base_url_with_a_query_is_refused(url: str) -> None:
    """File names are appended to the base URL: a query or fragment would name no file."""
    with pytest.raises(ConfigError, match="without \\?query"):
        load_params(REPO / "params.yaml", [f"fetch.download.base_url={url}"], root=None)


def test_the_stage_refuses_a_credential_in_params_with_exit_2_and_writes_nothing(project: Path) -> None:
    before = (project / "params.yaml").read_bytes()
    done = run_module(
        "tasks.fetch",
        "--set",
        "data.source=quickdraw",
        "--set",
        f"fetch.download.base_url=http://alice:{TOKEN}@127.0.0.1:9/q/",
        cwd=project,
        code=REPO,
    )
    assert done.returncode == 2, done.stderr
    assert TOKEN not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert "QUICKDRAW_DOWNLOAD_AUTH" in done.stderr
    assert (project / "params.yaml").read_bytes() == before and not (project / "data").exists()


def _serve_categories(server: FaultyServer, categories: list[str]) -> None:
    from quickdraw.names import QUICK_DRAWING_FILES

    for category in categories:
        server.files[QUICK_DRAWING_FILES[category]] = encode_binary(generate(category, 60, seed=0))


def _leaks(root: Path, needle: bytes) -> tuple[list[str], int]:
    """Files under `root` holding `needle` (links not followed), and how many files were read."""
    found, scanned = [], 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            scanned += 1
            if needle in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found, scanned


@pytest.mark.slow
def test_a_run_with_a_download_credential_leaves_it_in_no_stored_file(
    tmp_path: Path, worker_prefect_home: Path, record: Callable[..., None]
) -> None:
    """The whole flow, downloading from a private mirror with a token from the environment.

    Every file the run leaves (the workspace with dvc.lock and params.yaml, the DVC cache, the MLflow
    store and artifacts, the flow's Prefect home, and the database of the Prefect server it reported
    to: this worker's) is read and searched for the token.
    """
    from bench.workspace import copy_project

    project = copy_project(tmp_path / "project")
    categories = ["circle", "square", "line"]
    server = FaultyServer()
    server.require_authorization = f"Bearer {TOKEN}"
    _serve_categories(server, categories)
    with server.running():
        set_params(
            project,
            **{
                **TINY_FIXED_PIPELINE,
                "data": {"source": "quickdraw", "categories": categories},
                "fetch": {"download": {"base_url": server.url, "retries": 0}},
            },
        )
        git_commit_all(project)
        env = {
            **os.environ,  # PREFECT_API_URL: this worker's server, whose database is searched below
            "PYTHONPATH": str(project),
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            DOWNLOAD_AUTH_ENV: f"Bearer {TOKEN}",
        }
        done = subprocess.run(
            [sys.executable, "-m", "flows.pipeline"], cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert server.authorizations and set(server.authorizations) == {f"Bearer {TOKEN}"}
    assert (project / "dvc.lock").is_file() and any((project / ".dvc" / "cache").rglob("*"))
    artifacts = list(project.rglob("dvc.lock"))
    assert len(artifacts) >= 2, artifacts  # the workspace's and the run's MLflow artifact copy
    leaks, scanned = _leaks(tmp_path, TOKEN.encode())
    assert leaks == [], leaks
    # The server's database holds this run (its flow-run name, written before the flow ended), not the token.
    run_name = re.search(r"Beginning flow run '([^']+)'", done.stdout + done.stderr).group(1)
    server_leaks, server_files = _leaks(worker_prefect_home, TOKEN.encode())
    assert _leaks(worker_prefect_home, run_name.encode())[0], "the run is not in the server's database"
    assert server_leaks == [], server_leaks
    scanned += server_files
    assert TOKEN not in done.stdout + done.stderr
    record(
        "secrets",
        case="a whole flow run with a download token in the environment",
        exit_2=0,
        leaks=0,
        files_scanned=scanned,
    )


def test_a_download_without_the_credential_fails_clearly(tmp_path: Path) -> None:
    """Neighbour: the mirror refuses (401) when the environment holds no credential: a FetchError, no file."""
    from quickdraw_dag.data.download import RetryPolicy, download
    from quickdraw_dag.errors import FetchError

    server = FaultyServer()
    server.require_authorization = f"Bearer {TOKEN}"
    server.files["x.bin"] = b"data"
    saved = os.environ.pop(DOWNLOAD_AUTH_ENV, None)
    try:
        with server.running(), pytest.raises(FetchError) as error:
            download(server.url + "x.bin", tmp_path / "x.bin", policy=RetryPolicy(retries=0, timeout_s=5))
        os.environ[DOWNLOAD_AUTH_ENV] = f"alice:{TOKEN}"  # Basic, not the Bearer the mirror wants
        with server.running(), pytest.raises(FetchError):
            download(server.url + "x.bin", tmp_path / "x.bin", policy=RetryPolicy(retries=0, timeout_s=5))
        os.environ[DOWNLOAD_AUTH_ENV] = f"Bearer {TOKEN}"
        with server.running():
            result = download(server.url + "x.bin", tmp_path / "x.bin", policy=RetryPolicy(retries=0, timeout_s=5))
    finally:
        os.environ.pop(DOWNLOAD_AUTH_ENV, None)
        if saved is not None:
            os.environ[DOWNLOAD_AUTH_ENV] = saved
    assert "401" in str(error.value) and TOKEN not in str(error.value)
    assert result.path.read_bytes() == b"data"
    assert server.authorizations[0] is None and server.authorizations[1].startswith("Basic ")
