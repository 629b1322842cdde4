"""Progress bars for long work, quiet under CI or when stderr is not a TTY."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars only for a person watching: not in CI, not in logs."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    if os.environ.get("QUICKDRAW_DAG_PROGRESS", "").lower() in ("0", "false", "no"):
        return False
    return sys.stderr.isatty()


def progress_bar(**kwargs: Any) -> tqdm:
    """A tqdm bar (use as a context manager), disabled when nobody watches."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    return tqdm(**kwargs)


def track(iterable: Iterable[T], **kwargs: Any) -> Iterable[T]:
    """Wrap an iterable with a progress bar."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
