"""A scratch copy of the project: its pipeline files in a fresh git + DVC repository.

Shared by the benchmarks and the tests, which run the real `dvc`, flows and
stage commands there without touching the checkout's data, params or stores.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from quickdraw_dag.artifacts import PAINT_PIPELINE

REPO = Path(__file__).resolve().parents[1]


def copy_project(root: Path) -> Path:
    """Copy both pipelines' files (params, dvc.yaml, ignore files, `.dvc/` without cache), the packages (with
    numba's compiled kernels, without bytecode) and the samples; `git init`.

    The paint pipeline (`paint/`, a DVC project of its own) comes without its outputs, lock or cache.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "dvc.yaml", ".dvcignore", ".gitignore", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    for package in ("tasks", "flows", "quickdraw_dag", "samples"):
        shutil.copytree(REPO / package, root / package, ignore=_bytecode)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(
        REPO / PAINT_PIPELINE,
        root / PAINT_PIPELINE,
        ignore=shutil.ignore_patterns("tmp", "cache", "reports", "dvc.lock", ".quickdraw.lock", "config.local"),
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _bytecode(folder: str, names: list[str]) -> set[str]:
    """Python's bytecode stays behind; numba's compiled kernels (`__pycache__/*.nbi`, `*.nbc`) come along.

    numba finds them beside the copied sources (copytree keeps the sources' times, which its cache index
    checks): without them every copy compiled the kernels again, about 11 CPU s for each project copy.
    """
    return {name for name in names if name.endswith((".pyc", ".pyo"))}
