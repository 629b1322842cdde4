"""Where stages may write: output roots inside the workspace, apart from everything else.

A stage deletes and replaces what lies under its output paths (`paths.*`),
so each one must be a location of its own: relative, inside the workspace,
not the project's source, `.git`, `.dvc`, the MLflow store, the shipped
samples or any other project file, not overlapping another output, and not
reached through a symlink that leads out of the workspace (or back into one
of those places). `check_output_roots` holds the rules that need only the
values (params validation calls it, so a bad value is refused before the
flow saves it into params.yaml); `check_workspace` holds the ones that need
the file system, and runs before any stage starts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from quickdraw_dag.errors import excerpt

# Top-level names of the project that no output may be, contain or lie in.
RESERVED_NAMES: frozenset[str] = frozenset(
    {
        "quickdraw_dag",
        "tasks",
        "flows",
        "tests",
        "bench",
        "samples",
        "docs",
        "mlflow.db",
        "mlflow.db.lock",
        "mlartifacts",
        "mlruns",
        "dvc_plots",
        "params.yaml",
        "dvc.yaml",
        "dvc.lock",
        "README.md",
        "Makefile",
        "pyproject.toml",
        "requirements.lock",
    }
)
MAX_PATH_CHARS = 512
MAX_PART_BYTES = 255


def output_parts(value: str) -> tuple[str, ...]:
    """The normalized parts of an output path; ValueError says what is wrong with it."""
    if len(value) > MAX_PATH_CHARS:
        raise ValueError(f"longer than {MAX_PATH_CHARS} characters")
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise ValueError("contains control characters")
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a relative path inside the project without '..'")
    if not path.parts:
        raise ValueError("must name a folder inside the project, not the project itself")
    if any(len(part.encode("utf-8")) > MAX_PART_BYTES for part in path.parts):
        raise ValueError(f"has a name longer than {MAX_PART_BYTES} bytes")
    top = path.parts[0]
    if top.startswith("."):
        raise ValueError(f"lies in {top!r}: hidden folders (.git, .dvc, .venv, ...) are not outputs")
    if top in RESERVED_NAMES:
        raise ValueError(f"lies in or is {top!r}, which belongs to the project (source, samples, params, MLflow store)")
    return path.parts


def overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One path is the other, or contains it."""
    shortest = min(len(a), len(b))
    return a[:shortest] == b[:shortest]


def check_output_roots(roots: Mapping[str, str]) -> None:
    """Each output root alone is valid, and no two overlap; ValueError names the keys."""
    parts = {}
    for key, value in roots.items():
        try:
            parts[key] = output_parts(value)
        except ValueError as problem:
            raise ValueError(f"paths.{key}: {problem} (got {excerpt(value)})") from None
    keys = list(parts)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if overlaps(parts[first], parts[second]):
                raise ValueError(
                    f"paths.{first} ({excerpt(roots[first])}) and paths.{second} ({excerpt(roots[second])}) "
                    "overlap: every stage output needs a folder of its own"
                )


def _inside(path: Path, root: Path) -> tuple[str, ...] | None:
    """`path`'s parts relative to `root`, or None when it lies outside (both resolved)."""
    try:
        return path.relative_to(root).parts
    except ValueError:
        return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop, a name too long
        raise ValueError(f"cannot be resolved ({type(error).__name__})") from None


def check_workspace(
    roots: Mapping[str, str],
    root: Path = Path("."),
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
) -> None:
    """The file-system half of the rules, in the workspace `root`; ValueError names the key.

    Each output, with its symlinks followed, stays inside the workspace and
    keeps clear of the reserved names and of the other outputs; `inputs`
    (what the pipeline reads or records into: the data source, the paint
    image, a local MLflow store, by name) lie in no output, nor contain one.
    """
    workspace = _resolved(Path(root))
    resolved: dict[str, tuple[str, ...]] = {}
    for key, value in roots.items():
        target = _resolved(workspace / value.strip())
        parts = _inside(target, workspace)
        if parts is None:
            raise ValueError(
                f"paths.{key}: {excerpt(value)} leads out of the workspace (to {excerpt(str(target), 120)}) "
                "through a symlink; outputs live inside the workspace (put a big cache elsewhere with "
                "`dvc cache dir`, not the outputs)"
            )
        try:
            output_parts(PurePosixPath(*parts).as_posix() if parts else "")
        except ValueError as problem:
            where = excerpt(str(target), 120)
            raise ValueError(f"paths.{key}: {excerpt(value)} resolves to {where}: {problem}") from None
        resolved[key] = parts
    keys = list(resolved)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if overlaps(resolved[first], resolved[second]):
                raise ValueError(
                    f"paths.{first} and paths.{second} resolve to overlapping folders "
                    f"({'/'.join(resolved[first])}, {'/'.join(resolved[second])})"
                )
    for label, other in (inputs or {}).items():
        if other is None:
            continue
        where = _resolved(workspace / other)
        parts = _inside(where, workspace)
        if parts is None:
            continue
        for key, output in resolved.items():
            if overlaps(parts, output):
                raise ValueError(
                    f"{label} ({excerpt(str(other), 120)}) and paths.{key} ({'/'.join(output)}) overlap: "
                    "a stage would overwrite or delete what it reads, or what records the runs"
                )


def local_store_path(uri: str) -> Path | None:
    """The file or folder of a local MLflow store URI (`sqlite:///x.db`, `file:...`, a path), else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file:"))
    if "://" not in uri:
        return Path(uri)
    return None
