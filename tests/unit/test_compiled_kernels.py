"""numba's compiled kernels: compiled once (make install, or the test session's start), reused by project copies.

Every project copy (bench.workspace.copy_project: the flow, DVC and benchmark
workspaces) compiled the kernels again, about 11 CPU s a copy, because the copy
left `__pycache__` behind. The check is numba's own count of cache hits and
misses in a process running in a fresh copy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json

import numba

from quickdraw_dag.data import compiled, raster
from quickdraw_dag.data.formats import binary, simplify

compiled.warm_up()
kernels = {}
for module in (raster, binary, simplify):
    for name, value in vars(module).items():
        if isinstance(value, numba.core.registry.CPUDispatcher):
            stats = value.stats
            kernels[name] = {
                "hits": sum(stats.cache_hits.values()),
                "misses": sum(stats.cache_misses.values()),
                "cache": stats.cache_path,
            }
print(json.dumps(kernels))
"""
# The kernels Python calls; the others are compiled into these (numba links callees into the caller).
CALLED_FROM_PYTHON = ("_render", "_parse_block", "_encode", "_rdp")


def test_a_project_copy_loads_the_compiled_kernels_instead_of_compiling_them(tmp_path: Path) -> None:
    from bench.workspace import copy_project

    root = copy_project(tmp_path / "copy")
    assert not list(root.rglob("*.pyc"))  # bytecode stays behind
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kernels = json.loads(done.stdout)
    assert set(CALLED_FROM_PYTHON) <= set(kernels) and len(kernels) >= 15
    assert {name: k["misses"] for name, k in kernels.items() if k["misses"]} == {}  # nothing compiled in the copy
    assert all(kernels[name]["hits"] >= 1 for name in CALLED_FROM_PYTHON), kernels
    assert all(k["cache"].startswith(str(root)) for k in kernels.values())  # the copy's own files, not the checkout's


def test_the_warm_up_is_what_make_install_runs() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    install = makefile.split("$(STAMP): pyproject.toml requirements.lock", 1)[1].split("\n\n", 1)[0]
    assert "$(PY) -m quickdraw_dag.data.compiled" in install
