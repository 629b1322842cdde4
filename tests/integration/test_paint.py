"""The paint flow end to end: quality on a tiny image, bad images, DVC stage vs Prefect flow, its own pipeline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import PAINT_PIPELINE, PaintCatalog
from quickdraw_dag.config.paint import PaintParams
from tests.helpers import dvc, run_module, set_params

TINY = {"longest_side": 16, "epochs": 6, "hidden_layers": 2, "units": 16, "fourier": {"enabled": True, "size": 16}}


def tiny_image(path: Path) -> Path:
    """A 24×24 picture: a smooth gradient with a dark disc, like a small photo."""
    from PIL import Image

    ys, xs = np.mgrid[0:24, 0:24]
    image = np.stack([xs * 10, ys * 10, np.full_like(xs, 160)], axis=-1).astype(np.uint8)
    image[(xs - 12) ** 2 + (ys - 12) ** 2 < 30] = (20, 30, 120)
    Image.fromarray(image).save(path)
    return path


def test_tiny_image_is_painted_well_in_both_modes(tmp_path: Path) -> None:
    from tasks.paint import paint

    image = str(tiny_image(tmp_path / "tiny.png"))
    params = PaintParams(
        image=image,
        epochs=80,
        hidden_layers=3,
        units=64,
        learning_rate=0.003,
        fourier={"enabled": True, "size": 32, "scale": 3.0},
    )
    catalog = PaintCatalog.under(tmp_path)
    result = paint(params, catalog)
    source = result["source"]
    flat = np.broadcast_to(source.reshape(-1, 3).mean(axis=0).round().astype(np.uint8), source.shape)
    from quickdraw_dag.painting import psnr

    metrics = json.loads(catalog.paint_metrics.read_text())
    assert metrics["psnr_db"] == pytest.approx(result["metrics"]["psnr_db"])
    assert metrics["psnr_db"] > 25.0 and metrics["psnr_db"] > psnr(source, flat) + 10.0
    assert metrics["train_seconds"] > 0 and metrics["pixels"] == 24 * 24
    assert {p.name for p in catalog.paint_dir.iterdir()} == {"painting.png", "comparison.png", "loss.png", "loss.csv"}
    losses = result["losses"]
    assert len(losses) == 80 and losses[-1] < losses[0] / 5
    assert len(result["snapshots"]) == 10 and max(result["snapshots"]) == 80

    classified = paint(params.model_copy(update={"mode": "classification"}), catalog)
    labels = source.astype(int).sum(-1) <= 600
    painting = classified["painting"]
    colours = {tuple(c) for c in painting.reshape(-1, 3).tolist()}
    assert len(colours) == 2  # only the two class colours
    assert classified["metrics"]["pixel_accuracy"] > 0.95
    assert classified["metrics"]["class_share"]["blue"] == pytest.approx(labels.mean())


@pytest.mark.parametrize("kind", ["missing", "unreadable"])
def test_a_missing_or_unreadable_image_exits_2_naming_the_path(project: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "photo.jpg"
    if kind == "unreadable":
        path.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    # as DVC runs it: in the paint pipeline's folder
    result = run_module("tasks.paint", "--set", f"paint.image={path}", cwd=project / PAINT_PIPELINE, code=project)
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and "Traceback" not in result.stderr
    assert not (project / PAINT_PIPELINE / "reports").exists() and not (project / "reports").exists()


@pytest.mark.slow
def test_dvc_stage_and_prefect_flow_paint_the_same_picture(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    set_params(project / PAINT_PIPELINE, paint={**TINY, "image": "matplotlib:logo2.png"})
    twin = tmp_path / "twin"
    shutil.copytree(project, twin)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'paint.db'}")

    by_dvc = dvc(project, "--cd", "paint", "repro")  # `make repro-paint`
    assert by_dvc.returncode == 0, by_dvc.stdout + by_dvc.stderr
    assert "Running stage 'paint'" in by_dvc.stdout
    by_flow = run_module("flows.paint", cwd=twin)  # `make paint`, from the project root
    assert by_flow.returncode == 0, by_flow.stderr[-3000:]
    assert "painted: PSNR" in by_flow.stdout + by_flow.stderr

    ours, theirs = PaintCatalog.under(project / PAINT_PIPELINE), PaintCatalog.under(twin / PAINT_PIPELINE)
    assert (ours.paint_dir / "painting.png").read_bytes() == (theirs.paint_dir / "painting.png").read_bytes()
    dvc_metrics = json.loads(ours.paint_metrics.read_text())
    flow_metrics = json.loads(theirs.paint_metrics.read_text())
    assert dvc_metrics["psnr_db"] == flow_metrics["psnr_db"] and dvc_metrics["mse"] == flow_metrics["mse"]

    # DVC semantics both ways: the flow recorded its run in paint/dvc.lock, so DVC has nothing to do
    # and a second flow run skips; a second `dvc repro` skips too.
    assert "up to date" in dvc(twin, "--cd", "paint", "status").stdout
    again = run_module("flows.paint", cwd=twin)
    assert again.returncode == 0 and "paint: unchanged since" in again.stdout + again.stderr, again.stderr[-3000:]
    assert "Running stage" not in dvc(project, "--cd", "paint", "repro").stdout
    # and the doodle pipeline's DVC project does not see the paint pipeline at all
    assert "paint" not in dvc(twin, "status").stdout

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    experiment = mlflow.get_experiment_by_name("paint")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert len(runs) == 2  # one from dvc repro, one from the flow; the skipped runs logged nothing
    assert mlflow.get_experiment_by_name("quickdraw") is None  # its own experiment, not the doodle one
    orchestrators = sorted(r.data.tags["orchestrator"] for r in runs)
    assert orchestrators == ["dvc-or-cli", "prefect"]
    client = mlflow.MlflowClient()
    for run in runs:
        assert run.data.metrics["psnr_db"] == pytest.approx(dvc_metrics["psnr_db"])
        assert run.data.params["paint.fourier.enabled"] == "True" and run.data.params["paint.epochs"] == "6"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 6
        names = {a.path for a in client.list_artifacts(run.info.run_id, "paint")}
        assert "paint/painting.png" in names and "paint/comparison.png" in names
