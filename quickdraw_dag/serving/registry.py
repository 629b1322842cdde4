"""Finding the model to use: the registry's champion by default, or any MLflow model URI or path.

The store is the pipeline's (`MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db`
in the working directory). A missing store, model or alias is a usage error
(exit 2) that says how to get one; nothing is created on the way (MLflow
would otherwise make an empty `mlflow.db`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.redact import redact
from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.errors import ConfigError
from quickdraw_dag.serving.classifier import Classifier
from quickdraw_dag.tracking.record import CHAMPION, REGISTERED_MODEL
from quickdraw_dag.tracking.store import tracking_uri

log = logging.getLogger(__name__)
DEFAULT_MODEL_URI = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
GATE_FOLDER, GATE_FILE = "gate", "test_drawings.npz"  # a model's test drawings, in its run's artifacts
GATE_MAX_DRAWINGS = 20_000  # 15.7 MB at 28×28: the gate's cost stays small on the whole dataset
PROMOTION_WAIT_S = 600.0  # another promotion of the same store finishes within this
HOW_TO_GET_ONE = "run `make demo` (or `make run`) to train and register one, or name another with --model URI_OR_PATH"


@dataclass(frozen=True)
class ServedModel:
    """The classifier and where it came from (what the page shows)."""

    classifier: Classifier
    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None

    @property
    def test_accuracy(self) -> float | None:
        return self.classifier.card.test_accuracy

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "test_accuracy": self.test_accuracy,
            "categories": list(self.classifier.card.categories),
            "image_size": self.classifier.card.image_size,
            "line_width": self.classifier.card.line_width,
        }


def resolve(uri: str | None = None) -> tuple[str, str | None, str | None, str | None]:
    """(uri, name, version, alias) of a model that exists, without loading it; ConfigError otherwise."""
    import mlflow

    uri = uri or DEFAULT_MODEL_URI
    store = tracking_uri(MlflowParams())
    if uri.startswith("models:/"):
        database = store.removeprefix("sqlite:///") if store.startswith("sqlite:///") else None
        if database is not None and not Path(database).is_file():
            raise ConfigError(f"model {uri}: no MLflow store at {database}; {HOW_TO_GET_ONE}")
        mlflow.set_tracking_uri(store)
        return (uri, *_registry_entry(uri, store))
    if "://" not in uri and not Path(uri).exists():
        raise ConfigError(f"model {uri}: no such file or folder; {HOW_TO_GET_ONE}")
    mlflow.set_tracking_uri(store)
    return uri, None, None, None


def load_served_model(uri: str | None = None) -> ServedModel:
    """Load a model logged by this project (`log_pyfunc_model`) as a classifier."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri, name, version, alias = resolve(uri)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise ConfigError(f"model {uri}: cannot load it ({error.message})") from None
    try:
        classifier = getattr(loaded.unwrap_python_model(), "classifier", None)
    except MlflowException:  # another flavour's pyfunc (e.g. a bare Keras model)
        classifier = None
    if not isinstance(classifier, Classifier):
        raise ConfigError(
            f"model {uri}: not a quickdraw-dag pyfunc (a version logged before models took strokes "
            f"holds the Keras flavour only); {HOW_TO_GET_ONE}"
        )
    return ServedModel(classifier, uri, name, version, alias)


