"""Whether a process still runs: how a later run tells a killed writer from a live one."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while `pid` exists on this host (owned by us or by someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
