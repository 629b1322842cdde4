"""The MLflow pyfunc every registered version carries: strokes or images in, top-3 labels out.

Input: a table (pandas DataFrame, or `dataframe_records` over HTTP) with one
drawing per row, in either column:

- `strokes`: Google's stroke layout, `[[xs, ys], ...]` (simplified, integers
  0-255) or `[[xs, ys, ts], ...]` (raw screen coordinates, any scale); with an
  optional `format` column (`auto`, `raw`, `simplified`; see
  `serving.strokes`);
- `image`: a 2-D list of grey levels 0-255, either polarity, any size.

Output: one object per row with `label`, `probability` and `top_k` (a list of
`label`/`probability`, most probable first; 3 unless the `top_k` param
says otherwise), the fields `predict --json` prints.

The model is logged with MLflow's models-from-code (`mlflow_model.py`, no
pickle), the project's package as its code (so a served version runs the code
it was logged with), and as artifacts the Keras model file and the
`ModelCard` (labels, image size, line width, test accuracy).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import orjson
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

from quickdraw_dag.artifacts import Catalog, read_label_names, read_metrics
from quickdraw_dag.serving.classifier import CARD_FILE, TOP_K, Classifier, ModelCard
from quickdraw_dag.serving.images import ImageError
from quickdraw_dag.serving.strokes import StrokeError, parse_drawing

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # quickdraw_dag/
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
# What the model's code imports, pinned at the versions it was logged with (MLflow would otherwise
# infer them by loading the model in a subprocess, which costs a model load per logged run).
REQUIREMENTS = (
    "mlflow",
    "keras",
    "tensorflow-cpu",
    "numpy",
    "numba",
    "pandas",
    "pillow",
    "orjson",
    "pydantic",
    "pyyaml",
    "quickdraw",
)
DRAWING_COLUMNS = ("strokes", "image")
EXPECTED_COLUMNS = "expected columns 'strokes' (with an optional 'format') or 'image', one drawing per row"
# A drawing as the page sends it: raw screen coordinates (px) and times (ms); a house.
EXAMPLE_STROKES = [
    [[40.0, 40.0, 200.0, 200.0, 40.0], [260.0, 120.0, 120.0, 260.0, 260.0], [0, 180, 360, 540, 720]],
    [[30.0, 120.0, 210.0], [130.0, 40.0, 130.0], [1100, 1300, 1500]],
    [[100.0, 100.0, 140.0, 140.0], [260.0, 200.0, 200.0, 260.0], [2000, 2150, 2250, 2400]],
]


class QuickDrawModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: rows of strokes or images → top-k labels with probabilities."""

    classifier: Classifier
    # Input is checked by the signature and `parse_drawing`. MLflow reads type hints on `predict` as a
    # second, stricter schema (hence none there), and would warn on every load that they are missing.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.classifier = Classifier.load(context.artifacts["keras_model"], context.artifacts["card"])

    def predict(self, context, model_input, params=None):  # -> list of {label, probability, top_k}
        try:
            k = int((params or {}).get("top_k") or TOP_K)
            return classify_rows(self.classifier, rows_of(model_input), k)
        except MlflowException:
            raise
        except Exception as error:  # noqa: BLE001 - any other failure: one line to the client, the traceback to the log
            log.exception("predict failed")
            raise RequestError(f"the model failed on this input ({type(error).__name__})", INTERNAL_ERROR) from None


class RequestError(MlflowException):
    """A request the pyfunc cannot answer; `mlflow models serve` answers its HTTP status and this one-line message.

    MLflow's scoring server rewrites a predict error's message to "Failed to predict data
    '<the whole input table>'. \nError: <message>" (many lines, as long as the request); this
    exception keeps its own message through that rewrite, so the body says what was wrong and
    nothing else. INVALID_PARAMETER_VALUE (the default) answers 400.
    """

    def __init__(self, message: str, error_code: int = INVALID_PARAMETER_VALUE) -> None:
        super().__init__(" ".join(str(message).split()), error_code=error_code)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = value.rsplit("\nError: ", 1)[-1]


