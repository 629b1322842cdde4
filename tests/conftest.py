"""Shared fixtures: the real samples in ../shared, small generated data, a project copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "data" / "quickdraw"))

# No telemetry from anything the tests start, and no progress bars in logs.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("QUICKDRAW_DAG_PROGRESS", "0")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture()
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Hand a test's figures to docs/RELIABILITY.md (`python -m bench.reliability` sets the log)."""

    def write(family: str, **figures: object) -> None:
        target = os.environ.get("QUICKDRAW_RELIABILITY_LOG")
        if target:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"family": family, "test": request.node.name, **figures}) + "\n")

    return write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Google's real samples; absent in a user's clone, so skip with a reason."""
    if not (SHARED / "simplified").is_dir():
        pytest.skip(f"real Quick, Draw! samples not found at {SHARED} (set QUICKDRAW_SHARED)")
    return SHARED


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the project's pipeline files in a temporary git + DVC repo."""
    from bench.workspace import copy_project

    return copy_project(tmp_path / "project")


def run_module(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m module args` the way DVC does, in `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (for byte-identity checks)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build_processed(root: Path, categories: tuple[str, ...] = ("circle", "square", "line"),
                    drawings: int = 120, image_size: int = 28, seed: int = 0) -> Path:
    """Synthetic drawings through fetch → split → preprocess; returns the processed dir."""
    from quickdraw_dag.config import DataParams, FetchParams, PreprocessParams, SplitParams
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split

    data = DataParams(source="synthetic", categories=categories)
    fetch(data, FetchParams(synthetic_drawings=drawings, synthetic_seed=seed), root / "raw")
    split(data, SplitParams(), root / "raw", root / "interim")
    preprocess(data, PreprocessParams(image_size=image_size, workers=1), root / "interim", root / "processed")
    return root / "processed"


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_processed(tmp_path_factory.mktemp("tiny"))
