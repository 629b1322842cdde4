"""The Prefect flow under a real (temporary) Prefect server runs the stages that exist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quickdraw_dag.config import load_params
from tests.conftest import REPO


@pytest.mark.slow
def test_pipeline_flow_runs_fetch_and_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline

    monkeypatch.chdir(tmp_path)
    params = load_params(
        REPO / "params.yaml",
        ["data.source=synthetic", "data.categories=[circle, square, line]", "fetch.synthetic_drawings=40"],
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
    assert result["drawings_fetched"] == 120
    summary = json.loads((tmp_path / "data/interim/split.json").read_text())
    assert summary["totals"] == result["split_totals"]
    assert sum(summary["totals"].values()) == 120 - sum(
        c["dropped"]["unrecognized"] for c in summary["classes"].values()
    )