def _registry_entry(uri: str, store: str) -> tuple[str, str, str | None]:
    """(name, version, alias) of `models:/name@alias` or `models:/name/version`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if match is None:
        raise ConfigError(f"model {uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, number = match.groups()
    client = mlflow.MlflowClient()
    try:
        entry = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except MlflowException:
        what = f"alias '{alias}'" if alias else f"version {number}"
        message = f"no model '{name}' with {what} in the MLflow registry at {redact(store)}; {HOW_TO_GET_ONE}"
        raise ConfigError(message) from None
    return name, str(entry.version), alias


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m quickdraw_dag.serving.registry [URI]`: say which model a URI names, or why there is none (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        uri, name, version, alias = resolve(args[0] if args else None)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"{uri}: {name} version {version}" if version else f"{uri}: found")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def register_model(
    catalog: Catalog, run_id: str, test_metrics: dict[str, float], accuracy: float, categories: list[str]
) -> dict[str, Any]:
    """Log the model into the pipeline run `run_id`, register it and apply the promotion gate.

    Returns the registry version and the decision, which are also tagged on the run.
    """
    import mlflow

    with mlflow.start_run(run_id=run_id):
        version = log_and_register_model(catalog, test_metrics)
        drawings = log_gate_drawings(catalog, run_id)
        describe_version(version, accuracy, categories, drawings)
        decision = promote_if_better(version)
        mlflow.set_tags(
            {
                "promotion.decision": decision["decision"],
                "promotion.reason": decision["reason"],
                "registered_model_version": str(version),
            }
        )
    log.info("mlflow: run %s, model version %s, %s (%s)", run_id, version, decision["decision"], decision["reason"])
    return {"model_version": version, **decision}


def log_and_register_model(catalog: Catalog, test_metrics: dict[str, float]) -> int:
    """Log the model as a pyfunc taking strokes or images (`quickdraw_dag.serving`), with its test
    metrics against it in MLflow 3's model view; register it; returns its registry version.

    `test_metrics` are already on the run (`record.log_test_metrics`), whence MLflow links them."""
    import mlflow

    from quickdraw_dag.serving.pyfunc import log_pyfunc_model

    # MLflow links the run's step-0 metrics to the model as it logs it: the test metrics, logged once by
    # the run's record with their dataset (`record.log_test_metrics`); logging them again here listed each twice.
    model = log_pyfunc_model(catalog, artifact_path="model")
    version = mlflow.register_model(model.model_uri, REGISTERED_MODEL)
    return int(version.version)


# ----- the promotion gate: the champion moves only to a model that beats it on the same drawings -----


def log_gate_drawings(catalog: Catalog, run_id: str) -> dict[str, str]:
    """Log the model's test drawings (at most GATE_MAX_DRAWINGS, every class) to `run_id`; returns their tags.

    A later challenger is compared with this model on these very drawings, whatever its own data.
    """
    import mlflow

    from quickdraw_dag.artifacts import read_label_names
    from quickdraw_dag.data.stream import open_split

    images, labels = open_split(catalog, "test")
    keep = gate_subset(np.asarray(labels), GATE_MAX_DRAWINGS)
    names = np.asarray(read_label_names(catalog)["categories"], dtype=str)[np.asarray(labels)[keep]]
    images = np.ascontiguousarray(images[keep])
    digest = drawings_digest(images, names)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / GATE_FILE
        np.savez(path, images=images, labels=names)
        mlflow.log_artifact(str(path), artifact_path=GATE_FOLDER)
    processed = mlflow.get_run(run_id).data.tags.get("dvc_processed_md5", "unknown")
    return {
        "gate.drawings_run": run_id,
        "gate.drawings_sha256": digest,
        "gate.drawings": str(len(names)),
        "gate.dvc_processed_md5": processed,  # the processed data (its DVC hash) the drawings come from
    }


def describe_version(version: int, accuracy: float, categories: list[str], drawings: dict[str, str]) -> None:
    """Tag a registered version with what the gate needs: its label set, test accuracy and test drawings."""
    import mlflow

    client = mlflow.MlflowClient()
    tags = {"categories": json.dumps(categories), "test_accuracy": f"{accuracy:.6f}", **drawings}
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)


def promote_if_better(version: int) -> dict[str, str]:
    """Move `champion` to `version` only if it beats the champion on the same drawings; atomically.

    Both models classify both sets of test drawings, the champion's and the challenger's own. The
    challenger is promoted when it is no worse on either set and better on both together; a run on
    mislabelled files scores high on its own split and loses on the champion's. What was compared
    (which drawings, by hash, and both accuracies on each) is tagged on the version. The whole
    read-compare-move runs under a lock, and the alias is re-read just before it moves, so two
    promotions at once cannot both replace the same champion.
    """
    import mlflow

    client = mlflow.MlflowClient()
    with promotion_lock(mlflow.get_tracking_uri()):
        challenger = client.get_model_version(REGISTERED_MODEL, str(version))
        champion = _champion(client)
        decision, tags = judge(challenger, champion)
        if decision["decision"] == "promoted":
            current = _champion(client)  # compare-and-set: a store without a shared lock may have moved it
            if (current and current.version) != (champion and champion.version):
                decision, tags = judge(challenger, current)
        if decision["decision"] == "promoted":
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(version))
        for key, value in {**tags, "gate.decision": decision["decision"], "gate.reason": decision["reason"]}.items():
            client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)
    return decision


def judge(challenger: Any, champion: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(decision, tags of what was compared) of `challenger` against `champion` (a ModelVersion or None)."""
    if champion is None:
        return {"decision": "promoted", "reason": "no champion yet"}, {"gate.compared_with": "none"}
    if str(champion.version) == str(challenger.version):
        return {"decision": "kept", "reason": f"v{champion.version} is the champion already"}, {}
    if champion.tags.get("categories") != challenger.tags.get("categories"):
        reason = f"champion v{champion.version} was trained on another label set"
        return {"decision": "kept", "reason": reason}, {"gate.compared_with": f"v{champion.version}"}
    try:
        sets = {"champion": _gate_set(champion), "own": _gate_set(challenger)}
    except GateUnavailable as missing:  # never judged on fewer drawings than the champion asks for
        reason = f"not compared with champion v{champion.version}: {missing}; the alias stays"
        return {"decision": "kept", "reason": reason}, {"gate.compared_with": f"v{champion.version}"}
    sets = {name: drawings for name, drawings in sets.items() if drawings is not None}
    if not sets:  # versions registered before the gate kept their drawings: the old rule, said as such
        return _by_own_accuracy(challenger, champion)
    models = {"challenger": _classifier(challenger.source), "champion": _classifier(champion.source)}
    correct = {
        (who, name): _correct(model, *drawings) for who, model in models.items() for name, drawings in sets.items()
    }
    tags = {"gate.compared_with": f"v{champion.version}"}
    parts = []
    for name, (_, labels, digest) in sets.items():
        n = len(labels)
        mine, theirs = correct["challenger", name] / n, correct["champion", name] / n
        whose = f"champion v{champion.version}'s" if name == "champion" else "its own"
        tags[f"gate.{name}_drawings"] = f"{n} drawings, sha256 {digest}"
        tags[f"gate.{name}_drawings.accuracy"] = f"challenger {mine:.4f}, champion {theirs:.4f}"
        parts.append(f"{mine:.4f} vs {theirs:.4f} on {whose} {n} test drawings")
    total = sum(len(labels) for _, labels, _ in sets.values())
    pooled = {who: sum(correct[who, name] for name in sets) / total for who in models}
    no_worse = all(correct["challenger", name] >= correct["champion", name] for name in sets)
    won = no_worse and pooled["challenger"] > pooled["champion"]
    verb = "beats" if won else "does not beat"
    reason = f"{verb} champion v{champion.version}: " + "; ".join(parts)
    if won:
        tags["gate.replaced"] = f"v{champion.version}"
    return {"decision": "promoted" if won else "kept", "reason": reason}, tags


