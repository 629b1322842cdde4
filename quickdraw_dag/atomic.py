"""Atomic outputs: write under a temporary name, then rename.

A crash or a kill never leaves a half-written file (or directory) at an
output path: readers see the old complete version or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _default_mode(directory: bool = False) -> int:
    """What open()/mkdir() would give under the current umask (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def remove_stale_temporaries(path: Path) -> None:
    """Drop what a killed writer of `path` left behind (`.<name>.*.tmp*`, `.<name>.*.old`).

    Safe because writers of one workspace are serialized by its lock
    (`quickdraw_dag.lock`), and parallel jobs of a run write different names.
    """
    if not path.parent.is_dir():
        return
    for leftover in path.parent.glob(f".{glob_escape(path.name)}.*"):
        if ".tmp" in leftover.name or leftover.name.endswith(".old"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _temporary_sibling(path: Path, suffix: str = "") -> Path:
    # Same directory, so the final os.replace never crosses file systems.
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.fchmod(handle, _default_mode())
    os.close(handle)
    return Path(name)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = _temporary_sibling(path, path.suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent, trailing newline)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it into place.

    The old directory is renamed away before the new one is renamed in and
    deleted after, so `path` holds either the old or the new complete tree.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    building.chmod(_default_mode(directory=True))
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    retired = None
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        retired.rmdir()
        os.replace(path, retired)
    os.replace(building, path)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
