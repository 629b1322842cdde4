"""Screen network and schedule candidates on a processed project: test accuracy and seconds, epoch by epoch.

    python -m bench.candidates PROJECT '{"batch_norm": false, "epochs": 10}' ['{"flip": true}' ...]

PROJECT is a project folder whose fetch, split and preprocess stages have run
(for example a copy made by `bench.workspace.copy_project`, with
`data.source` set to a real set). Each candidate is a JSON object of
overrides of the default network (the seed tutorial's family: three blocks of
two 3×3 convolutions, 32/64/128 filters, L2 1e-5, Adam 1e-3, batch 128,
cosine over `epochs` with one warmup epoch) and of what `build_cnn` does not
offer, to see whether it would earn a place there: `flip` (random horizontal
flips in training), `label_smoothing`, `head` (`flatten` | `gap`),
`precision` (a Keras dtype policy: `float32` | `mixed_bfloat16`). After every
epoch the test split is scored, plain and averaged with its horizontal mirror
(test-time flips), and the seconds of training so far are printed (scoring
not counted). Exploration only: a default is decided by `bench.quality`,
side by side with the recipe over three seeds.

`--save DIR` keeps each candidate's final test probabilities
(`DIR/candidate-<n>.npy`, n counting from 0 in the order given) for
`bench.ceiling`, which ensembles them and shows the drawings every candidate
gets wrong.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops, regularizers

from quickdraw_dag.artifacts import Catalog, read_categories, read_scaling
from quickdraw_dag.config.schema import PRECISIONS
from quickdraw_dag.data.stream import MemmapBatches, open_split
from quickdraw_dag.training.callbacks import cosine_schedule
from quickdraw_dag.training.determinism import seed_everything
from quickdraw_dag.training.precision import dtype_policy

DEFAULTS: dict[str, Any] = {
    "batch_norm": True,
    "filters": 32,
    "dropout": 0.3,
    "head": "flatten",
    "flip": False,
    "label_smoothing": 0.0,
    "epochs": 12,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "seed": 0,
    "precision": "float32",
}


def build(config: dict[str, Any], scaling: Any, classes: int, size: int) -> keras.Model:
    seed, width, dropout = config["seed"], config["filters"], config["dropout"]
    inputs = keras.Input(shape=(size, size), dtype="uint8")
    x = layers.Rescaling(scaling.scale, scaling.offset)(layers.Reshape((size, size, 1))(inputs))
    if config["flip"]:
        x = layers.RandomFlip("horizontal", seed=seed)(x)
    for block, filters in enumerate((width, 2 * width, 4 * width), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=not config["batch_norm"],
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + 10 * block + conv),
                kernel_regularizer=regularizers.L2(1e-5),
            )(x)
            if config["batch_norm"]:
                x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        if block > 1:
            x = layers.Dropout(min(dropout + 0.1 * (block - 2), 0.9), seed=seed + block)(x)
    x = layers.GlobalAveragePooling2D()(x) if config["head"] == "gap" else layers.Flatten()(x)
    x = layers.Dropout(max(dropout - 0.1, 0.0), seed=seed + 9)(x)
    outputs = layers.Dense(
        classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + 90),
        dtype="float32",  # probabilities in float32 whatever the policy (Keras's advice for mixed precision)
    )(x)
    return keras.Model(inputs, outputs)


def smoothed_loss(classes: int, smoothing: float) -> Any:
    def loss(labels: Any, probabilities: Any) -> Any:
        one_hot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(one_hot, probabilities, label_smoothing=smoothing)

    return loss


class TestScores(keras.callbacks.Callback):
    """Test accuracy, plain and with test-time flips, after each epoch; training seconds without this scoring."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batches: MemmapBatches) -> None:
        super().__init__()
        self.images, self.labels, self.batches = images, labels, batches
        self.start, self.own_s, self.points = time.time(), 0.0, []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.batches.set_epoch(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.time()
        plain = self.model.predict(self.images, batch_size=512, verbose=0)
        mirrored = self.model.predict(np.ascontiguousarray(self.images[:, :, ::-1]), batch_size=512, verbose=0)
        point = {
            "epoch": epoch + 1,
            "seconds": round(now - self.start - self.own_s, 1),
            "accuracy": float(np.mean(plain.argmax(1) == self.labels)),
            "with_test_flips": float(np.mean((plain + mirrored).argmax(1) == self.labels)),
        }
        self.points.append(point)
        print(json.dumps(point), flush=True)
        self.own_s += time.time() - now


def screen(catalog: Catalog, overrides: dict[str, Any], save: Path | None = None) -> dict[str, Any]:
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"unknown candidate keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    config = {**DEFAULTS, **overrides}
    seed_everything(config["seed"], True)
    classes = len(read_categories(catalog))
    train_x, train_y = open_split(catalog, "train")
    test_x, test_y = open_split(catalog, "test")
    batches = MemmapBatches(train_x, train_y, batch_size=config["batch_size"], shuffle=True, seed=config["seed"])
    steps = len(batches)
    if config["precision"] not in PRECISIONS:
        raise SystemExit(f"precision must be one of {PRECISIONS}, not {config['precision']!r}")
    with dtype_policy(config["precision"]):
        model = build(config, read_scaling(catalog), classes, int(train_x.shape[1]))
    smoothing = config["label_smoothing"]
    model.compile(
        optimizer=keras.optimizers.Adam(cosine_schedule(config["learning_rate"], config["epochs"] * steps, steps)),
        loss=smoothed_loss(classes, smoothing) if smoothing else "sparse_categorical_crossentropy",
    )
    scores = TestScores(np.ascontiguousarray(test_x), np.asarray(test_y, np.int64), batches)
    model.fit(batches, epochs=config["epochs"], shuffle=False, callbacks=[scores], verbose=0)
    if save is not None:
        np.save(save, model.predict(scores.images, batch_size=512, verbose=0))
    return {"config": config, "parameters": model.count_params(), "points": scores.points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a project folder with data/processed")
    parser.add_argument("candidates", nargs="+", type=json.loads, help="JSON objects of overrides, one per candidate")
    parser.add_argument("--save", type=Path, help="keep each candidate's final test probabilities in this folder")
    args = parser.parse_args()
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    for number, overrides in enumerate(args.candidates):
        save = None if args.save is None else args.save / f"candidate-{number}.npy"
        print("RESULT", json.dumps(screen(Catalog.under(args.project), overrides, save)), flush=True)


if __name__ == "__main__":
    main()
