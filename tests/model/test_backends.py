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

One JAX process runs the stages' command lines (`tasks.train`, `tasks.evaluate`: their `main`, with the
shipped params.yaml) for both models and scores the one-device model; one TensorFlow process runs the
evaluate stage's command line on both, and the two tests compare what they wrote (two processes where the
two tests had five: a TensorFlow or JAX start costs about 5 CPU seconds).
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
# The stages' own command lines (`python -m tasks.train`, as `dvc repro` runs them, with the shipped
# params.yaml), called in one process per backend; each phase prints a line of JSON as it ends, so that a
# failure of one phase fails only the test that reads it.
STAGE = ["--set", "train.epochs=3", "--set", "train.batch_size=32", "--set", "mlflow.enabled=false"]
EVALUATE = [*STAGE, "--set", "evaluate.misclassified=4", "--set", "evaluate.samples_per_class=2"]

ON_JAX = f"""
import json, os, sys
from pathlib import Path

import keras
import numpy as np

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.data.stream import open_split
from quickdraw_dag.training.devices import place
from quickdraw_dag.training.model import load_model
from tasks import evaluate, train

assert keras.backend.backend() == "jax"
root = Path(sys.argv[1])
os.chdir(root / "one")  # train.devices: auto, one CPU device of the two JAX sees
assert train.main({STAGE!r}) == 0 and evaluate.main({EVALUATE!r}) == 0
print(json.dumps({{"one": json.loads(Catalog.under(Path(".")).metrics.read_text())}}), flush=True)
os.chdir(root / "two")
assert train.main([*{STAGE!r}, "--set", "train.devices=2"]) == 0
images, labels = open_split(Catalog.under(Path(".")), "test")
predicted = load_model(str(Catalog.under(Path(".")).model)).predict(np.asarray(images), verbose=0).argmax(axis=1)
print(json.dumps({{"two": {{"visible": list(place(2).devices), "accuracy": float((predicted == labels).mean())}}}}))
"""

ON_TENSORFLOW = f"""
import json, os, sys

import keras

from tasks import evaluate

assert keras.backend.backend() == "tensorflow"
for folder in sys.argv[1:]:
    os.chdir(folder)
    print(json.dumps({{os.path.basename(folder): evaluate.main({EVALUATE!r})}}), flush=True)
"""


def phases(done: subprocess.CompletedProcess) -> dict:
    """The JSON lines a driver printed, merged; the exit code and the end of stderr under `failed`."""
    found = {
        key: value
        for line in done.stdout.splitlines()
        if line.startswith("{")
        for key, value in json.loads(line).items()
    }
    return {**found, "failed": f"exit {done.returncode}: {done.stderr[-3000:]}"}


@dataclass(frozen=True)
class JaxRuns:
    """Two models trained on JAX (`one` device and `two`), and what each backend's evaluation said."""

    root: Path
    on_jax: dict  # `one`: its evaluate stage's metrics; `two`: the devices JAX saw, the model's accuracy
    on_tensorflow: dict  # the evaluate stage's exit code under TensorFlow, by folder


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
        shutil.copy(REPO / "params.yaml", root / folder / "params.yaml")
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
    tensorflow = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}
    folders = [str(root / "one"), str(root / "two")]
    evaluated = subprocess.run(
        [sys.executable, "-c", ON_TENSORFLOW, *folders], env=tensorflow, capture_output=True, text=True, timeout=600
    )
    on_jax, on_tensorflow = phases(done), phases(evaluated)
    return JaxRuns(root, on_jax, on_tensorflow)


def tensorflow_metrics(jax_runs: JaxRuns, folder: str) -> dict:
    """The metrics the evaluate stage wrote under TensorFlow for `folder` (its exit code checked first)."""
    assert jax_runs.on_tensorflow.get(folder) == 0, jax_runs.on_tensorflow["failed"]
    return json.loads(Catalog.under(jax_runs.root / folder).metrics.read_text())


def test_train_on_jax_then_evaluate_on_tensorflow_agree(jax_runs: JaxRuns) -> None:
    assert "one" in jax_runs.on_jax, jax_runs.on_jax["failed"]
    history = json.loads(Catalog.under(jax_runs.root / "one").history.read_text())
    assert history["backend"] == "jax" and history["epochs_run"] == 3
    on_jax, on_tensorflow = jax_runs.on_jax["one"], tensorflow_metrics(jax_runs, "one")
    assert on_jax["test_images"] == on_tensorflow["test_images"] > 0
    assert on_jax["accuracy"] == pytest.approx(on_tensorflow["accuracy"], abs=1e-9)
    assert on_jax["map_at_3"] == pytest.approx(on_tensorflow["map_at_3"], abs=1e-6)


def test_two_jax_devices_train_as_one_and_the_model_evaluates_under_tensorflow(jax_runs: JaxRuns) -> None:
    assert "two" in jax_runs.on_jax, jax_runs.on_jax["failed"]
    assert jax_runs.on_jax["two"]["visible"] == ["cpu:0", "cpu:1"]
    one = json.loads(Catalog.under(jax_runs.root / "one").history.read_text())
    two = json.loads(Catalog.under(jax_runs.root / "two").history.read_text())
    assert one["devices"] == ["cpu:0"] and two["devices"] == ["cpu:0", "cpu:1"]  # `auto`: one CPU device
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
    metrics = tensorflow_metrics(jax_runs, "two")
    assert metrics["test_images"] > 0
    assert metrics["accuracy"] == pytest.approx(jax_runs.on_jax["two"]["accuracy"], abs=1e-9)  # the same model
