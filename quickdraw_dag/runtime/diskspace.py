"""Full disks: checked before writing where sizes are known, and a clear error where they are not.

A stage whose output sizes are known (preprocess's arrays, split's bitmap
shards, fetch's copies) checks the free space first and reserves the blocks
of a memory-mapped file before writing through the map: a write through a
map into a sparse file on a full disk is a SIGBUS that kills the process
with no message and no cleanup. Any other "no space left on device" becomes
a `DiskFullError` (exit 2) naming the path, so the writer's temporary files
are removed on the way out like after any other error.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quickdraw_dag.errors import DiskFullError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Room left for everything else (logs, DVC's state, small JSON files) besides a stage's known outputs.
MARGIN_BYTES = 1 << 20


def human(size: int | float) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def free_bytes(folder: Path) -> int:
    """Free space for an unprivileged writer on the file system that holds (or will hold) `folder`."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def ensure_free(folder: Path, needed: int, what: str) -> None:
    """Refuse before writing when `needed` bytes (plus a margin) do not fit beside `folder`."""
    free = free_bytes(folder)
    if needed + MARGIN_BYTES > free:
        raise DiskFullError(
            f"{what}: needs {human(needed)} ({needed} bytes) in {folder}, and only {human(free)} is free; "
            "free some space or point paths.* at a bigger disk"
        )


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in FULL_ERRNOS


def disk_full_error(path: Path | str, needed: int | None = None) -> DiskFullError:
    free = free_bytes(Path(path).parent)
    wanted = f" (this stage needs about {human(needed)})" if needed else ""
    return DiskFullError(f"{path}: no space left on device: {human(free)} free{wanted}; nothing was written there")


@contextmanager
def disk_full_as_error(path: Path | str, needed: int | None = None) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside into a `DiskFullError` naming `path`."""
    try:
        yield
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(path, needed) from None
        raise


def reserve(path: Path, size: int) -> None:
    """Allocate `size` bytes of `path` on disk now, so later writes through a memory map cannot fail."""
    handle = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(handle, 0, size)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(path, size) from None
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(handle)
