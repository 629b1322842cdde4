"""Same params, same data, same code: the same model, byte for byte, and the same metrics.

Two fresh workspaces on the shipped real bitmaps run tune → train → evaluate
in a process each, and two fresh project copies run the flow as users do
(`python -m flows.pipeline`); everything a reproduction promises must match:
the tuning result, the model file (its DVC hash), the per-epoch history and
the test metrics. The flow's process has threads of its own (Prefect's
websocket pings draw from Python's global `random`), so nothing the model
depends on may be drawn from global random state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, SAMPLES, set_params

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


def test_the_network_depends_on_its_arguments_only_not_on_global_random_state() -> None:
    """Keras draws an unseeded initializer's seed from Python's `random`, which any thread may advance."""
    import numpy as np

    from quickdraw_dag.artifacts import Scaling
    from quickdraw_dag.config.schema import SearchSpace
    from quickdraw_dag.training.model import build_cnn

    def weights(random_seed: int, draws: int, seed: int = 7) -> list[np.ndarray]:
        random.seed(random_seed)
        for _ in range(draws):  # as a Prefect ping between seeding and building would
            random.random()
        values = {**SearchSpace().first_choices(), "filters": 4}
        scaling = Scaling("minmax", 1 / 255, 0)
        model = build_cnn(**values, image_size=28, num_classes=3, scaling=scaling, augment=None, seed=seed)
        return model.get_weights()

    first, second = weights(0, 0), weights(1, 5)
    assert len(first) == len(second) > 6
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], weights(0, 0, seed=8)[0])  # the builder's seed does reach the weights


# The flow's own entry point, with a thread that draws from Python's global `random` all along (as Prefect's
# websocket keepalive pings do, at moments that vary from run to run): a fault made constant, so the test
# fails whenever the model depends on that state, not only when a ping happens to land at the wrong moment.
NOISY_FLOW = """
import random, sys, threading, time

def draw():
    while True:
        random.random()
        time.sleep(0.001)

threading.Thread(target=draw, daemon=True).start()
from flows.pipeline import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_fresh_flow_runs_give_the_same_model_bytes_and_metrics(tmp_path: Path) -> None:
    """`python -m flows.pipeline --until evaluate` in two fresh copies, on 4 shipped real classes (issue 24)."""
    from bench.workspace import copy_project

    runs = {}
    for name, command in (("plain", ["-m", "flows.pipeline"]), ("noisy", ["-c", NOISY_FLOW])):
        root = copy_project(tmp_path / name)
        set_params(
            root,
            data={"source": str(SAMPLES), "categories": ["bear", "duck", "frog", "lion"]},
            split={"max_per_class": 300},
            tune={
                "max_epochs": 2,
                "factor": 2,
                "batch_size": 64,
                "space": {"filters": [8], "learning_rate": [0.003], "dropout": [0.2, 0.3], "batch_norm": [False]},
            },
            train={"epochs": 4, "batch_size": 64},
            evaluate={"misclassified": 4, "samples_per_class": 2},
            versioning={"push": False},
        )
        env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
        argv = [sys.executable, *command, "--until", "evaluate"]
        runs[name] = (root, subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = []
    for root, process in runs.values():  # side by side: two runs' threads interleave as they will
        log, _ = process.communicate(timeout=600)
        assert process.returncode == 0, log.decode()[-3000:]
        catalog = Catalog.under(root)
        outputs.append(
            {
                "model": catalog.model.read_bytes(),
                "best_hparams": catalog.best_hparams.read_bytes(),
                "metrics": json.loads(catalog.metrics.read_text()),
                "epochs": json.loads(catalog.history.read_text())["epochs"],
            }
        )
    plain, noisy = outputs
    assert plain["metrics"]["accuracy"] > 0.4  # above chance (0.25): not a trivially equal pair
    assert plain["best_hparams"] == noisy["best_hparams"]
    assert plain["epochs"] == noisy["epochs"]
    assert plain["metrics"]["accuracy"] == noisy["metrics"]["accuracy"]
    assert plain["model"] == noisy["model"]


@pytest.mark.parametrize("seed", [0, 7])
def test_the_search_draws_its_trials_values_from_its_seed_not_global_random(seed: int) -> None:
    """KerasTuner reads seed 0 as "no seed" and draws one from global `random`; the tune seed 0 must hold."""
    import keras_tuner as kt

    from quickdraw_dag.training.tuner import DeadlineOracle

    def first_values(global_seed: int) -> list[dict]:
        random.seed(global_seed)  # what another thread of the flow's process may do to global random
        oracle = DeadlineOracle(kt.Objective("val_accuracy", "max"), max_epochs=2, factor=2, seed=seed, deadline=None)
        space = kt.HyperParameters()
        space.Choice("dropout", [0.1, 0.2, 0.3, 0.4, 0.5])
        space.Choice("filters", [8, 16, 32, 64])
        oracle.hyperparameters = space
        return [oracle._random_values() for _ in range(4)]

    drawn = [first_values(global_seed) for global_seed in (1, 2, 3)]
    assert drawn[0] == drawn[1] == drawn[2]
    assert len({tuple(sorted(v.items())) for v in drawn[0]}) > 1  # drawn, not one value repeated
