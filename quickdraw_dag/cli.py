"""The shared shell of every entry point: arguments, logging, exit codes.

`python -m tasks.<stage>` (what DVC runs) and `python -m flows.<flow>` all
parse `--params` and `--set` here, so they validate the same way and map the
project's errors to the same exit codes (2 for bad config or bad data).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from quickdraw_dag.config import DEFAULT_PARAMS_PATH, Params, load_params
from quickdraw_dag.errors import QuickDrawDagError
from quickdraw_dag.lock import workspace_lock

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


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def run_entry_point(
    prog: str,
    description: str,
    body: Callable[[Any], object],
    argv: Sequence[str] | None = None,
    model: type[BaseModel] = Params,
) -> int:
    """Parse args, load params once (a `model` params file), run `body`; return the process exit code."""
    args = build_parser(prog, description).parse_args(argv)
    configure_logging()
    try:
        params = load_params(args.params, args.overrides, model)
        with workspace_lock(wait_s=args.lock_wait):
            body(params)
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
