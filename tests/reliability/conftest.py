"""Figures of the reliability tests, collected for docs/RELIABILITY.md.

Each test asserts on its outcomes as any test does, and also hands its
counts to `record(family, **figures)`; with QUICKDRAW_RELIABILITY_LOG set
(by `python -m bench.reliability`), they are appended there as JSON lines.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import pytest


@pytest.fixture()
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    def write(family: str, **figures: object) -> None:
        target = os.environ.get("QUICKDRAW_RELIABILITY_LOG")
        if target:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"family": family, "test": request.node.name, **figures}) + "\n")

    return write
