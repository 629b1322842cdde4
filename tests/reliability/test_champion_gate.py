"""The champion gate (issue 25, point 4): the same drawings for both models, what was compared on record, atomic.

A store of its own holds real models: the session's small champion (registered again here), a model
trained on the sample with bear and duck files swapped (a mislabelled source: it scores high on its
own split), and two weaker copies of the champion (noise on its last layer) for the races.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from bench.tiny_model import SAMPLES, register_tiny, tiny_run, train_tiny
from quickdraw_dag.artifacts import Catalog, read_metrics
from quickdraw_dag.serving.registry import promote_if_better
from quickdraw_dag.tracking.record import CHAMPION, REGISTERED_MODEL
from tasks.evaluate import evaluate
from tests.conftest import Champion

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("champion")]
FAMILY = "champion gate"
CATEGORIES = ("bear", "duck", "frog")
COPIED_TAGS = ("categories", "test_accuracy", "gate.drawings_run", "gate.drawings_sha256", "gate.drawings")


@dataclass
class GateStore:
    uri: str
    versions: dict[str, int]  # which model → its first registered version
    accuracy: dict[str, float]  # its accuracy on its own test split
    decisions: dict[str, dict[str, Any]]


def copy_workspace(source: Path, target: Path) -> Path:
    for part in ("data", "models", "reports"):
        shutil.copytree(source / part, target / part)
    return target


def degraded(good: Path, target: Path, sigma: float, run: Any) -> Path:
    """A copy of the good model with noise on its last layer's weights, evaluated like any model."""
    from quickdraw_dag.training.model import load_model

    catalog = Catalog.under(copy_workspace(good, target))
    model = load_model(str(catalog.model))
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    noise = np.random.default_rng(int(sigma * 1000)).normal(0.0, sigma * np.abs(kernel).mean(), kernel.shape)
    last.set_weights([kernel + noise.astype(kernel.dtype), bias])
    model.save(catalog.model)
    evaluate(run.evaluate, catalog)
    return target


@pytest.fixture(scope="module")
def gate_store(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> GateStore:
    root = tmp_path_factory.mktemp("gate")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "store").mkdir()
    run = tiny_run(uri, CATEGORIES, epochs=4)
    good = copy_workspace(champion.root, root / "good")
    weaker = degraded(good, root / "weaker", 3.0, run)
    weakest = degraded(good, root / "weakest", 12.0, run)
    # Google's files, with bear and duck swapped: every bear is labelled duck, and the other way round
    swapped = root / "swapped" / "numpy_bitmap"
    swapped.mkdir(parents=True)
    for category in CATEGORIES:
        named = {"bear": "duck", "duck": "bear"}.get(category, category)
        shutil.copy(SAMPLES / "numpy_bitmap" / f"{category}.npy", swapped / f"{named}.npy")
    mislabelled = root / "mislabelled"
    train_tiny(mislabelled, tiny_run(uri, CATEGORIES, epochs=4, source=swapped.parent), filters=8)
    decisions, versions, accuracy = {}, {}, {}
    for name, workspace in (("good", good), ("mislabelled", mislabelled), ("weaker", weaker), ("weakest", weakest)):
        decisions[name] = register_tiny(workspace, run)
        versions[name] = int(decisions[name]["model_version"])
        accuracy[name] = float(read_metrics(Catalog.under(workspace))["accuracy"])
    return GateStore(uri, versions, accuracy, decisions)


def version_tags(version: int) -> dict[str, str]:
    return mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, str(version)).tags


