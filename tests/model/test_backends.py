"""The same training and evaluation code runs on the JAX backend, on one device or data-parallel on two.

No TensorFlow-only API: a model trained on JAX is an ordinary `.keras` file, and the evaluate stage
scores it the same under either backend.

Data-parallel training (`train.devices`) on two simulated JAX devices equals training on one.
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
different batch or unaveraged gradients would come.

One JAX process trains both models and scores the one-device model with the evaluate stage; one
TensorFlow process then runs the evaluate stage on both, which the two tests compare (two
processes where the two tests had five: a TensorFlow or JAX start costs about 5 CPU seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, needs_jax, write_best

# Both tests read the same two runs, built once: on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("jax")]

# Relative difference allowed between one and two devices in each epoch's loss and val_loss (see above);
# accuracies, counted on 36 validation drawings, may differ by a drawing or two (ACCURACY_TOLERANCE).
TOLERANCE = 0.01
ACCURACY_TOLERANCE = 0.06
ON_JAX = """
import json, sys
from pathlib import Path

import keras
import numpy as np

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.schema import EvaluateParams, TrainParams
from quickdraw_dag.data.stream import open_split
from quickdraw_dag.training.devices import place
from quickdraw_dag.training.model import load_model
from tasks.evaluate import evaluate
from tasks.train import train

assert keras.backend.backend() == "jax"
for devices, folder in ((1, "one"), (2, "two")):
    catalog = Catalog.under(Path(sys.argv[1]) / folder)
    train(TrainParams(epochs=3, batch_size=32, max_steps=None, max_seconds=None, devices=devices), catalog)
images, labels = open_split(catalog, "test")
predicted = load_model(str(catalog.model)).predict(np.asarray(images), verbose=0).argmax(axis=1)
metrics = evaluate(EvaluateParams(misclassified=4, samples_per_class=2), Catalog.under(Path(sys.argv[1]) / "one"))
print(json.dumps({"visible": list(place(2).devices), "accuracy": float((predicted == labels).mean()), "one": metrics}))
"""

ON_TENSORFLOW = """
import sys
from pathlib import Path

import keras

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.schema import EvaluateParams
from tasks.evaluate import evaluate

assert keras.backend.backend() == "tensorflow"
for folder in sys.argv[1:]:
    evaluate(EvaluateParams(misclassified=4, samples_per_class=2), Catalog.under(Path(folder)))
"""


@dataclass(frozen=True)
class JaxRuns:
    """Two models trained on JAX (`one` device and `two`), and what each backend's evaluation said."""

    root: Path
    on_jax: dict  # the devices JAX saw, the two-device model's accuracy, the evaluate stage's metrics of `one`
    on_tensorflow: dict[str, dict]  # the evaluate stage's metrics under TensorFlow, by folder


def even_splits(catalog: Catalog) -> None:
    """Train and validation cut to an even count: with an odd one, two JAX devices would leave a drawing out
    of each epoch's last batch (`MemmapBatches(multiple_of=2)`) and the runs would not see the same data."""
    for split in ("train", "val"):
        images, labels = (np.load(path) for path in (catalog.images(split), catalog.labels(split)))
        keep = labels.shape[0] - labels.shape[0] % 2
        np.save(catalog.images(split), images[:keep])
        np.save(catalog.labels(split), labels[:keep])


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory: pytest.TempPathFactory, tiny_processed: Catalog) -> JaxRuns:
    needs_jax()
    root = tmp_path_factory.mktemp("backends")
    for folder in ("one", "two"):
        catalog = Catalog.under(root / folder)
        shutil.copytree(tiny_processed.processed, catalog.processed)
        even_splits(catalog)
        write_best(catalog, filters=8)
    jax = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    done = subprocess.run(
        [sys.executable, "-c", ON_JAX, str(root)], env=jax, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    on_jax = json.loads(done.stdout.strip().splitlines()[-1])
    tensorflow = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}
    folders = [str(root / "one"), str(root / "two")]
    evaluated = subprocess.run(
        [sys.executable, "-c", ON_TENSORFLOW, *folders], env=tensorflow, capture_output=True, text=True, timeout=600
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    on_tensorflow = {folder: json.loads(Catalog.under(root / folder).metrics.read_text()) for folder in ("one", "two")}
    return JaxRuns(root, on_jax, on_tensorflow)


def test_train_on_jax_then_evaluate_on_tensorflow_agree(jax_runs: JaxRuns) -> None:
    history = json.loads(Catalog.under(jax_runs.root / "one").history.read_text())
    assert history["backend"] == "jax" and history["epochs_run"] == 3
    on_jax, on_tensorflow = jax_runs.on_jax["one"], jax_runs.on_tensorflow["one"]
    assert on_jax["test_images"] == on_tensorflow["test_images"] > 0
    assert on_jax["accuracy"] == pytest.approx(on_tensorflow["accuracy"], abs=1e-9)
    assert on_jax["map_at_3"] == pytest.approx(on_tensorflow["map_at_3"], abs=1e-6)


def test_two_jax_devices_train_as_one_and_the_model_evaluates_under_tensorflow(jax_runs: JaxRuns) -> None:
    assert jax_runs.on_jax["visible"] == ["cpu:0", "cpu:1"]
    one = json.loads(Catalog.under(jax_runs.root / "one").history.read_text())
    two = json.loads(Catalog.under(jax_runs.root / "two").history.read_text())
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
    metrics = jax_runs.on_tensorflow["two"]
    assert metrics["test_images"] > 0
    assert metrics["accuracy"] == pytest.approx(jax_runs.on_jax["accuracy"], abs=1e-9)  # the same model either way
