"""Keep a data stage's memory flat as files grow.

The readers stream in blocks of a few MB. glibc's malloc raises its mmap
threshold each time such a block is freed, after which the blocks come from
the heap, which fragments and grows with the number of blocks read: about
70 MB more peak memory for a 117 MB file than for a 12 MB one. Fixing the
threshold at 1 MB (as MALLOC_MMAP_THRESHOLD_ would) returns every big block
to the system when freed. Only the data stages' own processes set it; a
training process keeps glibc's default (its tensors are reused, not streamed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 20


def bound_heap_growth() -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc (nothing to do)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
