"""The trained model with what it needs to take drawings: its labels and raster settings.

A `ModelCard` travels inside every logged model (`quickdraw.json` among its
artifacts): the label names in label order, the image size and line width
the training images were drawn with, and the test accuracy. A `Classifier`
is the Keras model plus its card; `predict`, the MLflow pyfunc and the page
all classify through it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_dag.data.formats.batch import DrawingBatch
from quickdraw_dag.data.raster import rasterize
from quickdraw_dag.serving.images import normalize_image
from quickdraw_dag.serving.strokes import Strokes, rasterize_strokes

CARD_FILE = "quickdraw.json"
TOP_K = 3
PREDICT_BATCH = 512  # images per model call: amortizes the call; larger batches were no faster here


@dataclass(frozen=True)
class ModelCard:
    """What a model was trained on and how its images were drawn."""

    categories: tuple[str, ...]
    image_size: int
    line_width: float
    test_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "categories": list(self.categories)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> ModelCard:
        accuracy = data.get("test_accuracy")
        return ModelCard(
            categories=tuple(str(c) for c in data["categories"]),
            image_size=int(data["image_size"]),
            line_width=float(data["line_width"]),
            test_accuracy=None if accuracy is None else float(accuracy),
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def read(path: Path) -> ModelCard:
        return ModelCard.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


class Classifier:
    """A Keras model that takes uint8 images, and the card that says how to make them."""

    def __init__(self, model: Any, card: ModelCard) -> None:
        self.model = model
        self.card = card
        self._lock = threading.Lock()  # one model call at a time: a threaded server shares one model

    @classmethod
    def load(cls, keras_path: str | Path, card_path: str | Path) -> Classifier:
        from quickdraw_dag.training.model import load_model

        classifier = cls(load_model(str(keras_path)), ModelCard.read(Path(card_path)))
        classifier.warm_up()
        return classifier

    def warm_up(self) -> None:
        """Load the compiled rasterizer and trace the model once, so the first guess is as fast as the rest."""
        dot = [(np.zeros(2, np.uint8), np.zeros(2, np.uint8))]
        self.probabilities(self.images_from_strokes([dot]))

    # --- the one input path ---

    def images_from_batch(self, batch: DrawingBatch) -> np.ndarray:
        return rasterize(batch, self.card.image_size, self.card.line_width)

    def images_from_strokes(self, drawings: Sequence[Strokes]) -> np.ndarray:
        return rasterize_strokes(drawings, self.card.image_size, self.card.line_width)

    def image_from_pixels(self, picture: Any) -> np.ndarray:
        return normalize_image(picture, self.card.image_size, self.card.line_width)

    def images_from_pixels(self, pictures: Sequence[Any]) -> np.ndarray:
        size = self.card.image_size
        out = np.empty((len(pictures), size, size), np.uint8)
        for index, picture in enumerate(pictures):
            out[index] = self.image_from_pixels(picture)
        return out

    # --- the model ---

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) for uint8 images (n, size, size)."""
        if images.shape[0] == 0:
            return np.zeros((0, len(self.card.categories)), np.float32)
        parts = []
        with self._lock:
            for start in range(0, images.shape[0], PREDICT_BATCH):
                parts.append(np.asarray(self.model.predict_on_batch(images[start : start + PREDICT_BATCH])))
        return np.concatenate(parts)

    def classify(self, images: np.ndarray, k: int = TOP_K) -> list[dict[str, Any]]:
        return ranked(self.probabilities(images), self.card.categories, k)


def ranked(probabilities: np.ndarray, categories: Sequence[str], k: int = TOP_K) -> list[dict[str, Any]]:
    """Per drawing: its best `label` and `probability`, and the `top_k` list of both, most probable first."""
    k = max(1, min(int(k), probabilities.shape[1] if probabilities.ndim == 2 else 1))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    results = []
    for row, indices in zip(probabilities, order):
        top = [{"label": categories[i], "probability": float(row[i])} for i in indices]
        results.append({"label": top[0]["label"], "probability": top[0]["probability"], "top_k": top})
    return results
