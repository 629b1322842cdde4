"""DVC's view of the pipeline, for the Prefect flow: what is current, what to commit.

The flow asks DVC whether a stage changed (its params or deps differ from
`dvc.lock`), runs it only if so, and then records it with `dvc commit`, so
the flow and `dvc repro` never disagree about what is current: after a flow
run `dvc status` reports nothing to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from quickdraw_dag.atomic import write_bytes_atomic
from quickdraw_dag.config import Params, apply_override, read_params_file, validate_params


def open_repo(root: Path = Path(".")) -> Any:
    """DVC's `Repo` at `root`, for the flow's own calls (`quickdraw_dag.versioning` too)."""
    from dvc.repo import Repo

    return Repo(str(root))


def stage_is_current(name: str, root: Path = Path(".")) -> bool:
    """True when `dvc status <name>` would report nothing to do."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return not repo.status(targets=[name])


def commit_stage(name: str, root: Path = Path(".")) -> None:
    """Record the stage's params, deps and outputs in dvc.lock (as `dvc commit -f`)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.commit(name, force=True)


def persist_overrides(path: Path, overrides: Sequence[str], model: type[BaseModel] = Params) -> None:
    """Write validated `--set` overrides into params.yaml, keeping its comments.

    Like `dvc exp run -S`: the file DVC reads must hold the values a run used,
    or `dvc status` would call the run's outputs stale.
    """
    if not overrides:
        return
    raw = read_params_file(path)
    for override in overrides:
        apply_override(raw, override, model)
    validate_params(raw, str(path), model)  # refuse before touching the file
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    document: Any = yaml.load(Path(path).read_text(encoding="utf-8"))
    for override in overrides:
        key, _, _ = override.partition("=")
        parts = key.strip().split(".")
        node, value = document, raw
        for part in parts[:-1]:
            value = value[part]
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value[parts[-1]]
    buffer = StringIO()
    yaml.dump(document, buffer)
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))
