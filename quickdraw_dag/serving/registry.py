"""Finding the model to use: the registry's champion by default, or any MLflow model URI or path.

The store is the pipeline's (`MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db`
in the working directory). A missing store, model or alias is a usage error
(exit 2) that says how to get one; nothing is created on the way (MLflow
would otherwise make an empty `mlflow.db`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.redact import redact
from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.errors import ConfigError
from quickdraw_dag.serving.classifier import Classifier
from quickdraw_dag.tracking.record import CHAMPION, REGISTERED_MODEL
from quickdraw_dag.tracking.store import tracking_uri

log = logging.getLogger(__name__)
DEFAULT_MODEL_URI = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
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
        decision = promote_if_better(version, accuracy, categories)
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


def promote_if_better(version: int, accuracy: float, categories: list[str]) -> dict[str, str]:
    """Move the `champion` alias only when `version` beats it on the same label set."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    labels = json.dumps(categories)
    client.set_model_version_tag(REGISTERED_MODEL, str(version), "categories", labels)
    client.set_model_version_tag(REGISTERED_MODEL, str(version), "test_accuracy", f"{accuracy:.6f}")
    try:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(version))
        return {"decision": "promoted", "reason": "no champion yet"}
    if champion.tags.get("categories") != labels:
        return {"decision": "kept", "reason": f"champion v{champion.version} was trained on another label set"}
    best = float(champion.tags.get("test_accuracy", "nan"))
    if accuracy > best:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(version))
        return {
            "decision": "promoted",
            "reason": f"test accuracy {accuracy:.4f} beats champion v{champion.version} ({best:.4f})",
        }
    return {
        "decision": "kept",
        "reason": f"test accuracy {accuracy:.4f} does not beat champion v{champion.version} ({best:.4f})",
    }
