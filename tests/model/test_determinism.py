"""Same params, same data, same code: the same model, byte for byte, and the same metrics.

Two fresh project copies run the flow as users do (`python -m flows.pipeline`), side by side, on the
shipped real bitmaps; then the stage functions run in a process of their own (no Prefect, no MLflow run
around them) on the same data and params. Everything a reproduction promises must match across all
three: the tuning result, the model file (its DVC hash), the per-epoch history and the test metrics. The
flow's process has threads of its own (Prefect's websocket pings draw from Python's global `random`), so
nothing the model depends on may be drawn from global random state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, SAMPLES, set_params

# The two flow runs are built once, for the two tests that compare with them: on one worker.
FLOWS = pytest.mark.xdist_group("determinism")


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


@dataclass(frozen=True)
class FlowPair:
    """Two fresh flow runs of one params file, `plain` and `noisy` (NOISY_FLOW), as `outputs` reads them."""

    roots: dict[str, Path]
    outputs: dict[str, dict[str, Any]]


def outputs(catalog: Catalog) -> dict[str, Any]:
    """Everything a reproduction promises: the search's choice, the model's bytes, every epoch, the metrics."""
    return {
        "model": catalog.model.read_bytes(),
        "best_hparams": catalog.best_hparams.read_bytes(),
        "metrics": json.loads(catalog.metrics.read_text()),
        "metrics_file": catalog.metrics.read_bytes(),  # byte for byte, as DVC hashes it
        "epochs": json.loads(catalog.history.read_text())["epochs"],
    }


@pytest.fixture(scope="module")
def flow_pair(tmp_path_factory: pytest.TempPathFactory, worker_prefect_server: str) -> FlowPair:
    """`python -m flows.pipeline --until evaluate` in two fresh copies, on 4 shipped real classes (issue 24).

    Side by side, so that the two runs' threads interleave as they will. Both report to the worker's Prefect
    server: a module fixture is set up before the per-test one that exports its address, and each flow
    would otherwise start a temporary server of its own (~10 CPU s).
    """
    from bench.workspace import copy_project

    started = {}
    for name, command in (("plain", ["-m", "flows.pipeline"]), ("noisy", ["-c", NOISY_FLOW])):
        root = copy_project(tmp_path_factory.mktemp(name) / "project")
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
        env["PREFECT_API_URL"] = worker_prefect_server
        argv = [sys.executable, *command, "--until", "evaluate"]
        log = subprocess.PIPE
        started[name] = (root, subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT))
    logs = {name: process.communicate(timeout=600)[0] for name, (_, process) in started.items()}  # both, then
    for name, (_, process) in started.items():
        assert process.returncode == 0, f"the {name} flow run failed:\n{logs[name].decode()[-3000:]}"
    roots = {name: root for name, (root, _) in started.items()}
    return FlowPair(roots, {name: outputs(Catalog.under(root)) for name, root in roots.items()})


@pytest.mark.slow
@FLOWS
def test_two_fresh_flow_runs_give_the_same_model_bytes_and_metrics(flow_pair: FlowPair) -> None:
    plain, noisy = flow_pair.outputs["plain"], flow_pair.outputs["noisy"]
    assert plain["metrics"]["accuracy"] > 0.4  # above chance (0.25): not a trivially equal pair
    assert plain["best_hparams"] == noisy["best_hparams"]
    assert plain["epochs"] == noisy["epochs"]  # every per-epoch figure, to the last bit
    assert plain["metrics_file"] == noisy["metrics_file"]
    assert plain["model"] == noisy["model"]


# The stage functions without Prefect or an MLflow run around them, reading the flow run's params.yaml as
# the stage commands do (here tune, train and evaluate in one process).
DRIVER = """
import sys
from pathlib import Path

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.loading import load_params
from tasks.evaluate import evaluate
from tasks.train import train
from tasks.tune import tune

params = load_params(Path(sys.argv[1]), root=None)
catalog = Catalog.under(Path(sys.argv[2]))
tune(params.tune, catalog)
train(params.train, catalog)
evaluate(params.evaluate, catalog)
"""


@pytest.mark.slow
@FLOWS
def test_a_fresh_stage_run_gives_the_flow_runs_model_bytes_and_metrics(tmp_path: Path, flow_pair: FlowPair) -> None:
    """Another fresh process, of another kind, on the flow run's data and params: the same bytes.

    With the test above (the flow repeats itself), this run repeating the flow's shows that the stages
    repeat too, and that the stages alone and a flow run of one params file give one model hash.
    """
    flow_root = flow_pair.roots["plain"]
    catalog = Catalog.under(tmp_path / "stages")
    shutil.copytree(Catalog.under(flow_root).processed, catalog.processed)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(flow_root / "params.yaml"), str(tmp_path / "stages")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stages, flow = outputs(catalog), flow_pair.outputs["plain"]
    assert stages["metrics"]["accuracy"] > 0.4  # it learned something: not a trivially equal pair
    assert stages["best_hparams"] == flow["best_hparams"]
    assert stages["epochs"] == flow["epochs"]
    assert stages["metrics_file"] == flow["metrics_file"]
    assert stages["model"] == flow["model"]


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