def gate_subset(labels: np.ndarray, limit: int) -> np.ndarray:
    """Sorted indices of at most `limit` drawings, the first of each class in split order (every class kept)."""
    if labels.shape[0] <= limit:
        return np.arange(labels.shape[0])
    classes = np.unique(labels)
    per_class = max(1, limit // classes.size)
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes]))


def drawings_digest(images: np.ndarray, names: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes())
    digest.update(json.dumps([str(n) for n in names]).encode())
    return digest.hexdigest()


@contextmanager
def promotion_lock(store: str, wait_s: float = PROMOTION_WAIT_S) -> Iterator[None]:
    """An exclusive lock for the alias's read-compare-move: beside a local store, else per store on this machine."""
    from quickdraw_dag.runtime.lock import file_lock

    local = store.removeprefix("sqlite:///") if store.startswith("sqlite:///") else None
    if local is None and store.startswith("file:"):
        local = store.removeprefix("file://").removeprefix("file:")
    if local is None and "://" not in store:
        local = store
    if local is not None:
        path = Path(local).with_name(Path(local).name + ".promotion.lock")
    else:
        path = (
            Path(tempfile.gettempdir()) / f"quickdraw-promotion-{hashlib.sha256(store.encode()).hexdigest()[:16]}.lock"
        )

    def busy(handle: int) -> Exception:
        return ConfigError(f"another promotion held {path} for {wait_s:.0f} s; run it again later")

    with file_lock(path, wait_s, busy):
        yield


