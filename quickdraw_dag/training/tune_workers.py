"""Distributed tuning with KerasTuner's own distributed mode: the chief's server and its workers' supervisors.

KerasTuner runs a search as one chief and any number of workers
(https://keras.io/guides/keras_tuner/distributed_tuning). The chief holds the
oracle (Hyperband here) and serves it over gRPC; a worker is a tuner process,
named by `KERASTUNER_TUNER_ID`, that finds the chief through
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`, asks it for a trial,
trains it, reports the result and asks again until the chief says the search
is over. The tune stage is the chief (`ChiefServer` serves its oracle with
KerasTuner's own servicer, on 127.0.0.1 unless `QUICKDRAW_TUNE_CHIEF` or the
flow's `--tune-chief` says otherwise), and maps `supervise_worker` over one
`WorkerSpec` per worker with its caller's mapper: threads under `dvc repro`,
the flow's task runner under Prefect (threads, processes or Dask workers).
Each job starts one worker process (`python -m tasks.tune --worker-spec`) and
watches it. Nothing here imports TensorFlow until it must.

What KerasTuner 1.4.8 does about a worker that dies (read from its source):
nothing by itself. The oracle keeps the dead worker's trial in
`ongoing_trials` under its tuner id and waits for it, so a Hyperband search
never ends (its last bracket waits on ongoing trials), and a client waits up
to an hour for a chief that has gone. Two of its own mechanisms recover:

- a tuner asking again under the same id is handed the same trial
  (`Oracle.create_trial` returns `ongoing_trials[tuner_id]`), so a killed
  worker is restarted under its id (`RESTARTS` times at most) and runs its
  trial again from the start, seeded by the trial's id as before;
- a trial ended as INVALID goes to the oracle's retry queue
  (`max_retries_per_trial`) and the next worker to ask runs it, so a worker
  that cannot be restarted hands its trial back (`release_trial`) and the
  others finish the search.

A supervisor also watches the chief's port and stops its worker when the
chief has gone, instead of leaving it waiting.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from quickdraw_dag.errors import ConfigError
from quickdraw_dag.runtime.interrupt import on_forced_exit

log = logging.getLogger(__name__)
CHIEF_ENV = "QUICKDRAW_TUNE_CHIEF"  # HOST:PORT the chief listens on (default: 127.0.0.1, any free port)
LOOPBACK = "127.0.0.1"
RESTARTS = 2  # a killed worker is started again this many times under its tuner id
CHIEF_CHECK_S = 2.0  # how often a supervisor checks that the chief still listens
CHIEF_GONE_CHECKS = 5  # consecutive refused checks before a worker is stopped as orphaned
TAIL_LINES = 40  # a failed worker's last lines of output, for the error

# Worker processes this process supervises, and whether the search is being stopped (Ctrl-C, SIGTERM,
# an error in the chief): then they are killed, and none is restarted.
_WORKERS: set[subprocess.Popen] = set()
_WORKERS_LOCK = threading.Lock()
_STOPPING = threading.Event()


# A TensorFlow tuning worker's peak resident memory, measured at 0.9-1.6 GB (issue 25): the upper figure.
WORKER_MEMORY_BYTES = int(1.6e9)


def check_worker_memory(workers: int, available: int | None = None) -> None:
    """ConfigError naming the bound when `workers` local tuning processes would not fit in the memory available.

    Every worker starts at once and holds a TensorFlow runtime; 16 exhausted a 2-core, 16 GB machine.
    `available`: bytes (default: what the kernel reports as available now).
    """
    if workers <= 1:
        return  # the single-process search: no worker processes
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    fit = max(1, available // WORKER_MEMORY_BYTES)
    if workers > fit:
        raise ConfigError(
            f"tune.workers: {workers} workers need about {workers * WORKER_MEMORY_BYTES / 1e9:.1f} GB "
            f"({WORKER_MEMORY_BYTES / 1e9:.1f} GB each, a TensorFlow worker's peak) and {available / 1e9:.1f} GB "
            f"is available here: at most {fit} on this machine (workers on other machines join with "
            "python -m tasks.tune --join)"
        )


def start_supervising() -> None:
    """A new search: its workers may be started (and restarted) again."""
    _STOPPING.clear()


def stop_workers() -> None:
    """Kill every worker process this process supervises, and restart none: the search is over."""
    _STOPPING.set()
    with _WORKERS_LOCK:
        running = list(_WORKERS)
    for process in running:
        if process.poll() is None:
            process.kill()


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker needs: its id, the chief, and the search it joins (plain values: it travels to Dask)."""

    tuner_id: str
    chief: str  # HOST:PORT the worker dials
    tune: dict[str, Any]  # TuneParams, as JSON
    paths: dict[str, Any]  # PathsParams, as JSON (relative paths resolve in the worker's directory)
    project: str  # the chief's tuner project: the worker must arrive at the same one from its params and data
    deadline: float | None  # wall-clock time after which no epoch should start (tune.max_seconds)
    mlflow: dict[str, Any] | None = None  # MlflowParams, when trials are logged
    parent_run: str | None = None  # the pipeline's MLflow run the trials nest in


