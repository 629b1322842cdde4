"""Shared fixtures and helpers: real samples, small generated data, a project copy, DVC and process helpers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from tests.browser import Browser, BrowserMissing, chromium

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "data" / "quickdraw"))
# Real drawings that ship with every clone: 7 categories, 1,000 bitmaps and 25 simplified drawings each.
SAMPLES = REPO / "samples" / "quickdraw"
SAMPLE_CATEGORIES = ("bear", "duck", "frog", "lion", "monkey", "rabbit", "sheep")

# No telemetry from anything the tests start, and no progress bars in logs.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("QUICKDRAW_DAG_PROGRESS", "0")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(autouse=True)
def _tracking_uri_stays_in_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no MLflow store set, and leaves none behind.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, and the flow tests' module
    fixture sets it for their store: under pytest-xdist, other modules' tests run in that worker meanwhile,
    and their stages would log elsewhere (a params check would read the variable instead of params.yaml).
    """
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    if "flow_runs" not in request.fixturenames:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if "mlflow" in sys.modules:
            import mlflow.tracking._tracking_service.utils as tracking_utils

            tracking_utils._tracking_uri = None
    yield
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


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
def samples() -> Path:
    """The real drawings in samples/quickdraw (part of the repository, so never skipped)."""
    assert (SAMPLES / "numpy_bitmap").is_dir() and (SAMPLES / "simplified").is_dir(), f"{SAMPLES} is incomplete"
    return SAMPLES


@pytest.fixture(scope="session")
def shared_raw() -> Path:
    """Google's raw ndjson beside its simplified twins: only in the development checkout's ../shared.

    samples/quickdraw holds no raw files (Google's sample has none for its categories), so the
    raw-format tests skip in a user's clone.
    """
    if not (SHARED / "raw").is_dir():
        pytest.skip(
            f"raw ndjson samples are not in samples/quickdraw and not found at {SHARED / 'raw'} "
            "(set QUICKDRAW_SHARED to a folder with raw/ and simplified/)"
        )
    return SHARED


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the project's pipeline files in a temporary git + DVC repo."""
    from bench.workspace import copy_project

    return copy_project(tmp_path / "project")


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = 300, code: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m module args` the way DVC does, in `cwd`, importing the project at `code` (default `cwd`)."""
    env = {**os.environ, "PYTHONPATH": str(code or cwd)}
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
    from quickdraw_dag.artifacts import write_tuning_result

    hyperparameters = {
        "filters": filters,
        "learning_rate": 0.003,
        "dropout": 0.3,
        "activation": "relu",
        "optimizer": "adam",
        "l2": 1e-5,
        "l1": 0.0,
        "batch_norm": False,
    }
    candidate = {"trial_id": "t", "val_accuracy": 1.0, "images_per_second": 1e6, "hyperparameters": hyperparameters}
    catalog.models.mkdir(parents=True, exist_ok=True)
    write_tuning_result(catalog, {**candidate, "candidates": [candidate]})


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Three synthetic classes, preprocessed once per session (read-only: copy it before writing)."""
    return build_processed(tmp_path_factory.mktemp("tiny"))


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

    params = yaml.safe_load((project / "params.yaml").read_text())
    merge(params, sections)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def dvc(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `dvc` command of this environment, run in `project` (stages find the venv's python)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [str(Path(bin_dir) / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


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


# ----- a browser, and a registered model to serve -----


@pytest.fixture()
def browser() -> Iterator[Browser]:
    """Headless Chromium through chromedriver (tests/browser.py); skipped when not installed, except in CI."""
    try:
        with chromium() as session:
            yield session
    except BrowserMissing as missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{missing}; .ci/run installs them")
        pytest.skip(str(missing))


@dataclass(frozen=True)
class Champion:
    """A store holding `quickdraw-cnn@champion`, and the workspace it was trained in."""

    root: Path
    tracking_uri: str
    catalog: Catalog

    def env(self) -> dict[str, str]:
        """The environment of a subprocess that should use this store (and this checkout's code)."""
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PYTHONPATH": str(REPO),
            "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        }


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """A small CNN trained on three of the sample's categories and registered as champion (about 30 s, once)."""
    from bench.tiny_model import train_registered_model

    root = tmp_path_factory.mktemp("champion")
    uri = train_registered_model(root, ("bear", "duck", "frog"), filters=8, epochs=4)
    return Champion(root, uri, Catalog.under(root))


@pytest.fixture()
def champion_store(champion: Champion, monkeypatch: pytest.MonkeyPatch) -> Champion:
    """`champion`, with MLFLOW_TRACKING_URI pointing at its store for this test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion.tracking_uri)
    return champion
