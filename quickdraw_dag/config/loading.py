"""Loading params once: read the file, apply `--set` overrides, validate, and name what is wrong.

Every failure is a `ConfigError` naming the key and what is allowed, raised before any stage writes anything.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from quickdraw_dag.config.params_yaml import MAX_PARAMS_BYTES, MAX_VALUE_BYTES, decode, load_yaml
from quickdraw_dag.config.schema import (
    DEFAULT_PARAMS_PATH,
    RETIRED_KEYS,
    Params,
    ParamsModel,
)
from quickdraw_dag.config.workspace import check_workspace, local_store_path
from quickdraw_dag.errors import ConfigError, clip, excerpt


def load_params(
    path: str | Path = DEFAULT_PARAMS_PATH,
    overrides: Sequence[str] = (),
    model: type[ParamsModel] = Params,
    root: Path | None = Path("."),
) -> ParamsModel:
    """Read `path`, apply `key.path=value` overrides, and validate once (as `model`: a whole params file).

    With `root` (the workspace, default the current directory), the output
    paths are also checked against the file system (`check_params_workspace`).
    """
    raw = read_params_file(path)
    for override in overrides:
        apply_override(raw, override, model)
    params = validate_params(raw, source=str(path), model=model)
    if root is not None:
        check_params_workspace(params, root, source=str(path))
    return params


def check_params_workspace(params: BaseModel, root: Path = Path("."), source: str = "params") -> None:
    """Outputs inside the workspace (symlinks followed), apart from each other, the data source and the MLflow store.

    `params` is a whole params file: the doodle pipeline's (`Params`) or the paint pipeline's.
    """
    mlflow = getattr(params, "mlflow", None)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (mlflow.tracking_uri if mlflow else None)
    store = local_store_path(uri) if uri else None
    data = getattr(params, "data", None)
    paint = getattr(params, "paint", None)
    inputs = {
        "data.source": data.source if data is not None and data.source_kind == "directory" else None,
        "paint.image": paint.image if paint is not None and not paint.image.startswith("matplotlib:") else None,
        "the MLflow store": store,
        # the artifact folder beside a SQLite store (`mlflow_store.artifact_location`)
        "the MLflow artifact folder": store.parent / "mlartifacts" if store is not None else None,
    }
    try:
        check_workspace(params.paths.model_dump(), root, inputs=inputs)  # type: ignore[attr-defined]
    except ValueError as problem:
        raise ConfigError(f"{source}: {problem}") from None


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        if not path.is_file():
            problem = "not a regular file" if path.exists() else "no such file"
            raise ConfigError(f"cannot read params file {path}: {problem}")
        with open(path, "rb") as handle:
            data = handle.read(MAX_PARAMS_BYTES + 1)  # never more: /dev/zero is a file name too
    except OSError as error:
        raise ConfigError(f"cannot read params file {path}: {error.strerror or error}") from None
    raw = load_yaml(decode(data, str(path)), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return raw


def validate_params(raw: dict[str, Any], source: str = "params", model: type[ParamsModel] = Params) -> ParamsModel:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source, model)) from None


# Booleans in YAML 1.1 only: strings in YAML 1.2, the dialect params.yaml is read in.
YAML_1_1_BOOLEANS = frozenset({"y", "yes", "n", "no", "on", "off"})


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel] = Params) -> str:
    lines = [f"{source}: {error.error_count()} invalid value(s):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            retired = RETIRED_KEYS.get(tuple(str(part) for part in item["loc"]))
            message = retired or f"unknown key{_did_you_mean_key(item['loc'], model)}"
        elif item["type"] == "missing":
            message = "required key is missing"
        got = item.get("input")
        if item["type"] == "bool_type" and isinstance(got, str) and got.lower() in YAML_1_1_BOOLEANS:
            message += " (params are YAML 1.2, as DVC reads them: write true or false)"
        shown = "" if item["type"] in ("missing", "extra_forbidden") else f" (got {excerpt(got)})"
        if isinstance(got, dict) or "(got " in message:
            shown = ""
        lines.append(f"  {clip(key)}: {message}{shown}")
    return "\n".join(lines)


def _did_you_mean_key(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    known = _keys_at(loc[:-1], model)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    notes = [f"did you mean {close[0]!r}?"] if close else []
    if known:
        notes.append(f"allowed keys: {', '.join(known)}")
    return f" ({'; '.join(notes)})" if notes else ""


def _keys_at(loc: Sequence[Any], root: type[BaseModel] = Params) -> list[str]:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        field = model.model_fields.get(str(part))
        model = _submodel(field.annotation) if field else None
    return sorted(model.model_fields) if model else []


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def apply_override(raw: dict[str, Any], override: str, model: type[BaseModel] = Params) -> None:
    """Apply one `key.path=value` (value parsed as YAML) to the raw mapping of a `model` params file."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key.path=value (got {excerpt(override)})")
    if len(key) > 200:
        raise ConfigError(f"--set {excerpt(key)}: not a params key")
    parts = key.split(".")
    retired = next((tuple(parts[:n]) for n in range(1, len(parts) + 1) if tuple(parts[:n]) in RETIRED_KEYS), None)
    if model is Params and retired:
        raise ConfigError(f"--set {key}: {RETIRED_KEYS[retired]}")
    known = _keys_at(parts[:-1], model)
    if parts[-1] not in known:
        close = difflib.get_close_matches(parts[-1], known, n=1, cutoff=0.6)
        hint = f"; did you mean {'.'.join([*parts[:-1], close[0]])!r}?" if close else ""
        allowed = f" Allowed here: {', '.join(known)}." if known else ""
        raise ConfigError(f"--set {key}: unknown key{hint}{allowed}")
    value = load_yaml(text, f"--set {key}", max_bytes=MAX_VALUE_BYTES) if text.strip() else ""
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value
