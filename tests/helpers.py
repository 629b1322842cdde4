"""Helpers shared by the tests (the fixtures are in conftest.py): paths, data, projects, DVC and processes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.config.params_yaml import dump_yaml, load_yaml_bytes

REPO = Path(__file__).resolve().parents[1]


SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "data" / "quickdraw"))


# Real drawings that ship with every clone: 7 categories, 1,000 bitmaps and 25 simplified drawings each.
SAMPLES = REPO / "samples" / "quickdraw"


SAMPLE_CATEGORIES = ("bear", "duck", "frog", "lion", "monkey", "rabbit", "sheep")


def in_ci() -> bool:
    """True under CI=true, as `.ci/run` is run."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_outside_ci(reason: str) -> NoReturn:
    """Skip a test whose tool or permission is missing here, but fail it under CI.

    CI runs every test that runs locally: `.ci/run` installs what they need. Only the tests of
    `../shared` (the `shared_raw` fixture) may skip in CI, where the folder is absent.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true runs every test: .ci/run must provide it)", pytrace=False)
    pytest.skip(reason)


def needs_jax() -> None:
    """The JAX backend's tests: jax ships in the dev extra, so only a hand-made environment lacks it."""
    if importlib.util.find_spec("jax") is None:
        skip_outside_ci("jax is not installed (pip install 'jax[cpu]')")


def run_bounded(args: list[str], *, timeout: float, **kwargs: object) -> subprocess.CompletedProcess:
    """`subprocess.run(args, capture_output=True, text=True)`, but a timeout kills the whole process tree.

    subprocess.run kills only the top process: the servers, pool workers and stages it started would be
    orphaned and outlive the suite (tests/process_guard.py fails the run for them).
    """
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            process.communicate()
            raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, the descendants first (collected before anyone dies)."""
    import psutil

    try:
        top = psutil.Process(pid)
        tree = [*top.children(recursive=True), top]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(tree, timeout=10)


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = 300, code: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m module args` the way DVC does, in `cwd`, importing the project at `code` (default `cwd`)."""
    env = {**os.environ, "PYTHONPATH": str(code or cwd)}
    return run_bounded([sys.executable, "-m", module, *args], cwd=cwd, env=env, timeout=timeout)


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (for byte-identity checks)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def catalog_of(root: Path, **dirs: Path) -> Catalog:
    """A catalog with every root directly below `root` (`root/raw`, …), or as given in `dirs`."""
    names = ("raw", "interim", "processed", "models", "reports")
    return Catalog(**{name: Path(dirs.get(name, Path(root) / name)) for name in names})


def build_processed(
    root: Path | Catalog,
    categories: tuple[str, ...] = ("circle", "square", "line"),
    drawings: int = 120,
    image_size: int = 28,
    seed: int = 0,
) -> Catalog:
    """Synthetic drawings through fetch → split → preprocess; returns the catalog (`catalog_of(root)` for a path)."""
    from quickdraw_dag.config.schema import DataParams, FetchParams, PreprocessParams, SplitParams
    from quickdraw_dag.runtime.fanout import serial_map
    from tasks.fetch import fetch
    from tasks.preprocess import preprocess
    from tasks.split import split

    catalog = catalog_of(root) if isinstance(root, Path) else root
    data = DataParams(source="synthetic", categories=categories)
    fetch(data, FetchParams(synthetic_drawings=drawings, synthetic_seed=seed), catalog)
    split(data, SplitParams(), catalog)
    preprocess(data, PreprocessParams(image_size=image_size), catalog, serial_map)
    return catalog


def write_best(catalog: Catalog, filters: int = 8) -> None:
    """A tuning result with one candidate, as tune writes it (tests of train alone)."""
    from bench.tiny_model import write_tiny_candidate

    write_tiny_candidate(catalog, filters, trial_id="t", val_accuracy=1.0)


def set_params(project: Path, **sections: dict) -> None:
    """Merge values into the project's params.yaml (nested mappings merge key by key).

    `project` may also be a pipeline's folder, e.g. `project / "paint"` for the paint pipeline's params.
    """

    def merge(into: dict, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    params = load_yaml_bytes((project / "params.yaml").read_bytes(), "params.yaml")
    merge(params, sections)
    (project / "params.yaml").write_text(dump_yaml(params))  # YAML 1.2, the dialect params are read in


def dvc(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `dvc` command of this environment, run in `project` (stages find the venv's python)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1"}
    return run_bounded([str(Path(bin_dir) / "dvc"), *args], cwd=project, env=env, timeout=timeout)


def dvc_status(project: Path, *targets: str) -> str:
    return dvc(project, "status", *targets, timeout=120).stdout


def start(module: str, *args: str, cwd: Path) -> subprocess.Popen:
    """`python -m module args` in the background, with this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 240) -> None:
    """SIGKILL `process` as soon as `condition()` holds (it must not finish first)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "finished before it could be killed"
        assert time.monotonic() < deadline, "never reached the point to kill at"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def twin(project: Path, name: str) -> Path:
    """A copy of `project` beside it, for an uninterrupted reference run."""
    copy = project.parent / name
    shutil.copytree(project, copy, symlinks=True)
    return copy


def git_commit_all(project: Path, message: str = "test state") -> str:
    """Commit everything in the project's git repository; returns the commit's hash."""
    run = lambda *args: subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True)
    run("add", "-A")
    run("-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", message)
    return run("rev-parse", "HEAD").stdout.strip()


# A pipeline that runs end to end in well under a minute: tiny synthetic data, tiny search and training.
TINY_PIPELINE: dict[str, dict] = {
    "data": {"source": "synthetic", "categories": ["circle", "square", "line"]},
    "fetch": {"synthetic_drawings": 60},
    "tune": {
        "max_epochs": 2,
        "max_seconds": None,  # the safety limit is off in tests: results never depend on the clock
        "space": {"filters": [8, 16], "learning_rate": [0.003], "batch_norm": [False]},
    },
    "train": {"epochs": 3, "max_seconds": None},
}
# The same with a one-point space, as the defaults have: tune trains no trial. For tests that never look
# at the search (its trials, their nested MLflow runs), so that each pipeline run skips a Hyperband.
TINY_FIXED_PIPELINE: dict[str, dict] = {
    **TINY_PIPELINE,
    "tune": {**TINY_PIPELINE["tune"], "space": {"filters": [8], "learning_rate": [0.003], "batch_norm": [False]}},
}


@contextmanager
def serve_page(game: Any, **options: Any) -> Iterator[str]:
    """The drawing page for `game` on a free port of 127.0.0.1, in a thread; yields its URL."""
    from quickdraw_dag.serving.server import make_server

    server = make_server(game, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def prepare_slow_preprocess(project: Path) -> None:
    """Fetch and split six synthetic classes, so that preprocess at 128×128 takes seconds to kill in.

    Few drawings (synthesis is slow) at 128×128 (rasterizing is not).
    """
    set_params(
        project,
        data={"source": "synthetic", "categories": ["circle", "square", "line", "star", "moon", "zigzag"]},
        fetch={"synthetic_drawings": 1000},
        preprocess={"image_size": 128},
    )
    for stage in ("tasks.fetch", "tasks.split"):
        assert run_module(stage, cwd=project).returncode == 0
