"""The project's exception types.

Every error a user can fix (bad params, bad data, no network) has its own
type carrying the offending key, file and offset in its message, so entry
points can map it to an exit code without parsing text.
"""

from __future__ import annotations

from pathlib import Path


def clip(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def excerpt(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters: messages quote hostile input, never all of it."""
    return clip(repr(value), limit)


class QuickDrawDagError(Exception):
    """Base class of the errors this project raises on purpose."""

    exit_code = 1


class ConfigError(QuickDrawDagError):
    """Invalid params or command-line usage (exit code 2)."""

    exit_code = 2


class DataError(QuickDrawDagError):
    """A data file is corrupt or does not follow its format (exit code 2).

    The message names the file and the byte offset (binary formats) or the
    line number (ndjson), so the user can inspect the exact place.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        offset: int | None = None,
        line: int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.offset = offset
        self.line = line
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class FetchError(QuickDrawDagError):
    """A download failed after every retry (network, server or content)."""

    exit_code = 1


class OfflineError(FetchError):
    """The download host cannot even be resolved: retrying will not help."""


class SafetyLimitCut(QuickDrawDagError):
    """A wall-clock safety limit stopped a stage early (exit code 3).

    The stage has written its outputs (a usable result), but they are not a
    reproduction of its params: DVC must not record them in dvc.lock. The
    stage's own summary travels in `result`.
    """

    exit_code = 3

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class WorkspaceBusyError(QuickDrawDagError):
    """Another run holds this workspace's lock (exit code 75, EX_TEMPFAIL: try again later)."""

    exit_code = 75


class PushError(QuickDrawDagError):
    """`dvc push` to the remote failed after every retry; the run's outputs are safe in the local cache."""

    exit_code = 1


class NotReproduced(QuickDrawDagError):
    """A past run could not be reproduced: an input is missing, differs, or its metrics came out different."""

    exit_code = 1


class DiskFullError(QuickDrawDagError):
    """Not enough free space for a stage's outputs (exit code 2): the message names the path and the bytes."""

    exit_code = 2
