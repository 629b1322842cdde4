"""SIGTERM and Ctrl-C: the flow stops its stage, stops its Prefect server, exits 143 or 130 within seconds.

`kill <flow pid>` used to leave the temporary Prefect server running (4 of 4
times); Ctrl-C to the terminal's process group took 80 s of ConnectError
retries, the server having died first. A stage stopped by SIGTERM marks its
MLflow run KILLED (it stayed RUNNING, or was closed FAILED).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, set_params
from tests.reliability.faults import PAUSED_FLOW, TINY_DATA, survivors, wait_for


def start_paused_flow(project: Path, tmp_path: Path, marker: str) -> tuple[subprocess.Popen, Path]:
    reached = tmp_path / "reached"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PAUSE_REACHED": str(reached),
        "PAUSE_GO": str(tmp_path / "never"),
        "QUICKDRAW_TEST_RUN": marker,
    }
    env.pop("PREFECT_API_URL", None)
    flow = subprocess.Popen(
        [sys.executable, "-c", PAUSED_FLOW, "--until", "split"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    return flow, reached


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the flow", "SIGINT to its process group"])
def test_a_stopped_flow_exits_in_seconds_and_leaves_no_server(project: Path, tmp_path: Path, how: str, record) -> None:
    set_params(project, **TINY_DATA)
    marker = uuid.uuid4().hex
    flow, reached = start_paused_flow(project, tmp_path, marker)
    try:
        wait_for(reached.exists, flow)  # inside split, the temporary Prefect server running
        assert len(survivors(marker)) >= 2  # the flow and its server
        sent = time.monotonic()
        if how.startswith("SIGTERM"):
            flow.send_signal(signal.SIGTERM)
        else:
            os.killpg(flow.pid, signal.SIGINT)
        _, stderr = flow.communicate(timeout=60)  # it used to take 80 s, or never end
        seconds = time.monotonic() - sent
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
    expected = 143 if how.startswith("SIGTERM") else 130
    assert flow.returncode == expected, stderr[-3000:]
    assert ("SIGTERM" if expected == 143 else "SIGINT") in stderr and "rerun" in stderr
    assert stderr.count("ConnectError") == 0
    deadline = time.monotonic() + 10
    while survivors(marker) and time.monotonic() < deadline:  # a server on its way out
        time.sleep(0.2)
    assert survivors(marker) == []
    interim = Catalog.under(project).interim
    assert [p.name for p in interim.parent.iterdir() if p.name.startswith(f".{interim.name}.")] == []
    record("signals", scenario=how, exit_code=flow.returncode, seconds=round(seconds, 1), servers_left=0)


def run_statuses(database: Path) -> dict[str, str]:
    if not database.exists():
        return {}
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            return dict(connection.execute("select run_uuid, status from runs"))
    except sqlite3.Error:
        return {}


@pytest.mark.slow
def test_a_stage_stopped_by_sigterm_marks_its_mlflow_run_killed(project: Path, record) -> None:
    import mlflow

    from quickdraw_dag.config.schema import TrainParams
    from tasks.train import train
    from tests.helpers import build_processed, write_best

    set_params(project, data={"source": "synthetic", "categories": ["circle", "square", "line"]})
    catalog = build_processed(Catalog.under(project), drawings=60)
    write_best(catalog)
    train(TrainParams(epochs=1, batch_size=32, max_seconds=None), catalog)
    database = project / "mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stage = subprocess.Popen(
        [sys.executable, "-m", "tasks.evaluate"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while "RUNNING" not in run_statuses(database).values():
        assert stage.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    stage.send_signal(signal.SIGTERM)
    _, stderr = stage.communicate(timeout=60)
    assert stage.returncode == 143, stderr[-3000:]
    statuses = run_statuses(database)
    assert statuses and set(statuses.values()) == {"KILLED"}, (statuses, stderr[-3000:])
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    for run_id in statuses:
        assert "stopped by SIGTERM" in mlflow.get_run(run_id).data.tags["killed_note"]
    assert "marked KILLED" in stderr
    record(
        "signals",
        scenario="SIGTERM to the evaluate stage while it logs to MLflow",
        exit_code=143,
        runs_killed=len(statuses),
    )


def run_script(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -c script args` with the project on its path; its output captured."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


SIGNAL_IN_GC_CALLBACK = """
import gc, os, signal, sys, threading, time
from quickdraw_dag.runtime.interrupt import Interrupted, stop_on_signals

import weakref

class Thing:
    pass

def slow_callback(phase, info):
    if phase == "start":
        time.sleep(0.5)  # the signal arrives while the collector runs this

def slow_weakref_callback(ref):
    time.sleep(0.5)  # or while a weakref callback runs (Python swallows its exceptions too)

try:
    with stop_on_signals():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        if sys.argv[1] == "gc":
            gc.callbacks.append(slow_callback)
            gc.collect()
            gc.callbacks.remove(slow_callback)
        else:
            thing = Thing()
            watcher = weakref.ref(thing, slow_weakref_callback)
            del thing
        time.sleep(5)
    print("finished")
except Interrupted as stop:
    print("interrupted")
    sys.exit(stop.exit_code)
