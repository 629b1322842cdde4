"""Atomic outputs: write under a temporary name, then rename.

A crash or a kill never leaves a half-written file (or directory) at an
output path: readers see the old complete version or the new one. A full
disk is a `DiskFullError` naming the output, with the temporary removed.
A folder output is replaced only when everything in it is something its
stage writes (`owns`): a stage never deletes a file it did not write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quickdraw_dag.errors import ConfigError
from quickdraw_dag.runtime.diskspace import disk_full_error, is_disk_full

# What `tempfile.mkstemp`/`mkdtemp` make for `.<name>.` + `.tmp<suffix>` or `.old`: 8 characters of its alphabet.
_RANDOM = r"[a-z0-9_]{8}"


def _default_mode(directory: bool = False) -> int:
    """What open()/mkdir() would give under the current umask (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def remove_stale_temporaries(path: Path) -> None:
    """Drop what a killed writer of `path` left behind (exactly the names `_temporary_sibling` makes).

    Safe because writers of one workspace are serialized by its lock
    (`quickdraw_dag.runtime.lock`), and parallel jobs of a run write different names.
    A link is unlinked, never followed.
    """
    if not path.parent.is_dir():
        return
    ours = re.compile(rf"\.{re.escape(path.name)}\.{_RANDOM}(\.tmp{re.escape(path.suffix)}|\.tmp|\.old)")
    for leftover in path.parent.iterdir():
        if not ours.fullmatch(leftover.name):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


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
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full_error(path) from None
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent, trailing newline)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def foreign_entries(folder: Path, owns: Callable[[str], bool], limit: int = 3) -> list[str]:
    """Up to `limit` entries under `folder` (POSIX paths relative to it) that `owns` does not claim; links never are."""
    found = []
    for current, directories, files in os.walk(folder):
        for name in sorted(directories) + sorted(files):
            entry = Path(current, name)
            relative = entry.relative_to(folder).as_posix()
            if entry.is_symlink() or not owns(relative):
                found.append(relative)
                if len(found) >= limit:
                    return found
        directories[:] = [d for d in directories if not Path(current, d).is_symlink()]
    return found


def check_replaceable(path: Path, owns: Callable[[str], bool]) -> None:
    """Refuse (ConfigError) when `path` exists and is not wholly what its stage writes."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        kind = "a symlink" if path.is_symlink() else "a file"
        raise ConfigError(f"{path}: is {kind}, not a folder this stage wrote; refusing to replace it (check paths.*)")
    foreign = foreign_entries(path, owns)
    if foreign:
        raise ConfigError(
            f"{path}: holds {', '.join(foreign)}{', ...' if len(foreign) >= 3 else ''}, which this stage does not "
            "write; refusing to replace the folder (move those away, or point paths.* at a folder of its own)"
        )


@contextmanager
def atomic_directory(path: str | Path, *, owns: Callable[[str], bool]) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it into place.

    The old directory is renamed away before the new one is renamed in and
    deleted after, so `path` holds either the old or the new complete tree.
    `owns(relative_posix_path)` says which entries the stage writes; an old
    directory holding anything else is refused before any work starts.
    """
    path = Path(path)
    check_replaceable(path, owns)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    building.chmod(_default_mode(directory=True))
    try:
        yield building
        check_replaceable(path, owns)  # nothing foreign arrived while we were building
    except BaseException as error:
        shutil.rmtree(building, ignore_errors=True)
        if is_disk_full(error):
            raise disk_full_error(path) from None
        raise
    retired = None
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        retired.rmdir()
        os.replace(path, retired)
    os.replace(building, path)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
