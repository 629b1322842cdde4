"""Report figures, drawn with Matplotlib's object API (no pyplot, no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from quickdraw_dag.runtime.atomic import atomic_path

# The tutorial's classic kernels: vertical, horizontal and Laplacian edges.
CLASSIC_KERNELS = {
    "vertical edges": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], float),
    "horizontal edges": np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], float),
    "laplacian": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float),
}
EDGE_THRESHOLD = 50
# Above this many classes a full confusion matrix and a grid of every class stop being readable
# (344 classes: a 5,263 x 4,810 pixel matrix with 3-point labels); they give way to ranked views.
MANY_CLASSES = 30
SHOWN_PAIRS = 30  # the most-confused pairs drawn at many classes
SHOWN_CLASSES = 25  # the worst (and best) classes drawn at many classes


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


def most_confused_pairs(matrix: np.ndarray, count: int = SHOWN_PAIRS) -> list[tuple[int, int, int, float]]:
    """The off-diagonal cells with the most drawings: (true, predicted, drawings, share of the true class).

    Ties go to the larger share, then to the lower class indices, so the order never depends on the sort.
    """
    totals = matrix.sum(axis=1).clip(min=1)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    pairs = [(int(r), int(c), int(off[r, c]), float(off[r, c] / totals[r])) for r, c in zip(rows, cols)]
    pairs.sort(key=lambda p: (-p[2], -p[3], p[0], p[1]))
    return pairs[:count]


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Each class's accuracy (recall): the share of its test drawings predicted as it; 0 for a class with none."""
    support = matrix.sum(axis=1)
    return np.where(support > 0, np.diag(matrix) / support.clip(min=1), 0.0)


def worst_classes(matrix: np.ndarray, count: int = SHOWN_CLASSES) -> np.ndarray:
    """Indices of the `count` least accurate classes, worst first (ties: the lower index)."""
    accuracy = per_class_accuracy(matrix)
    return np.lexsort((np.arange(accuracy.size), accuracy))[:count]


def confusion_views(matrix: np.ndarray, labels: Sequence[str], plots_dir: Path) -> list[str]:
    """The confusion plots for this many classes; returns the names written (stems under `plots_dir`).

    Up to `MANY_CLASSES`: the full matrix. Above: the most-confused pairs and the per-class accuracy
    of the worst and best classes (every class's figures are in the evaluate stage's per-class table).
    """
    if len(labels) <= MANY_CLASSES:
        confusion_matrix_plot(matrix, labels, plots_dir / "confusion_matrix.png")
        return ["confusion_matrix"]
    most_confused_plot(matrix, labels, plots_dir / "most_confused.png")
    class_accuracy_plot(matrix, labels, plots_dir / "class_accuracy.png")
    return ["most_confused", "class_accuracy"]


def most_confused_plot(matrix: np.ndarray, labels: Sequence[str], path: Path) -> None:
    """The most-confused pairs as labelled bars: 'true → predicted', drawings and share of the true class."""
    pairs = most_confused_pairs(matrix)
    figure = Figure(figsize=(9, 1.5 + 0.3 * max(1, len(pairs))))
    axis = figure.add_subplot(1, 1, 1)
    names = [f"{labels[t]} → {labels[p]}" for t, p, _, _ in pairs]
    counts = [n for _, _, n, _ in pairs]
    axis.barh(range(len(pairs)), counts, color="tab:red")
    axis.set_yticks(range(len(pairs)), names, fontsize=8)
    axis.invert_yaxis()
    for row, (_, _, n, share) in enumerate(pairs):
        axis.text(n, row, f" {n} ({share:.0%})", va="center", fontsize=7)
    axis.set_xlabel("test drawings (share of the true class)")
    mistakes = int(matrix.sum() - np.trace(matrix))
    axis.set_title(
        f"The {len(pairs)} most-confused pairs, true → predicted ({len(labels)} classes, {mistakes} mistakes)"
    )
    axis.margins(x=0.15)
    save(figure, path)


def class_accuracy_plot(matrix: np.ndarray, labels: Sequence[str], path: Path) -> None:
    """Per-class accuracy of the worst and the best classes, side by side, with the mean as a line."""
    accuracy = per_class_accuracy(matrix)
    worst = worst_classes(matrix)
    best = np.lexsort((np.arange(accuracy.size), -accuracy))[: len(worst)]
    figure = Figure(figsize=(11, 1.5 + 0.28 * len(worst)))
    support = matrix.sum(axis=1)
    for column, (chosen, title, colour) in enumerate(
        ((worst, "worst", "tab:red"), (best, "best", "tab:green")), start=1
    ):
        axis = figure.add_subplot(1, 2, column)
        axis.barh(range(len(chosen)), accuracy[chosen], color=colour)
        axis.set_yticks(range(len(chosen)), [f"{labels[i]} (n={int(support[i])})" for i in chosen], fontsize=8)
        axis.invert_yaxis()
        axis.axvline(accuracy.mean(), color="black", linestyle="--", linewidth=1, label=f"mean {accuracy.mean():.2f}")
        axis.set_xlim(0, 1)
        axis.set_xlabel("accuracy (recall)")
        axis.set_title(f"The {len(chosen)} {title} of {len(labels)} classes")
        axis.legend(loc="lower right", fontsize=8)
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