class WorkerReport(TypedDict):
    """What a worker did, as the tune stage records it in its tuning report."""

    tuner_id: str
    trials: list[str]  # the trials it completed, in order
    stopped_at_chance: int
    cut: bool  # its safety limit stopped a trial
    restarts: int
    failed: str | None  # why it gave up, when it did (its trial went back to the oracle)


def parse_address(text: str, source: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets), port 0-65535; `source` names where it came from, for the error."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{source}: expected HOST:PORT, e.g. 0.0.0.0:8470 or 127.0.0.1:0 (got {text!r})")
    return host, int(port)


def chief_bind() -> tuple[str, int]:
    """Where the chief listens: `QUICKDRAW_TUNE_CHIEF`, else 127.0.0.1 on a free port."""
    text = os.environ.get(CHIEF_ENV, "").strip()
    return parse_address(text, CHIEF_ENV) if text else (LOOPBACK, 0)


def advertised(host: str, port: int) -> str:
    """The address workers dial: the bound one, or this machine's name when bound to every interface."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class ChiefServer:
    """The chief: `oracle` served over gRPC with KerasTuner's own servicer, until `stop`."""

    def __init__(self, oracle: Any, host: str, port: int) -> None:
        from concurrent import futures

        import grpc
        from keras_tuner.src import protos
        from keras_tuner.src.distribute.oracle_chief import OracleServicer

        # One request at a time, as KerasTuner's chief does: the oracle is not written for concurrent calls.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), self.server)
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(bind)
        except RuntimeError as error:
            raise ConfigError(f"{CHIEF_ENV} / --tune-chief: cannot listen on {bind}: {error}") from None
        if not self.port:
            raise ConfigError(f"{CHIEF_ENV} / --tune-chief: cannot listen on {bind} (in use, or not this machine's)")
        self.address = advertised(host, self.port)
        self.server.start()

    def stop(self, grace_s: float = 5.0) -> None:
        self.server.stop(grace_s).wait()


def supervise_worker(spec: WorkerSpec) -> WorkerReport:
    """Run one worker process until the search ends; restart it if it is killed; hand back its trial if it dies.

    Never raises for the worker's sake: a worker that cannot go on is reported (`failed`), and the
    others finish the search.
    """
    restarts = 0
    while True:
        code, result, tail, chief_gone = _run_worker_once(spec)
        if code == 0 and result is not None:
            return {**result, "restarts": restarts, "failed": None}  # type: ignore[typeddict-item]
        why = "the chief stopped answering" if chief_gone else _exit_text(code)
        if _STOPPING.is_set():
            why = "stopped with the search"
        # Exit code 2 is bad params or data (the project's rule): the same again on a restart.
        if _STOPPING.is_set() or chief_gone or code == 2 or restarts >= RESTARTS:
            message = f"worker {spec.tuner_id}: {why}; last output:\n{''.join(tail)}"
            log.warning("tune: %s", message)
            if not chief_gone and not _STOPPING.is_set():
                release_trial(spec, message)
            return {
                "tuner_id": spec.tuner_id,
                "trials": [],
                "stopped_at_chance": 0,
                "cut": False,
                "restarts": restarts,
                "failed": why,
            }
        restarts += 1
        log.warning("tune: worker %s %s; restarting it (%d of %d)", spec.tuner_id, why, restarts, RESTARTS)