def rows_of(model_input: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of dicts or one dict → a list of row dicts (as many as the input's rows)."""
    if hasattr(model_input, "to_dict"):
        # MLflow drops the columns its signature does not name, and with them the rows: a table of
        # only unknown columns arrives empty, and would be answered with no predictions at all.
        if not set(DRAWING_COLUMNS) & set(getattr(model_input, "columns", ())):
            raise _bad_input(f"no {' or '.join(map(repr, DRAWING_COLUMNS))} column: {EXPECTED_COLUMNS}")
        return model_input.to_dict(orient="records")
    if isinstance(model_input, dict):
        return [model_input]
    if isinstance(model_input, list) and all(isinstance(row, dict) for row in model_input):
        return model_input
    raise _bad_input(f"input must be a table: {EXPECTED_COLUMNS}")


def classify_rows(classifier: Classifier, rows: list[dict[str, Any]], k: int = TOP_K) -> list[dict[str, Any]]:
    """Classify rows of strokes or images in one batch."""
    return classifier.classify(images_of_rows(classifier, rows), k)


def images_of_rows(classifier: Classifier, rows: list[dict[str, Any]]) -> np.ndarray:
    """The model's input images of rows of strokes or images: the served input path."""
    size = classifier.card.image_size
    images = np.empty((len(rows), size, size), np.uint8)
    drawings, drawing_rows = [], []
    for number, row in enumerate(rows):
        image, strokes = _present(row.get("image")), _present(row.get("strokes"))
        try:
            if image is not None:
                images[number] = classifier.image_from_pixels(_plain(image))
            elif strokes is not None:
                if isinstance(strokes, str):
                    strokes = orjson.loads(strokes)
                fmt = _present(row.get("format"))
                drawings.append(parse_drawing(_plain(strokes), "auto" if fmt is None else fmt))
                drawing_rows.append(number)
            else:
                raise StrokeError("a row needs 'strokes' or 'image'")
        except (StrokeError, ImageError, orjson.JSONDecodeError) as error:
            raise _bad_input(f"row {number}: {error}") from None
    images[drawing_rows] = classifier.images_from_strokes(drawings)
    return images


def _present(value: Any) -> Any:
    """None for a missing cell (pandas fills them with None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _plain(value: Any) -> Any:
    """Nested numpy arrays (as pandas may hand them over) → lists."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value] if value.dtype == object else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _bad_input(message: str) -> MlflowException:
    return RequestError(message)


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

    # Strokes and images are ragged nested lists of ints or floats: `any`, checked by `parse_drawing`.
    inputs = Schema(
        [
            ColSpec(AnyType(), "strokes", required=False),
            ColSpec("string", "format", required=False),
            ColSpec(AnyType(), "image", required=False),
        ]
    )
    entry = Object([Property("label", "string"), Property("probability", "double")])
    outputs = Schema([ColSpec("string", "label"), ColSpec("double", "probability"), ColSpec(Array(entry), "top_k")])
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("top_k", "long", TOP_K)]))


def input_example(image: np.ndarray) -> Any:
    """One drawing as raw strokes and one as an image (a test image of the model's own data)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "strokes": [EXAMPLE_STROKES, None],
            "format": ["raw", "auto"],
            "image": [None, np.asarray(image, np.uint8).tolist()],
        }
    )


def requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue  # e.g. tensorflow instead of tensorflow-cpu: not pinned, the local env serves
    return pins


def log_pyfunc_model(catalog: Catalog, artifact_path: str = "model") -> Any:
    """Log the trained model of `catalog` as this run's pyfunc named `artifact_path`; returns MLflow's ModelInfo.

    `mlflow.pyfunc.log_model` makes it an MLflow 3 logged model, linked to the run in the UI's
    model view, where the run's test metrics are shown against it.
    """
    from quickdraw_dag.data.stream import open_split

    labels = read_label_names(catalog)
    metrics = read_metrics(catalog) if catalog.metrics.exists() else {}
    card = ModelCard(
        categories=tuple(labels["categories"]),
        image_size=int(labels["image_size"]),
        line_width=float(labels.get("line_width", 16.0)),  # label names written before line_width was recorded
        test_accuracy=metrics.get("accuracy"),
    )
    test_images, _ = open_split(catalog, "test")
    size = card.image_size
    example = np.asarray(test_images[0]) if test_images.shape[0] else np.zeros((size, size), np.uint8)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        code = root / "code" / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__"))
        card_path = root / CARD_FILE
        card.write(card_path)
        return mlflow.pyfunc.log_model(
            name=artifact_path,
            python_model=str(MODEL_CODE),
            artifacts={"keras_model": str(catalog.model), "card": str(card_path)},
            code_paths=[str(code)],
            signature=signature(),
            input_example=input_example(example),
            pip_requirements=requirements(),
            metadata={"quickdraw": card.to_json()},
        )
