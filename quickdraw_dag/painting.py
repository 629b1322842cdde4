"""Painting an image with an MLP: pixel coordinates in, colour out.

Everything here works on whole arrays (no loop over pixels): the coordinate
grid, the optional random Fourier features, the tutorial's two colour
classes, the metrics. The model maps normalized (x, y), or their Fourier
features, to normalized RGB (`regression`) or to one of two colour classes
(`classification`: "blue" when r + g + b ≤ threshold, else "grey").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quickdraw_dag.config.paint import PaintParams
from quickdraw_dag.data.pictures import open_picture
from quickdraw_dag.errors import ConfigError

SAMPLE_PREFIX = "matplotlib:"
CLASS_NAMES = ("grey", "blue")  # label 0, label 1 (the tutorial's names)
LEAKY_RELU_SLOPE = 0.1  # the tutorials' leaky ReLU: max(0.1·x, x) (Keras's default slope is 0.2)
PERCEPTRON_THRESHOLD = 0.5  # the perceptron's one output above this means "blue" (label 1)


def resolve_image(image: str) -> Path:
    """A path, or `matplotlib:<name>` for a sample image that ships with matplotlib."""
    if image.startswith(SAMPLE_PREFIX):
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / image.removeprefix(SAMPLE_PREFIX)
        if not path.is_file():
            samples = sorted(p.name for p in path.parent.glob("*.*") if p.suffix in (".png", ".jpg"))
            raise ConfigError(f"paint.image: no matplotlib sample {path.name!r} (there are: {', '.join(samples)})")
        return path
    return Path(image)


def load_image(image: str, longest_side: int) -> np.ndarray:
    """RGB uint8 H×W×3, downscaled so its longest side is at most `longest_side`.

    Read by `data.pictures.open_picture`: 16-bit and float pictures by their value range,
    transparent pixels composited on white, as a viewer shows them.
    """
    from PIL import Image

    path = resolve_image(image)
    if not path.is_file():
        raise ConfigError(f"paint.image: {path}: no such file")
    picture = open_picture(path, "RGB")
    width, height = picture.size
    scale = min(1.0, longest_side / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(picture, dtype=np.uint8)


def pixel_grid(height: int, width: int) -> np.ndarray:
    """(x, y) of every pixel, row-major, each in [-1, 1]; shape (H·W, 2)."""
    ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def fourier_matrix(size: int, scale: float, seed: int) -> np.ndarray:
    """B (2×size) with entries drawn from N(0, scale²), seeded."""
    return (np.random.default_rng(seed).normal(0.0, scale, (2, size))).astype(np.float32)


def fourier_features(coordinates: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[sin 2πBx, cos 2πBx] (Tancik et al., 2020): lets an MLP fit fine detail."""
    projected = (2.0 * np.pi) * (coordinates.astype(np.float64) @ matrix.astype(np.float64))
    return np.concatenate([np.sin(projected), np.cos(projected)], axis=1).astype(np.float32)


def model_inputs(coordinates: np.ndarray, params: PaintParams) -> np.ndarray:
    if not params.fourier.enabled:
        return coordinates
    return fourier_features(coordinates, fourier_matrix(params.fourier.size, params.fourier.scale, params.seed))


def colour_labels(image: np.ndarray, threshold: int) -> np.ndarray:
    """1 ("blue") where r + g + b ≤ threshold, else 0 ("grey"), per pixel (H×W)."""
    return (image.astype(np.int32).sum(axis=-1) <= threshold).astype(np.int32)


def class_colours(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each class's mean colour (2×3 uint8); a class with no pixel gets the overall mean."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    flat = labels.ravel()
    overall = pixels.mean(axis=0)
    colours = np.empty((2, 3))
    for label in (0, 1):  # two classes, not a loop over pixels
        chosen = pixels[flat == label]
        colours[label] = chosen.mean(axis=0) if chosen.size else overall
    return np.rint(colours).clip(0, 255).astype(np.uint8)


def mse(source: np.ndarray, painting: np.ndarray) -> float:
    """Mean squared error on colours scaled to [0, 1]."""
    difference = source.astype(np.float64) / 255.0 - painting.astype(np.float64) / 255.0
    return float(np.mean(difference**2))


def psnr(source: np.ndarray, painting: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (peak 1 on [0, 1] colours); inf when identical."""
    error = mse(source, painting)
    return float("inf") if error == 0 else float(10.0 * np.log10(1.0 / error))


def build_mlp(inputs: int, params: PaintParams):
    """hidden_layers × Dense(units, activation), then sigmoid RGB or a 2-class softmax.

    With `hidden_layers: 0` in classification, the second tutorial's
    perceptron: one neuron with a leaky ReLU, trained towards 1 for "blue"
    and 0 for "grey"; it can only draw a straight boundary between them.
    """
    import keras

    layers = [keras.Input((inputs,), name="coordinates")]
    for index in range(params.hidden_layers):
        if params.activation == "leaky_relu":
            layers.append(keras.layers.Dense(params.units, name=f"hidden_{index + 1}"))
            layers.append(keras.layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=f"leaky_relu_{index + 1}"))
        else:
            layers.append(keras.layers.Dense(params.units, activation=params.activation, name=f"hidden_{index + 1}"))
    if params.mode == "regression":
        layers.append(keras.layers.Dense(3, activation="sigmoid", name="rgb"))
        loss = "mse"
    elif params.hidden_layers == 0:
        layers.append(keras.layers.Dense(1, name="perceptron"))
        layers.append(keras.layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name="perceptron_leaky_relu"))
        loss = "mse"
    else:
        layers.append(keras.layers.Dense(2, activation="softmax", name="colour_class"))
        loss = "sparse_categorical_crossentropy"
    model = keras.Sequential(layers, name=f"paint_{params.mode}")
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss)
    return model


def predicted_classes(predicted: np.ndarray) -> np.ndarray:
    """Colour class per pixel: the perceptron's one output against its threshold, else the most probable class."""
    if predicted.shape[1] == 1:
        return (predicted[:, 0] >= PERCEPTRON_THRESHOLD).astype(np.int64)
    return np.argmax(predicted, axis=1)
