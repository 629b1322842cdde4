"""The paint flow: an MLP paints an image from pixel coordinates (`tasks.paint`).

    python -m flows.paint [--set paint.key=value ...] [--force]

The task calls the same `tasks.paint.run` as `dvc repro paint` and follows the
pipeline's rule: it paints only when `dvc status` says the `paint` stage's
params or code changed (or with `--force`), then records it in dvc.lock.
`--set` overrides are validated and written into params.yaml, as for the pipeline
(and, as there, DVC's repository lock is held and SIGINT/SIGTERM stop it cleanly).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from quickdraw_dag.cli import build_parser, configure_logging, report_stop, require_dvc_params_file
from quickdraw_dag.config import Params, load_params
from quickdraw_dag.dvc_state import commit_stage, persist_overrides, repository_lock, stage_is_current
from quickdraw_dag.errors import QuickDrawDagError
from quickdraw_dag.interrupt import Interrupted, stop_on_signals
from quickdraw_dag.lock import workspace_lock
from quickdraw_dag.prefect_server import temporary_server


@task(name="paint", cache_policy=NO_CACHE)
def paint_task(params: Params, force: bool = False) -> dict[str, Any]:
    if not force and stage_is_current("paint"):
        print("paint: unchanged since dvc.lock, skipped (use --force to paint again)")
        return {"ran": False}
    import tasks.paint

    metrics = tasks.paint.run(params)
    commit_stage("paint")
    return {"ran": True, "metrics": metrics}


@flow(name="paint", log_prints=True)
def paint_flow(params: Params, force: bool = False) -> dict[str, Any]:
    """Paint `paint.image` with the MLP; returns whether it ran and its metrics."""
    outcome = paint_task(params, force)
    if outcome["ran"]:
        metrics = outcome["metrics"]
        accuracy = f", pixel accuracy {metrics['pixel_accuracy']:.4f}" if "pixel_accuracy" in metrics else ""
        print(f"painted: PSNR {metrics['psnr_db']:.2f} dB{accuracy} in {metrics['train_seconds']:.1f} s")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m flows.paint", __doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="paint even if nothing changed")
    args = parser.parse_args(argv)
    configure_logging()
    started, params = time.time(), None
    with stop_on_signals():
        try:
            require_dvc_params_file(args.params)
            params = load_params(args.params, args.overrides)
            with repository_lock(wait_s=args.lock_wait), workspace_lock(wait_s=args.lock_wait):
                persist_overrides(Path(args.params), args.overrides)
                with temporary_server():
                    paint_flow(params, force=args.force)
        except QuickDrawDagError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except Interrupted as stop:
            return report_stop(
                stop,
                params.mlflow.model_copy(update={"experiment": params.paint.experiment}) if params else None,
                started,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