def test_a_mislabelled_source_that_scores_high_on_its_own_split_is_not_promoted(gate_store: GateStore, record) -> None:
    mlflow.set_tracking_uri(gate_store.uri)
    good, bad = gate_store.versions["good"], gate_store.versions["mislabelled"]
    # The precondition of the probe: on its own (mislabelled) split it scores at least as high as the champion
    assert gate_store.accuracy["mislabelled"] >= gate_store.accuracy["good"] - 0.05, gate_store.accuracy
    assert gate_store.decisions["good"]["decision"] == "promoted"  # the first, with no champion yet
    decision = gate_store.decisions["mislabelled"]
    assert decision["decision"] == "kept", decision
    assert f"does not beat champion v{good}" in decision["reason"] and f"champion v{good}'s" in decision["reason"]
    tags = version_tags(bad)
    assert tags["gate.decision"] == "kept" and tags["gate.compared_with"] == f"v{good}"
    champion_tags = version_tags(good)
    assert tags["gate.champion_drawings"] == (
        f"{champion_tags['gate.drawings']} drawings, sha256 {champion_tags['gate.drawings_sha256']}"
    )
    assert tags["gate.own_drawings"].endswith(tags["gate.drawings_sha256"])
    mine, theirs = (float(x.split()[1]) for x in tags["gate.champion_drawings.accuracy"].split(", "))
    assert mine < theirs - 0.2, tags  # on the champion's drawings it calls bears ducks
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version) == str(good)
    run_tags = mlflow.get_run(gate_store.decisions["mislabelled"]["run_id"]).data.tags
    assert run_tags["promotion.decision"] == "kept" and run_tags["promotion.reason"] == decision["reason"]
    # the neighbours: a weaker copy of the champion is kept too, each compared on the same drawings
    for name in ("weaker", "weakest"):
        assert gate_store.decisions[name]["decision"] == "kept", gate_store.decisions[name]
        assert version_tags(gate_store.versions[name])["gate.compared_with"] == f"v{good}"
    record(FAMILY, check="a mislabelled source and weaker copies against the champion", cases=3, wrong_promotions=0)


def register_copy(name: str, gate_store: GateStore) -> int:
    """A new version of an already registered model (same artifacts and test drawings), as a new run would be."""
    client = mlflow.MlflowClient()
    original = client.get_model_version(REGISTERED_MODEL, str(gate_store.versions[name]))
    created = client.create_model_version(REGISTERED_MODEL, original.source, run_id=original.run_id)
    for key in COPIED_TAGS:
        client.set_model_version_tag(REGISTERED_MODEL, created.version, key, original.tags[key])
    return int(created.version)


def promote(version: int, start: threading.Barrier, results: dict[int, dict[str, str]]) -> None:
    start.wait()  # both at once
    results[version] = promote_if_better(version)


def test_concurrent_promotions_never_crown_the_worse_model(gate_store: GateStore, record) -> None:
    """Two promotions at once, 20 times: the better one ends champion, and no two replace the same champion."""
    mlflow.set_tracking_uri(gate_store.uri)
    client = mlflow.MlflowClient()
    accuracy = gate_store.accuracy
    assert accuracy["good"] > accuracy["weaker"] > accuracy["weakest"], accuracy  # on the same test drawings
    races, both_promoted = 20, 0
    for race in range(races):
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(gate_store.versions["weakest"]))
        better, worse = register_copy("good", gate_store), register_copy("weaker", gate_store)
        order = (better, worse) if race % 2 else (worse, better)
        start, results = threading.Barrier(2), {}
        threads = [threading.Thread(target=promote, args=(v, start, results)) for v in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert str(client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version) == str(better), (
            race,
            results,
        )
        assert results[better]["decision"] == "promoted", results
        replaced = [
            version_tags(v).get("gate.replaced") for v in (better, worse) if results[v]["decision"] == "promoted"
        ]
        assert len(replaced) == len(set(replaced)), f"race {race}: two promotions replaced the same champion"
        if results[worse]["decision"] == "promoted":  # it went first and beat the weakest; the better then beat it
            both_promoted += 1
            assert version_tags(better)["gate.replaced"] == f"v{worse}"
        else:
            assert version_tags(better)["gate.replaced"] == f"v{gate_store.versions['weakest']}"
    record(
        FAMILY,
        check=f"20 races of two promotions at once (accuracy {accuracy['good']:.2f} against {accuracy['weaker']:.2f})",
        cases=races,
        wrong_promotions=0,
        promoted_in_turn=both_promoted,
    )
