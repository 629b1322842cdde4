"""Per-category fan-out, with the way of mapping chosen by the caller.

A stage that works category by category (fetch, split, preprocess) takes a
`Mapper`: a function that applies a job function to a list of argument
tuples and returns the results in job order. DVC runs the stage with a
serial or process-pool mapper; the Prefect flow passes a mapper that turns
each job into a mapped task run on the flow's task runner (threads, or a Dask
cluster). The stage function is the same either way, and so are its outputs:
every job writes only its own category's files, and the stage's final step
(manifest, `split.json`, concatenation) runs once, in job order.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Protocol, Sequence, TypeVar

from quickdraw_dag.progress import track

R = TypeVar("R")
Job = tuple[Any, ...]


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
        # spawn, not fork: the caller may hold TensorFlow or Prefect threads.
        with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(function, *job) for job in jobs]
            return [future.result() for future in track(futures, desc=desc, unit="class")]

    return mapper


def dask_map(client: "distributed.Client") -> Mapper:  # type: ignore[name-defined]  # noqa: F821
    """A mapper over an existing Dask client (the flow uses prefect-dask; this is for direct use)."""

    def mapper(function: Callable[..., R], jobs: Sequence[Job], desc: str) -> list[R]:
        futures = [client.submit(function, *job, pure=False) for job in jobs]
        return client.gather(futures)

    return mapper