def _exit_text(code: int) -> str:
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _run_worker_once(spec: WorkerSpec) -> tuple[int, dict[str, Any] | None, list[str], bool]:
    """Start the worker process and wait for it, watching the chief; returns (exit code, result, tail, chief gone)."""
    host, port = parse_address(spec.chief, "chief")
    with tempfile.TemporaryDirectory(prefix=f"quickdraw-{spec.tuner_id}-") as scratch:
        spec_path, result_path = Path(scratch) / "spec.json", Path(scratch) / "result.json"
        spec_path.write_text(json.dumps({**asdict(spec), "result": str(result_path)}))
        env = {
            **os.environ,
            "KERASTUNER_TUNER_ID": spec.tuner_id,
            "KERASTUNER_ORACLE_IP": host,
            "KERASTUNER_ORACLE_PORT": str(port),
            # JAX on a GPU takes 75% of its memory per process by default: workers sharing one would not fit.
            "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false"),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "tasks.tune", "--worker-spec", str(spec_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # a Ctrl-C in the terminal reaches the chief only, which stops the workers
        )
        with _WORKERS_LOCK:
            _WORKERS.add(process)
        forget = on_forced_exit(process.kill)  # a chief that must exit at once takes its workers with it
        if _STOPPING.is_set():  # the search was stopped while this one started
            process.kill()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        reader = threading.Thread(target=_forward, args=(process, spec.tuner_id, tail), daemon=True)
        reader.start()
        refused = 0
        while process.poll() is None:
            time.sleep(CHIEF_CHECK_S)
            refused = 0 if _listening(host, port) else refused + 1
            if refused >= CHIEF_GONE_CHECKS:
                process.kill()
                process.wait()
                break
        reader.join(timeout=10)
        forget()
        with _WORKERS_LOCK:
            _WORKERS.discard(process)
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        return process.returncode, result, list(tail), refused >= CHIEF_GONE_CHECKS


def _forward(process: subprocess.Popen, tuner_id: str, tail: collections.deque[str]) -> None:
    """The worker's output, each line prefixed with its id (two workers share one console)."""
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(line)
        sys.stdout.write(f"[{tuner_id}] {line}")
        sys.stdout.flush()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CHIEF_CHECK_S):
            return True
    except OSError:
        return False


def release_trial(spec: WorkerSpec, message: str) -> None:
    """Hand a lost worker's trial back to the oracle, which retries it on the next worker that asks.

    KerasTuner keeps no list of a tuner's trial that a client can read, but asking under the lost
    tuner's id returns its unfinished trial (or a new one); ending that as INVALID puts it in the
    oracle's retry queue.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import trial as trial_module

    try:
        with grpc.insecure_channel(spec.chief) as channel:
            stub = protos.get_service_grpc().OracleStub(channel)
            service = protos.get_service()
            response = stub.CreateTrial(service.CreateTrialRequest(tuner_id=spec.tuner_id), timeout=60)
            trial = trial_module.Trial.from_proto(response.trial)
            if trial.status != trial_module.TrialStatus.RUNNING:
                return  # the search is over, or waiting: nothing was held
            trial.status = trial_module.TrialStatus.INVALID
            trial.message = message
            stub.EndTrial(service.EndTrialRequest(trial=trial.to_proto()), timeout=60)
            log.warning("tune: trial %s of lost worker %s goes back to the oracle", trial.trial_id, spec.tuner_id)
    except grpc.RpcError as error:
        log.warning("tune: could not hand back worker %s's trial (%s)", spec.tuner_id, error)
