"""SIGKILL in the middle of download, preprocess and evaluate; the rerun completes.

(tune and train are killed in tests/integration/test_ml_stages.py.) Data
outputs after the rerun are byte-identical to an uninterrupted run, no output
path ever holds a torn file, and the MLflow run of a killed attempt is
marked KILLED with a note by the next run instead of staying RUNNING.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats.binary import write_binary
from tests.helpers import kill_when, prepare_slow_preprocess, run_module, set_params, start, tree_digest, twin
from tests.http_server import FaultyServer


@pytest.mark.slow
def test_killed_download_resumes_to_the_exact_file(project: Path, record) -> None:
    batch = synthetic.generate("circle", 3000, 0)
    buffer = io.BytesIO()
    write_binary(buffer, batch)
    body = buffer.getvalue()
    small = io.BytesIO()
    write_binary(small, synthetic.generate("square", 100, 1))
    server = FaultyServer()
    server.files.update({"apple.bin": body, "cat.bin": small.getvalue()})
    server.sticky["apple.bin"] = ("trickle", 4096, 0.03)  # a slow link: about 2 s for the file
    reference = twin(project, "reference")
    with server.running():
        args = (
            "--set",
            "data.source=quickdraw",
            "--set",
            "data.categories=[apple, cat]",
            "--set",
            f"fetch.download.base_url={server.url}",
        )
        part = project / "data/raw/apple.bin.part"
        process = start("tasks.fetch", *args, cwd=project)
        kill_when(process, lambda: part.exists() and part.stat().st_size > len(body) // 4)
        assert not (project / "data/raw/apple.bin").exists() and not Catalog.under(project).manifest.exists()
        kept = part.stat().st_size
        assert run_module("tasks.fetch", *args, cwd=project).returncode == 0
        assert run_module("tasks.fetch", *args, cwd=reference).returncode == 0
    assert (project / "data/raw/apple.bin").read_bytes() == body
    resumed = [rng for path, rng in server.requests if path == "apple.bin" and rng]
    assert resumed and int(resumed[0].removeprefix("bytes=").rstrip("-")) >= kept - 65536
    assert tree_digest(project / "data/raw") == tree_digest(reference / "data/raw")
    record(
        "kill and resume",
        stage="download",
        kills=1,
        completed_after_rerun=1,
        outputs_identical=1,
        detail=f"killed at {kept} of {len(body)} bytes; resumed with {resumed[0]}",
    )


@pytest.mark.slow
def test_killed_preprocess_reruns_to_identical_outputs(project: Path, record) -> None:
    prepare_slow_preprocess(project)
    reference = twin(project, "reference")
    process = start("tasks.preprocess", cwd=project)
    kill_when(
        process, lambda: any((project / "data").glob(f".processed.*.tmp/{Catalog.under(project).images('train').name}"))
    )
    assert not (project / "data/processed").exists()  # nothing torn at the output path
    assert run_module("tasks.preprocess", cwd=project).returncode == 0
    assert run_module("tasks.preprocess", cwd=reference).returncode == 0
    assert tree_digest(project / "data/processed") == tree_digest(reference / "data/processed")
    assert [p.name for p in (project / "data").iterdir() if p.name.startswith(".")] == []  # leftovers cleaned
    record(
        "kill and resume",
        stage="preprocess",
        kills=1,
        completed_after_rerun=1,
        outputs_identical=1,
        detail="killed while rasterizing; rerun byte-identical to an uninterrupted run",
    )


def _run_statuses(database: Path) -> dict[str, str]:
    if not database.exists():
        return {}
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            return dict(connection.execute("select run_uuid, status from runs"))
    except sqlite3.Error:
        return {}


@pytest.mark.slow
def test_killed_evaluate_leaves_no_running_mlflow_run(project: Path, record) -> None:
    import mlflow

    from quickdraw_dag.artifacts import Catalog
    from quickdraw_dag.config.schema import TrainParams
    from tasks.train import train
    from tests.helpers import build_processed, write_best

    set_params(project, data={"source": "synthetic", "categories": ["circle", "square", "line"]})
    catalog = build_processed(Catalog.under(project), drawings=60)  # the project's own layout
    write_best(catalog)
    train(TrainParams(epochs=1, batch_size=32, max_seconds=None), catalog)
    database = project / "mlflow.db"
    process = start("tasks.evaluate", cwd=project)
    kill_when(process, lambda: "RUNNING" in _run_statuses(database).values())
    killed = [run for run, status in _run_statuses(database).items() if status == "RUNNING"]
    assert killed
    result = run_module("tasks.evaluate", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    statuses = _run_statuses(database)
    assert "RUNNING" not in statuses.values()
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    for run_id in killed:
        run = mlflow.get_run(run_id)
        assert run.info.status == "KILLED" and "ended without finishing" in run.data.tags["killed_note"]
    finished = [
        run
        for run, status in statuses.items()
        if status == "FINISHED" and "mlflow.parentRunId" not in mlflow.get_run(run).data.tags
    ]
    assert len(finished) == 1  # the rerun's own parent run, complete
    metrics = yaml.safe_load(Catalog.under(project).metrics.read_text())
    assert mlflow.get_run(finished[0]).data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    record(
        "kill and resume",
        stage="evaluate",
        kills=1,
        completed_after_rerun=1,
        runs_left_running=sum(s == "RUNNING" for s in statuses.values()),
        detail=f"{len(killed)} MLflow run(s) of the killed attempt marked KILLED with a note",
    )
