"""Real `dvc repro` on the real samples: both stages run, then nothing to do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from quickdraw_dag.formats import read_binary


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(Path(bin_dir) / "dvc"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def set_params(project: Path, **sections: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_runs_fetch_and_split_then_is_a_fast_no_op(project: Path, shared_data: Path) -> None:
    categories = ["apple", "cat", "The Mona Lisa"]
    set_params(project, data={"source": str(shared_data / "simplified"), "categories": categories})
    first = dvc(project, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'fetch'" in first.stdout and "Running stage 'split'" in first.stdout
    for category in categories:
        drawings = sum(len(read_binary(project / "data/interim" / s / f"{category}.bin")) for s in ("train", "val", "test"))
        assert 0 < drawings <= 25
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["split"]["params"]["params.yaml"]["split"]["seed"] == 0
    assert set(lock["stages"]) == {"fetch", "split"}

    started = time.perf_counter()
    second = dvc(project, "repro")
    elapsed = time.perf_counter() - started
    assert second.returncode == 0
    assert "didn't change, skipping" in second.stdout and "Running stage" not in second.stdout
    assert elapsed < 5, f"a no-op dvc repro took {elapsed:.1f}s"
    assert "up to date" in dvc(project, "status").stdout

    # Changing only split params reruns only split.
    set_params(project, split={"seed": 7})
    third = dvc(project, "repro")
    assert "Running stage 'split'" in third.stdout and "Running stage 'fetch'" not in third.stdout
