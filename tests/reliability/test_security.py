"""Security: no unpickling, no code from model files, local-only servers, no secrets written down, pinned Keras."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from quickdraw_dag.config.redact import redact
from tests.helpers import REPO

SOURCES = [p for folder in ("quickdraw_dag", "tasks", "flows", "bench") for p in (REPO / folder).rglob("*.py")]
# The releases that fixed the published safe_mode bypasses and related model-loading flaws.
KERAS_FIXES = {
    "CVE-2025-1550": "3.9.0",
    "CVE-2025-8747": "3.11.0",
    "CVE-2025-9906": "3.11.0",
    "CVE-2025-49655": "3.11.3",
    "CVE-2026-1462": "3.14.0",
}


def calls(pattern: str) -> list[tuple[Path, str]]:
    found = []
    for path in SOURCES:
        text = path.read_text()
        for match in re.finditer(pattern, text):
            depth, end = 1, match.end()
            while depth and end < len(text):  # to the call's own closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            found.append((path, text[match.start() : end]))
    return found


def test_every_npy_load_refuses_pickles_and_every_model_load_is_safe(record) -> None:
    loads = calls(r"np\.load\(")
    assert loads and all("allow_pickle=False" in call for _, call in loads), [
        c for c in loads if "allow_pickle=False" not in c[1]
    ]
    keras_loads = calls(r"keras\.(?:saving\.|models\.)?load_model\(")
    assert keras_loads and all("safe_mode=True" in call for _, call in keras_loads)
    other = [c for c in calls(r"\bload_model\(") if "def load_model" not in c[1]]
    assert all("keras" in c[1] or c[1].startswith("load_model(") for c in other)
    record(
        "security",
        check="np.load with allow_pickle=False; model loads with safe_mode=True",
        sites=len(loads) + len(keras_loads),
        violations=0,
    )


def test_a_model_file_with_code_is_refused(tmp_path: Path, record) -> None:
    import keras

    from quickdraw_dag.errors import DataError
    from quickdraw_dag.training.model import load_model

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "evil.keras"
    model.save(path)
    with pytest.raises(DataError, match="carries code") as refused:
        load_model(str(path))
    assert "safe_mode=False" not in str(refused.value)  # our message, not Keras's advice to turn the check off
    record("security", check="a .keras file carrying a Lambda layer is refused", sites=1, violations=0)


def test_servers_bind_to_localhost(record) -> None:
    makefile = (REPO / "Makefile").read_text()
    for command in ("mlflow ui", "prefect server start", "mlflow models serve"):
        line = next(line for line in makefile.splitlines() if command in line)
        assert "--host 127.0.0.1" in line, line
    from quickdraw_dag.serving.server import build_parser

    assert build_parser().parse_args([]).host == "127.0.0.1"  # the drawing page (make play)
    pipeline = (REPO / "flows/pipeline.py").read_text()
    assert '"host": "127.0.0.1"' in pipeline and '"dashboard_address": "127.0.0.1:0"' in pipeline
    assert "0.0.0.0" not in makefile + pipeline
    from quickdraw_dag.training.tune_workers import CHIEF_ENV, chief_bind

    if not os.environ.get(CHIEF_ENV):
        assert chief_bind() == ("127.0.0.1", 0)  # the tuning chief (tune.workers > 1), unless told otherwise
    record(
        "security",
        check="MLflow UI, Prefect server, Dask scheduler and dashboard, model serving, drawing page on 127.0.0.1",
        sites=6,
        violations=0,
    )


def test_keras_is_at_or_above_every_fix() -> None:
    import keras

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

    for cve, fixed in KERAS_FIXES.items():
        assert version(keras.__version__) >= version(fixed), (cve, keras.__version__)
    pins = (REPO / "pyproject.toml").read_text()
    pinned = re.search(r'"keras==([\d.]+)"', pins).group(1)
    assert version(pinned) >= max(version(v) for v in KERAS_FIXES.values())


def test_credentials_never_reach_logs_manifest_or_mlflow_params(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record
) -> None:
    from quickdraw_dag.config.loading import validate_params
    from quickdraw_dag.config.schema import DataParams, DownloadParams, FetchParams
    from quickdraw_dag.errors import ConfigError, FetchError
    from quickdraw_dag.tracking.store import flatten
    from tasks.fetch import download_category
    from tests.helpers import catalog_of
    from tests.http_server import FaultyServer

    assert (
        redact("https://alice:s3cret@host/x?X-Goog-Signature=abc&keep=1")
        == "https://***@host/x?X-Goog-Signature=***&keep=1"
    )
    assert redact("postgresql://user:pw@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    server = FaultyServer()
    server.files["apple.bin"] = b""
    server.sticky["apple.bin"] = ("status", 503)
    with server.running(), caplog.at_level(logging.DEBUG):
        url = server.url.replace("http://", "http://alice:s3cret@") + "?token=t0ps3cret"
        # params refuse such a URL now (tests/reliability/test_secrets.py); the downloader still redacts one
        params = FetchParams(
            download=DownloadParams.model_construct(
                base_url=url.replace("?token=t0ps3cret", ""), retries=1, backoff_s=0.01, backoff_max_s=1.0, timeout_s=2
            )
        )
        with pytest.raises(FetchError) as error:
            download_category(
                "apple", DataParams(source="quickdraw", categories=["apple", "cat"]), params, catalog_of(tmp_path)
            )
    assert "s3cret" not in str(error.value) and "s3cret" not in caplog.text and "***@" in str(error.value)
    import yaml

    values = yaml.safe_load((REPO / "params.yaml").read_text())
    values["fetch"]["download"]["base_url"] = "https://bob:hunter2@mirror.example/quickdraw/"
    values["mlflow"]["tracking_uri"] = "postgresql://mlflow:hunter2@db/mlflow"
    with pytest.raises(ConfigError) as refused:  # credentials never reach params, so never MLflow's params
        flatten(validate_params(values).model_dump(mode="json"))
    assert "hunter2" not in str(refused.value) and "must not carry credentials" in str(refused.value)
    record(
        "security",
        check="credentials in URLs redacted in logs, errors, manifest and MLflow params",
        sites=4,
        violations=0,
    )
