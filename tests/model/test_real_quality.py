"""Model quality on real drawings: the shipped 7 x 1,000 bitmaps must reach a stated accuracy.

Synthetic doodles are far too easy (99.9%) to notice a change that hurts on real
drawings; this runs the stage functions on `samples/quickdraw` (preprocess,
train with the default recipe on a small budget, evaluate), deterministically,
so a change that costs real-data accuracy fails `make test`, not only a
benchmark. The floor sits a little below what this code measures, to allow
for a CPU whose floating-point kernels differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog, write_tuning_result
from quickdraw_dag.config.schema import (
    DataParams,
    EvaluateParams,
    FetchParams,
    PreprocessParams,
    SplitParams,
    TrainParams,
)
from tests.helpers import SAMPLE_CATEGORIES, SHARED

EPOCHS = 4
# This test measured 0.6862 on the 7 shipped categories (test split: 698 drawings; batch norm, learning
# rate 1e-3, cosine over the 4 epochs, final weights; train.precision auto, bfloat16 on this CPU; one
# TensorFlow thread, as under `make test`), deterministic on this machine; 0.6920 in float32 (before
# 2026-12-05); the floor leaves 1.1 points for another CPU's kernels or arithmetic. It trained 8 epochs
# (0.7206, floor 0.71) until 2026-12-04: half the CPU seconds of the suite's costliest test, and the whole
# cosine schedule is still run, only shorter. (The full default, 25 epochs: 0.7813 over 3 seeds, bench.quality.)
FLOOR = 0.675


@pytest.mark.slow
def test_the_default_recipe_on_real_drawings_reaches_its_floor(tmp_path: Path, samples: Path) -> None:
    from quickdraw_dag.runtime.fanout import serial_map
    from tasks.evaluate import evaluate
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split
    from tasks.train import train

    catalog = Catalog.under(tmp_path)
    data = DataParams(source=str(samples), categories=SAMPLE_CATEGORIES)
    fetch(data, FetchParams(), catalog)
    split(data, SplitParams(), catalog)
    preprocess(data, PreprocessParams(), catalog, serial_map)
    # The default search's usual winner on this data, fixed here so the test measures training, not search.
    best = {
        "trial_id": "fixed",
        "val_accuracy": 0.0,
        "hyperparameters": {
            "filters": 32,
            "learning_rate": 0.001,
            "dropout": 0.3,
            "activation": "relu",
            "optimizer": "adam",
            "l2": 1e-5,
            "l1": 0.0,
            "batch_norm": True,
        },
    }
    catalog.models.mkdir(parents=True)
    write_tuning_result(catalog, {**best, "candidates": [best]})
    history = train(TrainParams(epochs=EPOCHS), catalog)  # the default schedule, over a small budget
    metrics = evaluate(EvaluateParams(misclassified=0, samples_per_class=1), catalog)
    print(f"real-drawing accuracy after {EPOCHS} epochs: {metrics['accuracy']:.4f}")
    assert history["epochs_run"] == EPOCHS and metrics["test_images"] == 698  # 10% of each class, to within 2
    assert metrics["accuracy"] >= FLOOR, f"{metrics['accuracy']:.4f} < floor {FLOOR} on real drawings"


# ----- the larger real set: 8 categories x ~5,000 (../shared/data/quickdraw/numpy_bitmap_5k) -----

LARGE_SET = SHARED / "numpy_bitmap_5k"
LARGE_PER_CLASS = 600  # the first 600 drawings of each of the 8 categories: a stratified slice, 4,800 in all
LARGE_EPOCHS = 4
# Measured 0.9015 on this slice (test split: 480 drawings; the default network and schedule, 4 epochs, seed 0;
# bfloat16 on this CPU, 0.8952 in float32), deterministic on this machine; the floor leaves room for another
# CPU's floating-point kernels or arithmetic.
LARGE_FLOOR = 0.87


@pytest.fixture(scope="module")
def large_set() -> Path:
    """The 40,000-drawing real set; present in the development checkout's ../shared only."""
    if not LARGE_SET.is_dir():
        pytest.skip(
            f"the larger real set is not at {LARGE_SET} (a development checkout's ../shared; "
            "set QUICKDRAW_SHARED to a folder holding numpy_bitmap_5k/)"
        )
    return LARGE_SET


@pytest.mark.slow
def test_the_defaults_on_a_slice_of_the_larger_real_set_reach_their_floor(tmp_path: Path, large_set: Path) -> None:
    """A change that hurts quality at the size defaults must hold (40,000 drawings) fails here, in brief."""
    from quickdraw_dag.config.schema import SearchSpace
    from quickdraw_dag.runtime.fanout import serial_map
    from quickdraw_dag.training.devices import Placement
    from quickdraw_dag.training.model import load_model
    from quickdraw_dag.training.precision import resolve_precision
    from tasks.evaluate import evaluate
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split
    from tasks.train import train

    # Google's names (smiley face), found under the set's file names (smiley_face.npy)
    categories = tuple(sorted(path.stem.replace("_", " ") for path in large_set.glob("*.npy")))
    assert len(categories) == 8, categories
    catalog = Catalog.under(tmp_path)
    data = DataParams(source=str(large_set), categories=categories)
    fetch(data, FetchParams(), catalog)
    split(data, SplitParams(max_per_class=LARGE_PER_CLASS), catalog)
    preprocess(data, PreprocessParams(), catalog, serial_map)
    best = {"trial_id": "default", "val_accuracy": 0.0, "hyperparameters": SearchSpace().first_choices()}
    catalog.models.mkdir(parents=True)
    write_tuning_result(catalog, {**best, "candidates": [best]})
    history = train(TrainParams(epochs=LARGE_EPOCHS), catalog)
    metrics = evaluate(EvaluateParams(misclassified=0, samples_per_class=1), catalog)
    print(f"larger real set, {LARGE_PER_CLASS} per class, {LARGE_EPOCHS} epochs: {metrics['accuracy']:.4f}")
    assert history["epochs_run"] == LARGE_EPOCHS
    # the default arithmetic (bfloat16 where the CPU has it), and a saved model that computes in float32
    assert history["precision"] == resolve_precision(
        "auto", Placement(history["backend"], tuple(history["devices"])).on_cpu, history["backend"]
    )
    saved = load_model(str(catalog.model))
    assert {layer.compute_dtype for layer in saved.layers if layer.weights} == {"float32"}
    assert abs(metrics["test_images"] - len(categories) * LARGE_PER_CLASS // 10) <= 2 * len(categories)
    assert metrics["accuracy"] >= LARGE_FLOOR, f"{metrics['accuracy']:.4f} < floor {LARGE_FLOOR} on real drawings"
