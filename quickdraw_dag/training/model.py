"""The CNN family of the seed tutorial, built from plain values.

Three blocks of Conv–Conv–MaxPool (filters f, 2f, 4f; 3×3, same padding, L2),
dropout after blocks 2 and 3, Flatten, Dropout, Dense softmax. The model
takes raw uint8 images (N, H, W): scaling (the preprocess stage's) and
augmentation are layers inside it, so serving needs no preprocessing code
and augmentation runs in training only. Only `keras` APIs are used, so the
same code builds on the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
from keras import layers, regularizers

from quickdraw_dag.artifacts import Scaling
from quickdraw_dag.config.schema import AugmentParams
from quickdraw_dag.errors import DataError, clip

LEAKY_RELU_SLOPE = 0.1  # the tutorials' leaky ReLU: max(0.1·x, x)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}")


def _activation(name: str, layer_name: str) -> layers.Layer:
    # Every layer is named explicitly: Keras's automatic names count the layers built before in the
    # process, so a model built after a search would be saved with other names (and other bytes).
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=layer_name)
    return layers.Activation(name, name=layer_name)


def _initializer(seed: int, layer: int) -> keras.initializers.Initializer:
    """Keras's default (Glorot uniform), seeded from the builder's seed and the layer's number.

    Unseeded, Keras draws each initializer's seed from Python's global `random`, which any thread
    of the process may advance at any time (Prefect's websocket pings do, in the flow's process):
    the same params would then start from other weights.
    """
    return keras.initializers.GlorotUniform(seed=seed * 100 + layer)


def _penalty(l1: float, l2: float) -> regularizers.Regularizer | None:
    if l1 > 0 and l2 > 0:
        return regularizers.L1L2(l1=l1, l2=l2)
    if l1 > 0:
        return regularizers.L1(l1)
    if l2 > 0:
        return regularizers.L2(l2)
    return None


def build_cnn(
    *,
    image_size: int,
    num_classes: int,
    scaling: Scaling,
    filters: int,
    learning_rate: float,
    dropout: float,
    activation: str,
    optimizer: str,
    l2: float,
    l1: float,
    batch_norm: bool,
    augment: AugmentParams | None,
    seed: int,
) -> keras.Model:
    """Build and compile the CNN; every argument is a plain value.

    The hyperparameters (filters … batch_norm) are exactly `SearchSpace`'s fields, and the builder has
    no defaults of its own: the defaults live in params.yaml's search space (and `SearchSpace`).
    Every random draw (initial weights, dropout, augmentation) is seeded from `seed`, so the model
    depends on its arguments only, never on the process's global random state.
    """
    inputs = keras.Input(shape=(image_size, image_size), dtype="uint8", name="image")
    x = layers.Reshape((image_size, image_size, 1), name="channel")(inputs)
    x = layers.Rescaling(scaling.scale, scaling.offset, name=f"scale_{scaling.method}")(x)
    if augment is not None and augment.active:
        # Preprocessing layers are identity at inference: training only.
        if augment.rotation > 0:
            x = layers.RandomRotation(augment.rotation, fill_mode="constant", seed=seed, name="augment_rotation")(x)
        if augment.zoom > 0:
            x = layers.RandomZoom(augment.zoom, fill_mode="constant", seed=seed + 1, name="augment_zoom")(x)
        if augment.translation > 0:
            x = layers.RandomTranslation(
                augment.translation,
                augment.translation,
                fill_mode="constant",
                seed=seed + 2,
                name="augment_translation",
            )(x)
    block_dropout = {1: None, 2: dropout, 3: min(dropout + 0.1, 0.9)}
    for block, width in ((1, filters), (2, 2 * filters), (3, 4 * filters)):
        for conv in (1, 2):
            x = layers.Conv2D(
                width,
                3,
                padding="same",
                use_bias=not batch_norm,
                kernel_initializer=_initializer(seed, 10 * block + conv),
                kernel_regularizer=_penalty(l1, l2),
                name=f"block{block}_conv{conv}",
            )(x)
            if batch_norm:
                # momentum 0.9: short trials must still leave usable moving averages
                x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
            x = _activation(activation, f"block{block}_act{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if block_dropout[block]:
            x = layers.Dropout(block_dropout[block], seed=seed + block, name=f"block{block}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(max(dropout - 0.1, 0.0), seed=seed + 9, name="head_dropout")(x)
    outputs = layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=_initializer(seed, 90),
        name="probabilities",
        dtype="float32",  # probabilities and the loss in float32 under any policy (train.precision)
    )(x)
    model = keras.Model(inputs, outputs, name="quickdraw_cnn")
    compile_cnn(model, make_optimizer(optimizer, learning_rate))
    return model


def compile_cnn(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """The loss and metrics every CNN of this project trains with (`build_cnn`, and `in_float32`'s copy)."""
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def load_model(path: str) -> keras.Model:
    """Load a saved model, never executing code from the file (safe_mode); a refusal is a `DataError`.

    Keras's own message advises passing `safe_mode=False`, which this
    project never does: the file either carries code or is not a model.
    """
    if not Path(path).is_file():
        raise DataError("missing: rerun the stage that writes it", path=path)
    if not zipfile.is_zipfile(path):
        raise DataError("not a Keras model file (a .keras zip archive); rerun the stage that writes it", path=path)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "unsafe" in str(error):
            raise DataError(
                "refusing to load: the model carries code (a Lambda layer or a custom object), which could run "
                "anything; only models this pipeline saved can be loaded",
                path=path,
            ) from None
        raise DataError(
            f"not a model this pipeline can load ({clip(str(error).splitlines()[0], 160)})", path=path
        ) from None
