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


def degraded(good: Path, target: Path, below: float, run: Any) -> tuple[Path, float]:
    """A copy of the good model with noise on its last layer, just enough to score under `below` on its test
    split; evaluated like any model. Returns its folder and that accuracy."""
    from quickdraw_dag.data.stream import open_split
    from quickdraw_dag.training.model import load_model

    catalog = Catalog.under(copy_workspace(good, target))
    model = load_model(str(catalog.model))
    images, labels = (np.asarray(part) for part in open_split(catalog, "test"))
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    for sigma in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0):
        noise = np.random.default_rng(7).normal(0.0, sigma * np.abs(kernel).mean(), kernel.shape)
        last.set_weights([kernel + noise.astype(kernel.dtype), bias])
        accuracy = float((model.predict(images, verbose=0).argmax(axis=1) == labels).mean())
        if accuracy < below:
            break
    model.save(catalog.model)
    evaluate(run.evaluate, catalog)
    return target, accuracy


@pytest.fixture(scope="module")
def gate_store(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> GateStore:
    """Registered in this order: weaker (the first champion), mislabelled, good, weakest."""
    root = tmp_path_factory.mktemp("gate")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "store").mkdir()
    run = tiny_run(uri, CATEGORIES, epochs=4)
    # Google's files, with bear and duck swapped: every bear is labelled duck, and the other way round
    swapped = root / "swapped" / "numpy_bitmap"
    swapped.mkdir(parents=True)
    for category in CATEGORIES:
        named = {"bear": "duck", "duck": "bear"}.get(category, category)
        shutil.copy(SAMPLES / "numpy_bitmap" / f"{category}.npy", swapped / f"{named}.npy")
    mislabelled = root / "mislabelled"
    train_tiny(mislabelled, tiny_run(uri, CATEGORIES, epochs=4, source=swapped.parent), filters=8)
    own = float(read_metrics(Catalog.under(mislabelled))["accuracy"])
    good = copy_workspace(champion.root, root / "good")
    # the champion the mislabelled run meets: correct labels, a lower score on its own split than the
    # mislabelled run's on its own (so a gate on own scores would crown the mislabelled run)
    weaker, score = degraded(good, root / "weaker", own - 0.05, run)
    weakest, _ = degraded(good, root / "weakest", score - 0.08, run)
    decisions, versions, accuracy = {}, {}, {}
    for name, workspace in (("weaker", weaker), ("mislabelled", mislabelled), ("good", good), ("weakest", weakest)):
        decisions[name] = register_tiny(workspace, run)
        versions[name] = int(decisions[name]["model_version"])
        accuracy[name] = float(read_metrics(Catalog.under(workspace))["accuracy"])
    return GateStore(uri, versions, accuracy, decisions)


def version_tags(version: int) -> dict[str, str]:
    return mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, str(version)).tags


def test_a_mislabelled_source_that_scores_high_on_its_own_split_is_not_promoted(gate_store: GateStore, record) -> None:
    mlflow.set_tracking_uri(gate_store.uri)
    first, bad, good = (gate_store.versions[name] for name in ("weaker", "mislabelled", "good"))
    # The probe's case: on its own (mislabelled) split it scores higher than the champion on the champion's
    assert gate_store.accuracy["mislabelled"] > gate_store.accuracy["weaker"], gate_store.accuracy
    assert gate_store.decisions["weaker"]["decision"] == "promoted"  # the first, with no champion yet
    decision = gate_store.decisions["mislabelled"]
    assert decision["decision"] == "kept", decision
    assert f"does not beat champion v{first}" in decision["reason"] and f"champion v{first}'s" in decision["reason"]
    tags = version_tags(bad)
    assert tags["gate.decision"] == "kept" and tags["gate.compared_with"] == f"v{first}"
    champion_tags = version_tags(first)
    assert tags["gate.champion_drawings"] == (
        f"{champion_tags['gate.drawings']} drawings, sha256 {champion_tags['gate.drawings_sha256']}"
    )
    assert tags["gate.own_drawings"].endswith(tags["gate.drawings_sha256"])
    mine, theirs = (float(x.split()[1]) for x in tags["gate.champion_drawings.accuracy"].split(", "))
    assert mine < theirs - 0.1, tags  # on the champion's drawings it calls bears ducks
    run_tags = mlflow.get_run(decision["run_id"]).data.tags
    assert run_tags["promotion.decision"] == "kept" and run_tags["promotion.reason"] == decision["reason"]
    # the neighbours: the well-trained model beats that champion on the same drawings; a weaker one does not
    assert gate_store.decisions["good"]["decision"] == "promoted", gate_store.decisions["good"]
    assert version_tags(good)["gate.replaced"] == f"v{first}"
    assert gate_store.decisions["weakest"]["decision"] == "kept", gate_store.decisions["weakest"]
    assert version_tags(gate_store.versions["weakest"])["gate.compared_with"] == f"v{good}"
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version) == str(good)
    record(
        FAMILY,
        check=(
            f"a run on mislabelled files (own split {gate_store.accuracy['mislabelled']:.2f}, champion's "
            f"{gate_store.accuracy['weaker']:.2f}; on the champion's drawings {mine:.2f} against {theirs:.2f}), "
            "a better and a worse model"
        ),
        cases=3,
        wrong_promotions=0,
    )


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


def test_a_champion_whose_drawings_cannot_be_checked_is_kept_and_a_legacy_one_is_judged_on_the_challengers(
    gate_store: GateStore, record
) -> None:
    mlflow.set_tracking_uri(gate_store.uri)
    client = mlflow.MlflowClient()
    weakest = register_copy("weakest", gate_store)
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(weakest))
    # its drawings' hash no longer matches what was registered: nobody is judged on other drawings
    client.set_model_version_tag(REGISTERED_MODEL, str(weakest), "gate.drawings_sha256", "0" * 64)
    challenger = register_copy("good", gate_store)
    decision = promote_if_better(challenger)
    assert decision["decision"] == "kept" and "changed since it was registered" in decision["reason"], decision
    # a champion registered before the gate kept drawings: both models on the challenger's drawings
    legacy = register_copy("weakest", gate_store)
    for key in ("gate.drawings_run", "gate.drawings_sha256", "gate.drawings"):
        client.delete_model_version_tag(REGISTERED_MODEL, str(legacy), key)
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(legacy))
    decision = promote_if_better(challenger)
    assert decision["decision"] == "promoted", decision
    assert "on its own" in decision["reason"] and "champion v" not in decision["reason"].split(":", 1)[1]
    tags = version_tags(challenger)
    assert (
        "gate.own_drawings" in tags and "gate.champion_drawings" not in tags and tags["gate.replaced"] == f"v{legacy}"
    )
    record(FAMILY, check="a champion with altered or without kept test drawings", cases=2, wrong_promotions=0)
