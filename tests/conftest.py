"""Shared fixtures: real samples, small generated data, a project copy, a browser, a registered champion.

Plain helpers live in tests/helpers.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.browser import Browser, BrowserMissing, chromium
from tests.helpers import (
    REPO,
    SAMPLES,
    SHARED,
    build_processed,
    skip_outside_ci,
)

# Fails the run when a process the tests started outlives the session (tests/process_guard.py); with
# QUICKDRAW_TEST_CPU_LOG set, logs the CPU seconds of each test (tests/cpu_time.py).
pytest_plugins = ["tests.process_guard", "tests.cpu_time"]


# The slowest tests as `make test`'s --durations listed them (docs/PERFORMANCE.md, "The test suite"),
# slowest first. They start first, so that the workers finish together instead of one of them
# starting a long test while the others have run out of work (longest-processing-time-first order).
SLOWEST_FIRST = (
    "integration/test_versioning.py::test_runs_are_committed_pushed_experimented_cloned_and_reproduced",
    "integration/test_dvc.py::test_repro_runs_all_stages_then_is_a_no_op",
    "model/test_real_quality.py::test_the_default_recipe_on_real_drawings_reaches_its_floor",
    "model/test_determinism.py::test_two_fresh_flow_runs_give_the_same_model_bytes_and_metrics",
    "model/test_determinism.py::test_a_fresh_stage_run_gives_the_flow_runs_model_bytes_and_metrics",
    "integration/test_tune_workers.py::test_two_workers_share_the_trials_and_record_what_one_worker_does",
    "integration/test_ml_stages.py::test_killed_search_resumes_without_repeating_finished_trials",
    "model/test_backends.py::test_train_on_jax_then_evaluate_on_tensorflow_agree",
    "model/test_backends.py::test_two_jax_devices_train_as_one_and_the_model_evaluates_under_tensorflow",
    "model/test_real_quality.py::test_the_defaults_on_a_slice_of_the_larger_real_set_reach_their_floor",
    "integration/test_mlflow_live.py::test_a_run_is_watched_live_and_a_killed_one_keeps_its_epochs",
    "integration/test_paint.py::test_dvc_stage_and_prefect_flow_paint_the_same_picture",
    "integration/test_deployment.py::test_deployment_has_the_cron_schedule_and_a_served_run_completes",
    "reliability/test_dvc_and_flow.py::test_dvc_commands_refuse_while_a_flow_runs_and_touch_nothing",
    "integration/test_ml_stages.py::test_killed_training_resumes_at_its_last_finished_epoch",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile numba's kernels into the checkout's cache before any worker starts (only the controller runs it).

    Project copies carry that cache (bench.workspace.copy_project); before, each copy compiled the kernels
    again in its fetch, preprocess and evaluate processes, about 11 CPU s a copy. When the cache is warm
    (`make install` fills it), this costs under a second.
    """
    if getattr(session.config, "workerinput", None) is not None:
        return
    done = subprocess.run(
        [sys.executable, "-m", "quickdraw_dag.data.compiled"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise pytest.UsageError(f"compiling numba's kernels failed: {done.stderr.strip()[-2000:]}")


WORKER_MEMORY = 3 * 1024**3  # bytes a test worker may need (TensorFlow, JAX, a Prefect client, a model)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: `-p no:xdist -o addopts=` runs without it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject.toml): one worker more than there are cores, bounded by memory (~3 GiB a worker).

    Two workers on this 2-core machine kept it busy 83% of the suite's time: each worker waits at times
    (a server starting, a subprocess's output, a browser) and its core idles meanwhile. A third fills
    those waits: 97% busy, 809 s instead of 907 s for the same tests (docs/PERFORMANCE.md, "The test suite").
    """
    import psutil

    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):  # xdist's own override still wins
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    cores = len(os.sched_getaffinity(0))  # the cores this process may use, not all the machine has
    return max(1, min(cores + 1, psutil.virtual_memory().total // WORKER_MEMORY))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest tests first, then the others marked slow, then the rest, each in collection order.

    xdist's loadgroup schedules its groups (bigger first) before single tests, then the single tests
    in this order; every worker sorts the same collection the same way, as xdist requires.
    """

    def rank(item: pytest.Item) -> int:
        name = item.nodeid.removeprefix("tests/")
        for position, slow in enumerate(SLOWEST_FIRST):
            if name == slow or name.startswith(slow + "["):
                return position
        return len(SLOWEST_FIRST) + (0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)


# No telemetry from anything the tests start, and no progress bars in logs.
os.environ.setdefault("DO_NOT_TRACK", "true")


os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


os.environ.setdefault("QUICKDRAW_DAG_PROGRESS", "0")


os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _threads_per_worker() -> int:
    """The cores each xdist worker may use: TensorFlow sizes its pools to every core by default, so two
    workers training at once (and the stage processes they start, which inherit this) ran twice as many
    busy threads as there are cores, and spent the difference contending."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, len(os.sched_getaffinity(0)) // workers)


os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(_threads_per_worker()))
os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(_threads_per_worker()))


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


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Three synthetic classes, preprocessed once per session (read-only: copy it before writing)."""
    return build_processed(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def browser() -> Iterator[Browser]:
    """Headless Chromium through chromedriver (tests/browser.py); skipped when not installed, except in CI."""
    try:
        with chromium() as session:
            yield session
    except BrowserMissing as missing:
        skip_outside_ci(str(missing))


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


@pytest.fixture(scope="session")
def worker_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Prefect home of this worker's server: its database, searched by the secrets test."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="session")
def worker_prefect_server(worker_prefect_home: Path) -> Iterator[str]:
    """One Prefect server per xdist worker, in a Prefect home of its own; yields its API URL.

    A flow run without PREFECT_API_URL starts and migrates a temporary server of its own, tens of seconds
    on a busy machine (docs/PERFORMANCE.md, "The test suite"); the flows the tests start share this one
    instead (`_flows_report_to_the_workers_prefect_server`).
    """
    import subprocess
    import time

    import prefect
    import requests

    from tests.browser import free_port
    from tests.helpers import kill_tree

    home = worker_prefect_home
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    # Prefect's own command for its temporary server (prefect.server.api.server.SubprocessASGIServer).
    env.update({"PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"})
    command = ["-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory"]
    command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, *command, "--log-level", "error", "--lifespan", "on"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"the shared Prefect server exited with {server.returncode}"
            assert time.monotonic() < deadline, "the shared Prefect server did not answer in 180 s"
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_tree(server.pid)


# Their tests start no flow: a single unit test does not wait for a Prefect server.
NO_FLOWS = ("tests/unit/", "tests/data/")


@pytest.fixture(autouse=True)
def _flows_report_to_the_workers_prefect_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PREFECT_API_URL set to the worker's server, so that the flows a test starts skip a temporary one.

    The tests about the flow's own temporary server (its start, telemetry, death, stop on a signal or a full
    disk) take PREFECT_API_URL out of their flow's environment themselves, as a user without one runs it.
    """
    if not request.node.nodeid.startswith(NO_FLOWS):
        monkeypatch.setenv("PREFECT_API_URL", request.getfixturevalue("worker_prefect_server"))
