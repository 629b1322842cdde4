"""The same training and evaluation code runs on the JAX backend (no TensorFlow-only API)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, needs_jax, write_best


def test_train_on_jax_then_evaluate_on_tensorflow_agree(tmp_path: Path, tiny_processed: Catalog) -> None:
    needs_jax()
    catalog = Catalog.under(tmp_path)
    shutil.copytree(tiny_processed.processed, catalog.processed)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    write_best(catalog, filters=8)
    args = [
        "--set",
        "train.epochs=2",
        "--set",
        "train.batch_size=32",
        "--set",
        "evaluate.misclassified=4",
        "--set",
        "mlflow.enabled=false",
    ]  # about backends; tracking is tested elsewhere

    def stage(name: str, backend: str) -> dict:
        env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
        done = subprocess.run(
            [sys.executable, "-m", f"tasks.{name}", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((catalog.history if name == "train" else catalog.metrics).read_text())

    history = stage("train", "jax")
    assert history["backend"] == "jax" and history["epochs_run"] == 2
    on_jax = stage("evaluate", "jax")
    on_tensorflow = stage("evaluate", "tensorflow")
    assert on_jax["test_images"] == on_tensorflow["test_images"] > 0
    assert on_jax["accuracy"] == pytest.approx(on_tensorflow["accuracy"], abs=1e-9)
    assert on_jax["map_at_3"] == pytest.approx(on_tensorflow["map_at_3"], abs=1e-6)
