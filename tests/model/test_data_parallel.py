"""Data-parallel training (`train.devices`) on two simulated JAX devices equals training on one.

JAX is asked for two CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`), in a
subprocess: the flag is read when JAX starts. The train stage runs twice on the same data and
seed, on one device and on both; Keras's `DataParallel` splits each global batch between the
devices and sums their gradients, so the runs start from the same weights and take the same steps
on the same batches. They are not bit-identical: a gradient summed over two shards rounds
differently from one summed over the whole batch, and training amplifies the difference (Adam's
per-weight normalization, ties in max pooling), so it grows epoch by epoch. Measured here with the
stage's default recipe (Adam, learning rate 0.003, batch 32, 3 epochs; the test prints it): the
training loss differs by 0 after one epoch, 2e-6 after two and 3e-4 after three (relative).
The per-epoch losses must agree within `TOLERANCE`: far closer than a run that saw other data, a
different batch or unaveraged gradients would come. The two-device model is then evaluated by the evaluate stage under
TensorFlow, and predicts there what it predicts on JAX: a model trained data-parallel on JAX is an
ordinary `.keras` file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, needs_jax, write_best

# Relative difference allowed between one and two devices in each epoch's loss and val_loss (see above);
# accuracies, counted on 36 validation drawings, may differ by a drawing or two (ACCURACY_TOLERANCE).
TOLERANCE = 0.01
ACCURACY_TOLERANCE = 0.06
DRIVER = """
import json, sys
from pathlib import Path

import keras
import numpy as np

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.schema import TrainParams
from quickdraw_dag.training.devices import place
from quickdraw_dag.training.model import load_model
from quickdraw_dag.data.stream import open_split
from tasks.train import train

assert keras.backend.backend() == "jax"
for devices, folder in ((1, "one"), (2, "two")):
    catalog = Catalog.under(Path(sys.argv[1]) / folder)
    train(TrainParams(epochs=3, batch_size=32, max_steps=None, max_seconds=None, devices=devices), catalog)
images, labels = open_split(catalog, "test")
predicted = load_model(str(catalog.model)).predict(np.asarray(images), verbose=0).argmax(axis=1)
print(json.dumps({"visible": list(place(2).devices), "accuracy": float((predicted == labels).mean())}))
"""


def even_splits(catalog: Catalog) -> None:
    """Train and validation cut to an even count: with an odd one, two JAX devices would leave a drawing out
    of each epoch's last batch (`MemmapBatches(multiple_of=2)`) and the runs would not see the same data."""
    for split in ("train", "val"):
        images, labels = (np.load(path) for path in (catalog.images(split), catalog.labels(split)))
        keep = labels.shape[0] - labels.shape[0] % 2
        np.save(catalog.images(split), images[:keep])
        np.save(catalog.labels(split), labels[:keep])


@pytest.mark.slow
def test_two_jax_devices_train_as_one_and_the_model_evaluates_under_tensorflow(
    tmp_path: Path, tiny_processed: Catalog
) -> None:
    needs_jax()
    for folder in ("one", "two"):
        catalog = Catalog.under(tmp_path / folder)
        shutil.copytree(tiny_processed.processed, catalog.processed)
        even_splits(catalog)
        write_best(catalog, filters=8)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    on_jax = json.loads(done.stdout.strip().splitlines()[-1])
    assert on_jax["visible"] == ["cpu:0", "cpu:1"]

    one = json.loads(Catalog.under(tmp_path / "one").history.read_text())
    two = json.loads(Catalog.under(tmp_path / "two").history.read_text())
    assert one["devices"] == ["cpu:0"] and two["devices"] == ["cpu:0", "cpu:1"]
    assert one["epochs_run"] == two["epochs_run"] == 3
    differences = []
    for first, second in zip(one["epochs"], two["epochs"]):
        for metric in ("loss", "val_loss"):
            assert second[metric] == pytest.approx(first[metric], rel=TOLERANCE), (first["epoch"], metric)
        for metric in ("accuracy", "val_accuracy"):
            assert second[metric] == pytest.approx(first[metric], abs=ACCURACY_TOLERANCE), (first["epoch"], metric)
        differences.append(abs(second["loss"] - first["loss"]) / first["loss"])
    assert one["epochs"][-1]["loss"] < 0.9 * one["epochs"][0]["loss"]  # it trained: not two equal untrained runs
    print("loss, relative difference between 1 and 2 devices by epoch:", [f"{d:.2e}" for d in differences])

    # The two-device model, evaluated by the evaluate stage under TensorFlow.
    shutil.copy(REPO / "params.yaml", tmp_path / "two" / "params.yaml")
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "tasks.evaluate",
            "--set",
            "mlflow.enabled=false",
            "--set",
            "evaluate.misclassified=4",
            "--set",
            "evaluate.samples_per_class=2",
        ],
        cwd=tmp_path / "two",
        env={**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(Catalog.under(tmp_path / "two").metrics.read_text())
    assert metrics["test_images"] > 0
    assert metrics["accuracy"] == pytest.approx(on_jax["accuracy"], abs=1e-9)  # the same model on either backend
