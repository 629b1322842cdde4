"""The paint flow: an MLP paints an image from pixel coordinates (`tasks.paint`), a pipeline of its own.

    python -m flows.paint [--set paint.key=value ...] [--force]

The paint pipeline lives in `paint/` (its own `dvc.yaml`, `params.yaml` and
DVC project), apart from the doodle pipeline: `make run` and `dvc repro` at
the project root never run or wait on it. This flow runs there, as
`dvc --cd paint repro` does, and follows the pipeline's rule: the task calls
the same `tasks.paint.run`, paints only when `dvc status` says the `paint`
stage's params or code changed (or with `--force`), then records it in
`paint/dvc.lock`. `--set` overrides are validated and written into
`paint/params.yaml`, as for the doodle pipeline (and, as there, DVC's
repository lock is held and SIGINT/SIGTERM stop it cleanly).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from quickdraw_dag.artifacts import PAINT_PIPELINE
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.paint import PaintPipelineParams
from quickdraw_dag.orchestration.dvc_state import (
    commit_stage,
    persist_overrides,
    repository_lock,
    stage_is_current,
)
from quickdraw_dag.orchestration.prefect_runs import take_over_from_abandoned_runs
from quickdraw_dag.orchestration.prefect_server import temporary_server
from quickdraw_dag.runtime.cli import (
    attach_project_loggers,
    build_parser,
    configure_logging,
    exit_code_of,
    require_dvc_params_file,
)
from quickdraw_dag.runtime.lock import workspace_lock
from quickdraw_dag.tracking.store import close_stopped_runs

# The paint pipeline's folder in this checkout (flows/ sits at the project root).
PAINT_ROOT = Path(__file__).resolve().parents[1] / PAINT_PIPELINE


@task(name="paint", cache_policy=NO_CACHE)
def paint_task(params: PaintPipelineParams, force: bool = False) -> dict[str, Any]:
    if not force and stage_is_current("paint"):
        print("paint: unchanged since paint/dvc.lock, skipped (use --force to paint again)")
        return {"ran": False}
    import tasks.paint

    metrics = tasks.paint.run(params)
    commit_stage("paint")
    return {"ran": True, "metrics": metrics}


def written_to(params: PaintPipelineParams) -> str:
    """Where the painting, the comparison, the loss curve and the metrics are (absolute paths)."""
    from quickdraw_dag.artifacts import PaintCatalog

    catalog = PaintCatalog.from_paths(params.paths)
    return f"{catalog.paint_dir.resolve()}/ (painting.png, comparison.png, loss.png), {catalog.paint_metrics.resolve()}"


@flow(name="paint", log_prints=True)
def paint_flow(params: PaintPipelineParams, force: bool = False) -> dict[str, Any]:
    """Paint `paint.image` with the MLP; returns whether it ran and its metrics. Runs in the paint folder."""
    take_over_from_abandoned_runs()
    outcome = paint_task(params, force)
    if outcome["ran"]:
        metrics = outcome["metrics"]
        accuracy = f", pixel accuracy {metrics['pixel_accuracy']:.4f}" if "pixel_accuracy" in metrics else ""
        print(f"painted: PSNR {metrics['psnr_db']:.2f} dB{accuracy} in {metrics['train_seconds']:.1f} s")
        print(f"paint wrote: {written_to(params)}")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m flows.paint", __doc__.splitlines()[0], str(PAINT_PIPELINE / "params.yaml"))
    parser.add_argument("--force", action="store_true", help="paint even if nothing changed")
    args = parser.parse_args(argv)
    configure_logging()
    # Given relative to where the user is; the default, relative to the project.
    params_path = (
        Path(args.params).resolve() if args.params != parser.get_default("params") else PAINT_ROOT / "params.yaml"
    )
    loaded: list[PaintPipelineParams] = []

    def work() -> None:
        require_dvc_params_file(
            args.params if args.params != parser.get_default("params") else params_path, PAINT_ROOT / "params.yaml"
        )
        os.chdir(PAINT_ROOT)  # where DVC runs the stage: relative params paths and paint/dvc.lock mean the same
        params = load_params(params_path, args.overrides, PaintPipelineParams)
        loaded.append(params)
        with repository_lock(wait_s=args.lock_wait), workspace_lock(wait_s=args.lock_wait):
            persist_overrides(params_path, args.overrides, PaintPipelineParams)
            with temporary_server():
                attach_project_loggers()  # the stage's progress lines ("paint: epoch 40/400 loss …")
                paint_flow(params, force=args.force)

    return exit_code_of(work, lambda why, since: close_stopped_runs(loaded[0], why, since) if loaded else [])


if __name__ == "__main__":
    sys.exit(main())
