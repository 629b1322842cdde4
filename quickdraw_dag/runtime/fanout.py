"""Per-category fan-out, with the way of mapping chosen by the caller.

A stage that works category by category (fetch, split, preprocess) takes a
`Mapper`: a function that applies a job function to a list of argument
tuples and returns the results in job order. DVC runs the stage with a
serial or process-pool mapper; the Prefect flow passes a mapper that turns
each job into a mapped task run on the flow's task runner (threads, or a Dask
cluster). The stage function is the same either way, and so are its outputs:
every job writes only its own category's files, and the stage's final step
(manifest, split summary, scaling) runs once, in job order.

How many processes the process mapper uses is a property of the machine, not
of the result, so it is not a param DVC tracks: `QUICKDRAW_WORKERS`
(default: the CPU count, at most 8).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from quickdraw_dag.runtime.processes import exit_with_parent
from quickdraw_dag.runtime.progress import track

R = TypeVar("R")
Job = tuple[Any, ...]
WORKERS_ENV = "QUICKDRAW_WORKERS"


def default_workers() -> int:
    """`QUICKDRAW_WORKERS`, else the CPU count capped at 8 (outputs never depend on it)."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text:
        from quickdraw_dag.errors import ConfigError

        if not text.isdigit() or not 1 <= int(text) <= 256:
            raise ConfigError(f"{WORKERS_ENV}: must be a whole number from 1 to 256 (got {text[:40]!r})")
        return int(text)
    return max(1, min(8, os.cpu_count() or 1))


class Mapper(Protocol):
    def __call__(self, function: Callable[..., R], jobs: Sequence[Job], desc: str) -> list[R]: ...


def serial_map(function: Callable[..., R], jobs: Sequence[Job], desc: str) -> list[R]:
    """One job after another in this process, with a progress bar."""
    return [function(*job) for job in track(jobs, desc=desc, unit="class")]


def process_map(workers: int) -> Mapper:
    """A mapper over `workers` spawned processes (serial when one would do)."""

    def mapper(function: Callable[..., R], jobs: Sequence[Job], desc: str) -> list[R]:
        count = min(workers, len(jobs))
        if count <= 1:
            return serial_map(function, jobs, desc)
        # spawn, not fork: the caller may hold TensorFlow or Prefect threads. Workers end with this process.
        with ProcessPoolExecutor(
            count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(function, *job) for job in jobs]
            return [future.result() for future in track(futures, desc=desc, unit="class")]

    return mapper


def thread_map(function: Callable[..., R], jobs: Sequence[Job], desc: str) -> list[R]:
    """Every job at once, on a thread each: for jobs that wait on a process of their own (tuning workers)."""
    if not jobs:
        return []
    pool = ThreadPoolExecutor(len(jobs), thread_name_prefix=desc.replace(" ", "-"))
    try:
        futures = [pool.submit(function, *job) for job in jobs]
        return [future.result() for future in futures]
    finally:
        # Not `with`: on Ctrl-C it would wait for every job before the caller could stop them.
        pool.shutdown(wait=False, cancel_futures=True)


def dask_map(client: distributed.Client) -> Mapper:  # type: ignore[name-defined]  # noqa: F821
    """A mapper over an existing Dask client (the flow uses prefect-dask; this is for direct use)."""

    def mapper(function: Callable[..., R], jobs: Sequence[Job], desc: str) -> list[R]:
        futures = [client.submit(function, *job, pure=False) for job in jobs]
        return client.gather(futures)

    return mapper
