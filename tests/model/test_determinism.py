"""Same params, same data, same code: the same model, byte for byte, and the same metrics.

Two fresh workspaces on the shipped real bitmaps run tune → train → evaluate
in a process each (as the flow does); everything a reproduction promises
must match: the tuning result, the model file (its DVC hash), the per-epoch
history and the test metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO

DRIVER = """
import sys
from pathlib import Path

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.schema import EvaluateParams, SearchSpace, TrainParams, TuneParams
from tasks.evaluate import evaluate
from tasks.train import train
from tasks.tune import tune

catalog = Catalog.under(Path(sys.argv[1]))
space = SearchSpace(filters=(8, 12), learning_rate=(0.003,), batch_norm=(False,))
tune(TuneParams(max_epochs=2, factor=2, train_fraction=0.5, batch_size=64, space=space, max_seconds=None), catalog)
train(TrainParams(epochs=3, batch_size=64, max_seconds=None), catalog)
evaluate(EvaluateParams(misclassified=4, samples_per_class=2), catalog)
"""


@pytest.fixture(scope="module")
def real_processed(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Catalog:
    """Three real categories × 1,000 bitmaps from samples/quickdraw, fetched, split and preprocessed."""
    from quickdraw_dag.config.schema import DataParams, FetchParams, PreprocessParams, SplitParams
    from quickdraw_dag.runtime.fanout import serial_map
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split

    catalog = Catalog.under(tmp_path_factory.mktemp("real"))
    data = DataParams(source=str(samples), categories=("bear", "frog", "sheep"))
    fetch(data, FetchParams(), catalog)
    split(data, SplitParams(), catalog)
    preprocess(data, PreprocessParams(), catalog, serial_map)
    return catalog


@pytest.mark.slow
def test_two_fresh_runs_give_the_same_model_bytes_and_metrics(tmp_path: Path, real_processed: Catalog) -> None:
    outputs = []
    for name in ("first", "second"):
        catalog = Catalog.under(tmp_path / name)
        shutil.copytree(real_processed.processed, catalog.processed)
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(tmp_path / name)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        history = json.loads(catalog.history.read_text())
        outputs.append(
            {
                "model": catalog.model.read_bytes(),
                "best_hparams": catalog.best_hparams.read_bytes(),
                "metrics": catalog.metrics.read_bytes(),
                "epochs": history["epochs"],
            }
        )
    first, second = outputs
    assert json.loads(first["metrics"])["accuracy"] > 0.5  # it learned something: not a trivially equal pair
    assert first["best_hparams"] == second["best_hparams"]
    assert first["epochs"] == second["epochs"]  # every per-epoch figure, to the last bit
    assert first["metrics"] == second["metrics"]
    assert first["model"] == second["model"]  # so dvc.lock records the same hash
