"""The Prefect flow under a real (temporary) Prefect server runs the stages that exist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quickdraw_dag.config import load_params
from tests.conftest import REPO


@pytest.mark.slow
def test_pipeline_flow_runs_all_six_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline

    monkeypatch.chdir(tmp_path)
    params = load_params(
        REPO / "params.yaml",
        ["data.source=synthetic", "data.categories=[circle, square, line]", "fetch.synthetic_drawings=60",
         "tune.max_epochs=2", "tune.max_seconds=30", "tune.space.filters=[8]", "tune.space.learning_rate=[0.003]",
         "tune.space.batch_norm=[false]", "train.epochs=3", "preprocess.workers=1"],
    )
    with prefect_test_harness(server_startup_timeout=120):
        result = pipeline(params)
        import anyio
        from prefect import get_client
        from prefect.client.schemas.sorting import FlowRunSort

        async def states() -> list[str]:
            async with get_client() as client:
                # Explicit limit and sort: this server rejects the client's None defaults.
                runs = await client.read_flow_runs(limit=10, sort=FlowRunSort.START_TIME_DESC)
                return [run.state.type.value for run in runs]

        assert anyio.run(states) == ["COMPLETED"]
    assert result["drawings_fetched"] == 180
    assert result["best_hyperparameters"]["filters"] == 8 and result["epochs_trained"] == 3
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert metrics == result["metrics"] and metrics["test_images"] > 0
    assert (tmp_path / "models/model.keras").exists()
    summary = json.loads((tmp_path / "data/interim/split.json").read_text())
    assert summary["totals"] == result["split_totals"]
    assert sum(summary["totals"].values()) == 180 - sum(
        c["dropped"]["unrecognized"] for c in summary["classes"].values()
    )
