"""paint: teach an MLP to paint an image from pixel coordinates (the seeds' first tutorials).

`regression` maps normalized (x, y) to normalized RGB; `classification` maps
them to the tutorial's two colour classes ("blue" when r + g + b ≤
`paint.threshold`, else "grey") and paints each class in its mean colour.
Optional random Fourier features of the coordinates (`paint.fourier`) let
the same MLP fit much finer detail.

The stage of the paint pipeline (`paint/dvc.yaml`, params in
`paint/params.yaml`; DVC runs it in that folder). Writes the paint folder
(`PaintCatalog.paint_dir`: painting.png, comparison.png with source, painting
and absolute error, loss.png, loss.csv) and the paint metrics (PSNR and MSE;
pixel accuracy for classification; training seconds), and logs them to MLflow
in the paint pipeline's own experiment (`mlflow.experiment`, default `paint`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_dag.artifacts import PaintCatalog, csv_bytes
from quickdraw_dag.config.paint import PaintParams, PaintPipelineParams
from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.painting import (
    CLASS_NAMES,
    build_mlp,
    class_colours,
    colour_labels,
    load_image,
    model_inputs,
    mse,
    pixel_grid,
    predicted_classes,
    psnr,
)
from quickdraw_dag.runtime.atomic import atomic_directory, write_json_atomic
from quickdraw_dag.runtime.cli import run_entry_point
from quickdraw_dag.runtime.progress import progress_bar
from quickdraw_dag.tracking.store import close_stopped_runs

log = logging.getLogger(__name__)
SNAPSHOTS = 10  # paintings kept during training, for MLflow's image comparison


def _epoch_callback(epochs: int, inputs: np.ndarray, to_image: Any, snapshots: dict[int, np.ndarray]):
    """Progress bar, a log line every tenth of the run, and painting snapshots."""
    import keras

    every = max(1, epochs // SNAPSHOTS)

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = progress_bar(total=epochs, desc="paint", unit="epoch")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            loss = float((logs or {}).get("loss", float("nan")))
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.5f}")
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                log.info("paint: epoch %d/%d loss %.5f", epoch + 1, epochs, loss)
                snapshots[epoch + 1] = to_image(self.model.predict(inputs, batch_size=8192, verbose=0))

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.close()

    return EpochProgress()


def paint(params: PaintParams, catalog: PaintCatalog) -> dict[str, Any]:
    """Train the MLP on one image and paint it back; returns the metrics (and the arrays)."""
    source = load_image(params.image, params.longest_side)
    height, width, _ = source.shape
    inputs = model_inputs(pixel_grid(height, width), params)
    from quickdraw_dag.training.determinism import seed_everything

    seed_everything(params.seed)  # same seed, same painting
    if params.mode == "regression":
        targets = source.reshape(-1, 3).astype(np.float32) / 255.0

        def to_image(predicted: np.ndarray) -> np.ndarray:
            return np.rint(predicted * 255.0).clip(0, 255).astype(np.uint8).reshape(height, width, 3)
    else:
        labels = colour_labels(source, params.threshold)
        targets = labels.ravel()
        colours = class_colours(source, labels)

        def to_image(predicted: np.ndarray) -> np.ndarray:
            return colours[predicted_classes(predicted)].reshape(height, width, 3)

    from quickdraw_dag.training.stopping import stop_when_signalled  # imports Keras: only when painting

    model = build_mlp(inputs.shape[1], params)
    snapshots: dict[int, np.ndarray] = {}
    log.info(
        "paint: %s, %dx%d pixels, %s, %d×%d %s%s",
        params.image,
        width,
        height,
        params.mode,
        params.hidden_layers,
        params.units,
        params.activation,
        f", Fourier features {params.fourier.size}@{params.fourier.scale}" if params.fourier.enabled else "",
    )
    started = time.perf_counter()
    history = model.fit(
        inputs,
        targets,
        batch_size=params.batch_size,
        epochs=params.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[_epoch_callback(params.epochs, inputs, to_image, snapshots), *stop_when_signalled()],
    )
    seconds = time.perf_counter() - started
    predicted = model.predict(inputs, batch_size=8192, verbose=0, callbacks=stop_when_signalled())
    painting = to_image(predicted)
    losses = [float(v) for v in history.history["loss"]]
    metrics: dict[str, Any] = {
        "mode": params.mode,
        "width": width,
        "height": height,
        "pixels": width * height,
        "epochs": params.epochs,
        "final_loss": losses[-1],
        "train_seconds": round(seconds, 3),
        "mse": mse(source, painting),
        "psnr_db": psnr(source, painting),
    }
    if params.mode == "classification":
        predicted_labels = predicted_classes(predicted)
        metrics["pixel_accuracy"] = float(np.mean(predicted_labels == targets))
        metrics["class_share"] = {name: float(np.mean(targets == label)) for label, name in enumerate(CLASS_NAMES)}
    write_outputs(catalog, source, painting, losses, metrics)
    log.info(
        "paint: PSNR %.2f dB, MSE %.5f%s in %.1f s",
        metrics["psnr_db"],
        metrics["mse"],
        f", pixel accuracy {metrics['pixel_accuracy']:.4f}" if "pixel_accuracy" in metrics else "",
        seconds,
    )
    return {"metrics": metrics, "painting": painting, "source": source, "losses": losses, "snapshots": snapshots}


def write_outputs(
    catalog: PaintCatalog, source: np.ndarray, painting: np.ndarray, losses: list[float], metrics: dict[str, Any]
) -> None:
    """The paint folder, built aside and swapped in whole, then the metrics."""
    from PIL import Image

    from quickdraw_dag.training.plots import paint_comparison, paint_loss_curve

    with atomic_directory(catalog.paint_dir, owns=catalog.owns("paint_dir")) as out:
        Image.fromarray(painting).save(out / "painting.png", format="PNG")
        paint_comparison(source, painting, metrics, out / "comparison.png")
        paint_loss_curve(losses, out / "loss.png")
        rows = [(epoch, f"{loss:.8g}") for epoch, loss in enumerate(losses, start=1)]
        (out / "loss.csv").write_bytes(csv_bytes(["epoch", "loss"], rows))
    write_json_atomic(catalog.paint_metrics, metrics)


def track(params: PaintParams, mlflow_params: MlflowParams, catalog: PaintCatalog, result: dict[str, Any]) -> str:
    """One MLflow run in the paint experiment: params, loss per epoch, metrics, the painting."""
    import mlflow

    from quickdraw_dag.tracking.lineage import git_state, orchestrator_ids
    from quickdraw_dag.tracking.store import configure, flatten, process_tags

    configure(mlflow_params)
    flow_run_id, deployment = orchestrator_ids()
    encoding = f"fourier{params.fourier.size}x{params.fourier.scale:g}" if params.fourier.enabled else "xy"
    image = Path(params.image.removeprefix("matplotlib:")).stem
    name = f"{image}-{params.mode}-{encoding}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {
        **git_state(),
        "prefect_flow_run_id": flow_run_id or "none",
        "prefect_deployment": deployment or "none",
        "orchestrator": "prefect" if flow_run_id else "dvc-or-cli",
        "image": params.image,
        **process_tags(),
    }
    metrics = result["metrics"]
    with mlflow.start_run(run_name=name, tags=tags) as run:
        mlflow.log_params(flatten(params.model_dump(mode="json"), "paint."))
        for epoch, loss in enumerate(result["losses"], start=1):
            mlflow.log_metric("loss", loss, step=epoch)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "epochs"})
        for epoch, snapshot in sorted(result["snapshots"].items()):
            mlflow.log_image(snapshot, key="painting", step=epoch)  # compare paintings across runs and epochs
        mlflow.log_artifacts(str(catalog.paint_dir), artifact_path="paint")
        mlflow.log_artifact(str(catalog.paint_metrics))
        return run.info.run_id


def run(params: PaintPipelineParams) -> dict[str, Any]:
    """The stage as DVC and Prefect call it."""
    catalog = PaintCatalog.from_paths(params.paths)
    result = paint(params.paint, catalog)
    if params.mlflow.enabled:
        result["metrics"]["mlflow_run_id"] = track(params.paint, params.mlflow, catalog, result)
    return result["metrics"]


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point(
        "python -m tasks.paint", __doc__.splitlines()[0], run, argv, PaintPipelineParams, on_stop=close_stopped_runs
    )


if __name__ == "__main__":
    sys.exit(main())
