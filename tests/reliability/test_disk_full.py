"""A full disk: exit 2 naming the path and the bytes, temporaries removed, no SIGBUS, no server left behind.

Each test mounts a real tmpfs of a few hundred KB (root only) where one
stage writes its outputs. Preprocess knows its outputs' size and refuses
before writing (it used to write through a sparse memory map and die by
SIGBUS, exit 135, leaving `.processed.*.tmp` behind); fetch and split turn
"no space left on device" into exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, run_module, set_params, skip_outside_ci
from tests.reliability.faults import survivors

SYNTHETIC = {
    "data": {"source": "synthetic", "categories": ["circle", "square", "star"]},
    "fetch": {"synthetic_drawings": 1500},
    "preprocess": {"image_size": 64},
}


@pytest.fixture()
def small_disk() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a tmpfs of the given size at a path (unmounted afterwards); skips where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        if os.geteuid() != 0:
            skip_outside_ci("mounting a small tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            skip_outside_ci(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
def test_preprocess_refuses_before_writing_when_its_arrays_do_not_fit(
    project: Path, small_disk: Callable[[Path, str], Path], record
) -> None:
    set_params(project, **SYNTHETIC, paths={"processed": "small/processed"})
    for stage in ("tasks.fetch", "tasks.split"):
        assert run_module(stage, cwd=project).returncode == 0
    disk = small_disk(project / "small", "2m")
    done = run_module("tasks.preprocess", cwd=project)
    assert done.returncode == 2, done.stderr[-2000:]  # not -7 (SIGBUS)
    assert "preprocess: needs" in done.stderr and "small" in done.stderr and "bytes" in done.stderr
    assert "Traceback" not in done.stderr
    assert leftovers(disk) == []
    detail = done.stderr.strip().splitlines()[-1].removeprefix("error: ")[:160]
    record("full disk", stage="preprocess", detail=detail, torn=0)


@pytest.mark.slow
@pytest.mark.parametrize("stage,key,size", [("fetch", "raw", "256k"), ("split", "interim", "64k")])
def test_fetch_and_split_on_a_full_disk_exit_2_and_leave_no_temporaries(
    project: Path, small_disk: Callable[[Path, str], Path], stage: str, key: str, size: str, record
) -> None:
    set_params(project, **SYNTHETIC, paths={key: f"small/{key}"})
    if stage == "split":
        assert run_module("tasks.fetch", cwd=project).returncode == 0
    disk = small_disk(project / "small", size)
    done = run_module(f"tasks.{stage}", cwd=project)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "small" in done.stderr and ("no space left" in done.stderr or "needs" in done.stderr)
    assert "Traceback" not in done.stderr
    assert [name for name in leftovers(disk) if ".tmp" in name] == []
    record("full disk", stage=stage, detail=done.stderr.strip().splitlines()[-1].removeprefix("error: ")[:160], torn=0)


@pytest.mark.slow
def test_a_flow_on_a_full_disk_exits_2_and_stops_its_prefect_server(
    project: Path, small_disk: Callable[[Path, str], Path], record
) -> None:
    set_params(project, **SYNTHETIC, paths={"processed": "small/processed"})
    small_disk(project / "small", "2m")
    marker = f"QUICKDRAW_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": str(REPO), marker.split("=")[0]: marker.split("=")[1]}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--until", "preprocess"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "preprocess: needs" in done.stderr
    assert survivors(marker) == []  # the temporary Prefect server went with the flow
    record("full disk", stage="flow (preprocess)", detail="exit 2, temporary Prefect server stopped", torn=0)