"""


@pytest.mark.parametrize("where", ["gc", "weakref"])
def test_a_signal_that_lands_in_a_gc_or_weakref_callback_still_stops_the_work(where: str) -> None:
    # Raised inside such a callback, the stop would be "Exception ignored" and the stage would finish (exit 0).
    result = run_script(SIGNAL_IN_GC_CALLBACK, where)
    assert (result.returncode, result.stdout.strip()) == (143, "interrupted"), result.stderr[-2000:]
    assert "Exception ignored" not in result.stderr


SIGNAL_IN_TENSORFLOW_CODE = """
import os, signal, sys, threading, time
from quickdraw_dag.runtime.cli import exit_code_of
from quickdraw_dag.runtime.interrupt import Interrupted, _fragile_package_dirs

# A function whose code lives in TensorFlow's package folder, as the stack check sees it (nothing is written there).
SOURCE = '''
def tensorflow_op(seconds, also):
    os.kill(os.getpid(), signal.SIGTERM)
    if also:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # Python bytecode all along: the handler runs here, again and again
        pass
'''
namespace = {"os": os, "signal": signal, "threading": threading, "time": time}
exec(compile(SOURCE, os.path.join(_fragile_package_dirs()[0], "fake_op.py"), "exec"), namespace)
tensorflow_op = namespace["tensorflow_op"]
case = sys.argv[1]
started = time.monotonic()
reached = []  # no printing inside the work: a stop raised inside `print` is a different test

def work():
    try:
        tensorflow_op(1.0 if case != "second signal" else 5.0, case == "second signal")
    except Interrupted:
        reached.append("raised inside TensorFlow's code")
        raise
    reached.append("left TensorFlow's code")
    if case == "safe code after":
        time.sleep(5)
    reached.append("finished")

code = exit_code_of(work)
for step in reached:
    print(step)
print(f"exit {code} after {time.monotonic() - started:.1f} s")
sys.exit(code)
"""


@pytest.mark.parametrize("case", ["safe code after", "work ends there", "second signal"])
def test_a_signal_that_lands_in_tensorflow_code_stops_the_work_once_it_is_out(case: str) -> None:
    # Raised inside TensorFlow's Python, a stop broke a device scope (exit 1, run FAILED) or was printed as a
    # SystemError and dropped (exit 0: the CI failure of 2026-12-03). It must wait until the code is left, and
    # never be lost, even when the work ends right there; a second signal still exits at once.
    result = run_script(SIGNAL_IN_TENSORFLOW_CODE, case)
    lines = result.stdout.splitlines()
    assert result.returncode == 143, (result.stdout, result.stderr[-2000:])
    if case == "second signal":
        assert "second signal (SIGTERM): exiting now (exit 143)" in result.stderr
        assert lines == []  # force-exited inside, 0.2 s in, rather than after its 5 s
        return
    # Never raised inside; raised once out: by a retry as the code is left, or at the work's end at the latest.
    allowed = [["left TensorFlow's code"]] + (
        [["left TensorFlow's code", "finished"]] if case == "work ends there" else []
    )
    assert lines[:-1] in allowed, result.stdout
    # Usually out within 1.1 s. Once, in a loaded fresh-clone run (2026-12-04), the retries did not wake the 5 s
    # sleep that follows and the stop came as it ended (6.0 s), still before the work's next step: an open
    # question, so the bound here is the sleep's end, not 3 s.
    assert lines[-1].startswith("exit 143 after ") and float(lines[-1].split()[3]) < 7.0
    assert "rerun the same command to resume" in result.stderr


KERAS_FIT_UNDER_SIGTERM = """
import os, signal, sys, threading
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
from quickdraw_dag.runtime.interrupt import Interrupted, stop_on_signals
from quickdraw_dag.training.callbacks import stop_when_signalled

batches, at_signal = [], []

def send():
    at_signal.append(len(batches))
    os.kill(os.getpid(), signal.SIGTERM)

class Count(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        batches.append(batch)
        if len(batches) == 1:  # timed from the first batch's end: tracing it can take seconds on a loaded machine
            threading.Timer(0.2, send).start()  # from another thread, mid-batch: the main thread is in TensorFlow

model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(2048, activation="relu"), keras.layers.Dense(3)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x, y = np.random.rand(8192, 512).astype("float32"), np.random.randint(0, 3, 8192)
try:
    with stop_on_signals():
        model.fit(x, y, batch_size=64, epochs=5, verbose=0, callbacks=[Count(), *stop_when_signalled()])
    print("finished", len(batches))
except Interrupted as stop:
    print("interrupted", at_signal[0], len(batches))
    sys.exit(stop.exit_code)
"""


def test_a_keras_fit_under_tensorflow_stops_within_a_batch_of_sigterm() -> None:
    # The main thread spends a fit inside TensorFlow's code, where the stop is deferred: the callback raises it
    # after the batch, so the fit stops at once rather than after its 640 batches.
    result = run_script(KERAS_FIT_UNDER_SIGTERM, timeout=120)
    assert result.returncode == 143, (result.stdout, result.stderr[-2000:])
    word, at_signal, ended = result.stdout.split()
    assert word == "interrupted" and at_signal != "0" and int(ended) - int(at_signal) <= 1, result.stdout
    assert "Exiting device scope" not in result.stderr and "SystemError" not in result.stderr