class GateUnavailable(Exception):
    """A version's test drawings, which its tags name, cannot be read as they were registered."""


def _champion(client: Any) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        return None


def _gate_set(version: Any) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(images, label names, sha256) of a version's test drawings, checked against its tag; None if it has none."""
    run_id, digest = version.tags.get("gate.drawings_run"), version.tags.get("gate.drawings_sha256")
    if not run_id or not digest:
        return None
    from mlflow.exceptions import MlflowException

    try:
        images, names = _download_gate_set(run_id)
    except (MlflowException, OSError, KeyError, ValueError) as error:
        raise GateUnavailable(f"v{version.version}'s test drawings (run {run_id}) cannot be read ({error})") from None
    if drawings_digest(images, names) != digest:
        raise GateUnavailable(f"v{version.version}'s test drawings (run {run_id}) changed since it was registered")
    return images, names, digest


@functools.lru_cache(maxsize=8)
def _download_gate_set(run_id: str) -> tuple[np.ndarray, np.ndarray]:
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{GATE_FOLDER}/{GATE_FILE}", dst_path=scratch
        )
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["images"]), np.asarray(data["labels"])


@functools.lru_cache(maxsize=4)
def _classifier(source: str) -> Classifier:
    """The classifier of a registered version's model (its artifacts never change: loaded once per process)."""
    import mlflow

    classifier = getattr(mlflow.pyfunc.load_model(source).unwrap_python_model(), "classifier", None)
    if not isinstance(classifier, Classifier):
        raise ConfigError(f"model {source}: not a quickdraw-dag pyfunc; the gate cannot run it")
    return classifier


def _correct(classifier: Classifier, images: np.ndarray, names: np.ndarray, _digest: str) -> int:
    """How many of the drawings `classifier` labels as `names` says (images resized to its size if needed)."""
    from quickdraw_dag.data.raster import resize_bitmaps

    if images.shape[1] != classifier.card.image_size:
        images = resize_bitmaps(images, classifier.card.image_size)
    predicted = np.asarray(classifier.card.categories)[classifier.probabilities(images).argmax(axis=1)]
    return int((predicted == names).sum())


def _by_own_accuracy(challenger: Any, champion: Any) -> tuple[dict[str, str], dict[str, str]]:
    accuracy = float(challenger.tags.get("test_accuracy", "nan"))
    best = float(champion.tags.get("test_accuracy", "nan"))
    verb = "beats" if accuracy > best else "does not beat"
    reason = (
        f"test accuracy {accuracy:.4f} {verb} champion v{champion.version} ({best:.4f}); neither kept its test "
        "drawings (registered before the gate compared models on the same drawings)"
    )
    return {"decision": "promoted" if accuracy > best else "kept", "reason": reason}, {
        "gate.compared_with": f"v{champion.version} (own test accuracies only)"
    }
