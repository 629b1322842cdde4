"""Report figures, drawn with Matplotlib's object API (no pyplot, no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from quickdraw_dag.atomic import atomic_path

# The tutorial's classic kernels: vertical, horizontal and Laplacian edges.
CLASSIC_KERNELS = {
    "vertical edges": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], float),
    "horizontal edges": np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], float),
    "laplacian": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float),
}
EDGE_THRESHOLD = 50


def save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")


def training_curves(history: dict[str, Any], path: Path) -> None:
    """Loss and accuracy, train against validation, each labelled for what it is."""
    epochs = [row["epoch"] for row in history["epochs"]]
    figure = Figure(figsize=(11, 4))
    for axis, metric, title in (
        (figure.add_subplot(1, 2, 1), "loss", "Loss"),
        (figure.add_subplot(1, 2, 2), "accuracy", "Accuracy"),
    ):
        axis.plot(epochs, [r.get(metric) for r in history["epochs"]], "o-", label=f"train {metric}")
        axis.plot(epochs, [r.get(f"val_{metric}") for r in history["epochs"]], "s-", label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    save(figure, path)


def confusion_matrix_plot(matrix: np.ndarray, labels: Sequence[str], path: Path) -> None:
    """Row-normalized; counts written in cells up to 30 classes, readable at 345."""
    classes = len(labels)
    side = min(max(6.0, classes * 0.28), 60.0)
    figure = Figure(figsize=(side, side))
    axis = figure.add_subplot(1, 1, 1)
    totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    image = axis.imshow(matrix / totals, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    font = max(3.0, min(10.0, 300.0 / classes))
    axis.set_xticks(range(classes), labels, rotation=90, fontsize=font)
    axis.set_yticks(range(classes), labels, fontsize=font)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("Confusion matrix (row-normalized)")
    if classes <= 30:
        for row in range(classes):
            for col in range(classes):
                if matrix[row, col]:
                    share = matrix[row, col] / totals[row, 0]
                    axis.text(
                        col,
                        row,
                        str(matrix[row, col]),
                        ha="center",
                        va="center",
                        fontsize=font,
                        color="white" if share > 0.5 else "black",
                    )
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    save(figure, path)


def image_grid(images: np.ndarray, titles: Sequence[str], path: Path, columns: int, title: str) -> None:
    count = len(images)
    rows = max(1, int(np.ceil(count / columns)))
    figure = Figure(figsize=(columns * 1.5, rows * 1.7))
    figure.suptitle(title)
    for index in range(count):
        axis = figure.add_subplot(rows, columns, index + 1)
        axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        axis.set_title(titles[index], fontsize=7)
        axis.axis("off")
    save(figure, path)


def max_pool(image: np.ndarray, size: int = 2) -> np.ndarray:
    """2×2 max pooling, vectorized (the tutorial loops over every pixel)."""
    height, width = (image.shape[0] // size) * size, (image.shape[1] // size) * size
    trimmed = image[:height, :width]
    return trimmed.reshape(height // size, size, width // size, size).max(axis=(1, 3))


def classic_feature_maps(image: np.ndarray) -> dict[str, np.ndarray]:
    from scipy.signal import convolve2d

    maps = {}
    for name, kernel in CLASSIC_KERNELS.items():
        edges = convolve2d(image.astype(float), kernel, mode="same")
        maps[name] = np.where(edges > EDGE_THRESHOLD, edges, 0.0)
    maps["2x2 max pooling"] = max_pool(image.astype(float))
    return maps


def feature_maps(image: np.ndarray, kernels: np.ndarray, activations: np.ndarray, path: Path, shown: int = 8) -> None:
    """A test drawing through the classic kernels, beside the model's first layer."""
    classic = classic_feature_maps(image)
    shown = min(shown, kernels.shape[-1])
    figure = Figure(figsize=(2.0 * max(len(classic) + 1, shown), 6.4))
    top = len(classic) + 1
    columns = max(top, shown)
    axis = figure.add_subplot(3, columns, 1)
    axis.imshow(image, cmap="gray_r")
    axis.set_title("test drawing", fontsize=8)
    axis.axis("off")
    for index, (name, values) in enumerate(classic.items()):
        axis = figure.add_subplot(3, columns, index + 2)
        axis.imshow(values, cmap="gray_r")
        axis.set_title(f"{name}" + ("" if "pool" in name else f" > {EDGE_THRESHOLD}"), fontsize=8)
        axis.axis("off")
    for index in range(shown):
        axis = figure.add_subplot(3, columns, columns + index + 1)
        axis.imshow(kernels[:, :, 0, index], cmap="RdBu_r")
        axis.set_title(f"learned filter {index}", fontsize=8)
        axis.axis("off")
        axis = figure.add_subplot(3, columns, 2 * columns + index + 1)
        axis.imshow(activations[:, :, index], cmap="viridis")
        axis.set_title(f"activation {index}", fontsize=8)
        axis.axis("off")
    figure.suptitle("Classic kernels (top) and the trained model's first convolution (filters, activations)")
    save(figure, path)


def paint_comparison(source: np.ndarray, painting: np.ndarray, metrics: dict[str, Any], path: Path) -> None:
    """Source, painting and absolute error side by side, at the image's own pixels."""
    error = np.abs(source.astype(np.int16) - painting.astype(np.int16)).mean(axis=-1)
    figure = Figure(figsize=(12, 4.2))
    quality = f"PSNR {metrics['psnr_db']:.2f} dB"
    if "pixel_accuracy" in metrics:
        quality += f", pixel accuracy {metrics['pixel_accuracy']:.3f}"
    for index, (image, title) in enumerate(((source, "source"), (painting, f"painting ({quality})"))):
        axis = figure.add_subplot(1, 3, index + 1)
        axis.imshow(image, interpolation="nearest")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    axis = figure.add_subplot(1, 3, 3)
    shown = axis.imshow(error, cmap="magma", vmin=0, vmax=255, interpolation="nearest")
    axis.set_title("absolute error (mean over RGB, 0-255)", fontsize=10)
    axis.axis("off")
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    save(figure, path)


def paint_loss_curve(losses: Sequence[float], path: Path) -> None:
    figure = Figure(figsize=(6, 4))
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(range(1, len(losses) + 1), losses)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("training loss")
    axis.set_title("Paint MLP loss")
    axis.grid(alpha=0.3)
    save(figure, path)
