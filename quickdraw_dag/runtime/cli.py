"""The shared shell of every entry point: arguments, logging, exit codes.

`python -m tasks.<stage>` (what DVC runs) and `python -m flows.<flow>` all
parse `--params` and `--set` here, so they validate the same way and map the
project's errors to the same exit codes (2 for bad config, bad data or a
full disk; 130 and 143 when stopped by SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.schema import DEFAULT_PARAMS_PATH, Params
from quickdraw_dag.errors import ConfigError, QuickDrawDagError
from quickdraw_dag.runtime.diskspace import free_bytes, human, is_disk_full
from quickdraw_dag.runtime.interrupt import Interrupted, raise_if_stopping, stop_on_signals
from quickdraw_dag.runtime.lock import workspace_lock

log = logging.getLogger("quickdraw_dag")


def build_parser(
    prog: str, description: str, default_params: str = str(DEFAULT_PARAMS_PATH)
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--params",
        default=default_params,
        help=f"params file (default: {default_params})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, e.g. --set split.max_per_class=500 (repeatable; VALUE is YAML)",
    )
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if another run holds this workspace, wait this long for it (default: refuse at once)",
    )
    return parser


# The project's own loggers: the stages' INFO lines ("evaluate: accuracy …") belong in a flow's log.
PROJECT_LOGGERS = ("tasks", "quickdraw_dag", "flows")


def attach_project_loggers() -> None:
    """Under a Prefect flow: show the project's INFO lines in its console and UI (PREFECT_LOGGING_EXTRA_LOGGERS's job).

    Prefect configures logging on import and leaves other loggers at the root's WARNING level; the
    Makefile's PREFECT_LOGGING_EXTRA_LOGGERS is not set for `python -m flows.pipeline`, so the flows do it.
    The root's console handler (Prefect's) prints the lines; the API handler sends them to the run.
    DVC prints its own lines ("Updating lock file") with its own handler: not again through the root's.
    """
    logging.getLogger("dvc").propagate = False
    prefect_handlers = logging.getLogger("prefect.extra").handlers
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        for handler in prefect_handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def require_dvc_params_file(path: str | Path, expected: Path = DEFAULT_PARAMS_PATH) -> None:
    """A flow records its runs in dvc.lock, and DVC reads its pipeline's params.yaml only: no other params file."""
    if Path(path).resolve() != expected.resolve():
        raise ConfigError(
            f"--params {path}: a flow runs and records stages through DVC, which reads {expected} only; "
            f"copy {path} over {expected}, or pass its values with --set (they are saved into "
            f"{expected} as `dvc exp run -S` does)"
        )


# Called when a stop signal ends a run: closes what the run left open (its MLflow runs) and returns their ids.
# The caller passes it in (a tracking function), so this shell never imports MLflow code itself.
OnStop = Callable[[str, float], list[str]]


def report_stop(stop: Interrupted, on_stop: OnStop | None, since: float) -> int:
    """Close what the run left open (`on_stop`), say so, and return the exit code (130, 143)."""
    closed: list[str] = []
    if on_stop is not None:
        try:
            closed = on_stop(str(stop), since)
        except Exception as error:  # noqa: BLE001 - stopping anyway; say why the runs stay as they are
            print(f"warning: could not mark the MLflow run(s) KILLED: {type(error).__name__}", file=sys.stderr)
    runs = f"; MLflow run(s) {', '.join(closed)} marked KILLED" if closed else ""
    print(f"error: {stop}{runs}; rerun the same command to resume", file=sys.stderr)
    return stop.exit_code


def report_disk_full(error: OSError) -> int:
    where = error.filename or "an output"
    free = free_bytes(Path(error.filename).parent) if error.filename else None
    print(
        f"error: {where}: no space left on device{f' ({human(free)} free)' if free is not None else ''}; "
        "free some space and rerun",
        file=sys.stderr,
    )
    return 2


def exit_code_of(work: Callable[[], object], on_stop: OnStop | None = None) -> int:
    """Run `work` under the stop signals; the one place that maps the project's errors to exit codes.

    A `QuickDrawDagError` prints one line and exits with its code (2 for config, data and a full disk),
    a stop signal 130 or 143, a full disk 2; anything else is a bug and keeps its traceback.
    """
    started = time.time()
    with stop_on_signals():
        try:
            work()
            raise_if_stopping()  # a stop deferred out of TensorFlow's code, still owed when the work ended
        except QuickDrawDagError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except Interrupted as stop:
            return report_stop(stop, on_stop, started)
        except OSError as error:
            if not is_disk_full(error):
                raise
            return report_disk_full(error)
    return 0


def run_entry_point(
    prog: str,
    description: str,
    body: Callable[[Any], object],
    argv: Sequence[str] | None = None,
    model: type[BaseModel] = Params,
    on_stop: Callable[[Any, str, float], list[str]] | None = None,
) -> int:
    """Parse args, load params once (a `model` params file), run `body`; return the process exit code.

    `on_stop(params, why, since)` closes what a stopped stage left open (a tracked stage's MLflow runs).
    """
    args = build_parser(prog, description).parse_args(argv)
    configure_logging()
    loaded: list[Any] = []

    def work() -> None:
        loaded.append(load_params(args.params, args.overrides, model))
        with workspace_lock(wait_s=args.lock_wait):
            body(loaded[0])

    def stopped(why: str, since: float) -> list[str]:
        return on_stop(loaded[0], why, since) if on_stop is not None and loaded else []

    return exit_code_of(work, stopped)
