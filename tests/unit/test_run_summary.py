"""The pure parts of a run's Prefect artifacts and of closing killed runs: links, markdown, process records."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from quickdraw_dag.config import Params
from quickdraw_dag.orchestration import RunProcess, is_abandoned
from quickdraw_dag.run_summary import (
    LOCAL_MLFLOW_UI,
    MLFLOW_UI_ENV,
    mlflow_ui_url,
    per_class_table,
    results_markdown,
)

PARAMS = Params.model_validate({"data": {"source": "synthetic", "categories": ["circle", "square"]}})
METRICS = {
    "accuracy": 0.81234,
    "top3_accuracy": 0.99,
    "map_at_3": 0.9,
    "macro_precision": 0.8,
    "macro_recall": 0.81,
    "macro_f1": 0.805,
    "test_images": 40,
}


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("sqlite:///mlflow.db", LOCAL_MLFLOW_UI),
        ("sqlite:////abs/path/mlflow.db", LOCAL_MLFLOW_UI),
        ("file:///tmp/mlruns", LOCAL_MLFLOW_UI),
        ("mlruns", LOCAL_MLFLOW_UI),
        ("http://mlflow.internal:5000/", "http://mlflow.internal:5000"),
        ("https://user:token@mlflow.example.com/team", "https://mlflow.example.com/team"),  # no credentials
        ("databricks", None),
        ("postgresql://user:pw@db/mlflow", None),
    ],
)
def test_links_point_at_the_ui_of_the_tracking_uri_in_use(
    uri: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MLFLOW_UI_ENV, raising=False)
    assert mlflow_ui_url(uri) == expected


def test_the_ui_address_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MLFLOW_UI_ENV, "http://127.0.0.1:5001/")
    assert mlflow_ui_url("sqlite:///mlflow.db") == "http://127.0.0.1:5001"


def test_markdown_of_a_kept_model_with_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MLFLOW_UI_ENV, raising=False)
    results = {
        **METRICS,
        "mlflow_run_id": "abc123",
        "mlflow_experiment_id": "7",
        "model_version": 4,
        "promotion": "kept",
        "promotion_reason": "test accuracy 0.8123 does not beat champion v2 (0.9000)",
    }
    text = results_markdown(results, PARAMS, "http://mlflow:5000", evaluated=True)
    assert "| accuracy | 0.8123 |" in text and "| MAP@3 | 0.9000 |" in text
    assert "2 categories (circle, square)" in text and "40 test drawings" in text
    assert "[quickdraw-cnn version 4](http://mlflow:5000/#/models/quickdraw-cnn/versions/4)" in text
    assert "[abc123](http://mlflow:5000/#/experiments/7/runs/abc123)" in text
    assert "**kept**" in text and "does not beat champion v2" in text
    assert "evaluate did not run" not in text and "make ui" not in text


def test_markdown_without_tracking_or_links() -> None:
    untracked = Params.model_validate({**PARAMS.model_dump(mode="json"), "mlflow": {"enabled": False}})
    text = results_markdown(METRICS, untracked, LOCAL_MLFLOW_UI, evaluated=False)
    assert "evaluate did not run" in text and "mlflow.enabled: false" in text and "](" not in text
    linkless = results_markdown({**METRICS, "mlflow_run_id": "r1", "model_version": 1}, PARAMS, None, evaluated=True)
    assert "](" not in linkless and "r1" in linkless and "quickdraw-cnn version 1" in linkless


def test_per_class_table_keeps_label_order_and_names_recall_accuracy() -> None:
    rows = [
        {"category": "square", "precision": 0.5, "recall": 0.25, "f1": 0.3333, "support": 8},
        {"category": "circle", "precision": 1.0, "recall": 0.75, "f1": 0.8571, "support": 12},
    ]
    table = per_class_table(rows)
    assert [r["category"] for r in table] == ["square", "circle"]
    assert [r["accuracy"] for r in table] == [0.25, 0.75] and [r["test drawings"] for r in table] == [8, 12]


def test_a_run_is_abandoned_only_when_its_process_here_is_gone() -> None:
    here = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: no process has its pid
    assert RunProcess.parse(f"{here}:{dead.pid}") == RunProcess(here, dead.pid)
    assert is_abandoned(f"{here}:{dead.pid}", here)
    assert not is_abandoned(str(RunProcess.this()), here)  # alive
    assert not is_abandoned(f"elsewhere:{dead.pid}", here)  # another host: not ours to judge
    for other in (None, "", "namespace:job-name", "no-pid-here"):
        assert not is_abandoned(other, here)
