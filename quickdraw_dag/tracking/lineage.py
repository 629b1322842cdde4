"""Where a result came from: git commit, DVC hashes and lock, DVC experiment, orchestrator ids.

Every pipeline run's MLflow run carries these as tags, and its `params.yaml`
and `dvc.lock` as artifacts, so from any run a user gets back its exact code
(its `git_commit`), params, data and model (`make reproduce RUN=<run id>`,
`quickdraw_dag.orchestration.reproduce`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quickdraw_dag.config.params_yaml import MAX_LOCK_BYTES, load_yaml_bytes
from quickdraw_dag.config.schema import DEFAULT_PARAMS_PATH

DVC_YAML = "dvc.yaml"  # DVC's pipeline file, and its lock beside it
DVC_LOCK = "dvc.lock"
# What `dvc exp run` tells a stage command about the experiment it belongs to.
EXPERIMENT_ENV = {"dvc_exp_name": "DVC_EXP_NAME", "dvc_exp_baseline_rev": "DVC_EXP_BASELINE_REV"}


def git_state(root: Path = Path("."), not_code: Sequence[str] = ()) -> dict[str, str]:
    """The commit checked out and whether the work tree differs from it, outside the `not_code` paths.

    A pipeline run passes its params file, dvc.lock and the reports git keeps: its MLflow run logs the
    first two and the third are its results, so `git_dirty` says whether the *code* differed.
    """

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (RuntimeError, OSError):
        return {"git_commit": "none", "git_dirty": "unknown"}
    # the whole work tree (`:/`), less the run's own files (relative to `root`)
    paths = [":/", *(f":(exclude){path}" for path in not_code)] if not_code else []
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", *paths))
    except (RuntimeError, OSError):
        return {"git_commit": commit, "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def not_code(reports: Sequence[Path]) -> list[str]:
    """The paths a pipeline run writes or logs that git sees: params.yaml, dvc.lock, the reports git keeps."""
    return [DEFAULT_PARAMS_PATH.as_posix(), DVC_LOCK, *(Path(path).as_posix() for path in reports)]


def dvc_output_hashes(root: Path = Path(".")) -> dict[str, str]:
    """md5 of every stage output recorded in dvc.lock, keyed by path."""
    lock = Path(root) / DVC_LOCK
    if not lock.exists():
        return {}
    data: dict[str, Any] = load_yaml_bytes(lock.read_bytes(), str(lock), max_bytes=MAX_LOCK_BYTES) or {}
    hashes = {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "md5" in out:
                hashes[str(out["path"])] = str(out["md5"])
    return hashes


def lineage_tags(
    processed_dir: str, model_path: str, root: Path = Path("."), reports: Sequence[Path] = ()
) -> dict[str, str]:
    hashes = dvc_output_hashes(root)
    return {
        **git_state(root, not_code(reports)),
        "dvc_processed_md5": hashes.get(processed_dir.rstrip("/"), "not in dvc.lock"),
        "dvc_model_md5": hashes.get(model_path, "not in dvc.lock"),
        **experiment_tags(),
    }


def experiment_tags() -> dict[str, str]:
    """The DVC experiment this run belongs to (`dvc exp run`, queued or not): its name and baseline commit."""
    return {tag: os.environ[variable] for tag, variable in EXPERIMENT_ENV.items() if os.environ.get(variable)}


def pending_lock(stage: str, root: Path = Path(".")) -> bytes:
    """The dvc.lock this pipeline run leaves once `stage`, its last, is recorded.

    DVC writes dvc.lock only after a stage's command returns (`dvc repro`, `dvc exp run`) or when the
    flow commits it, after the stage's MLflow record is complete. So the stage computes the lock here
    with DVC's own code: the stage's params, deps and outputs hashed as DVC saves them, dumped into a
    copy of the current lock as DVC dumps it; the result is byte for byte the file DVC then writes.
    """
    from dvc.dvcfile import Lockfile
    from dvc.repo import Repo

    with tempfile.TemporaryDirectory(prefix="quickdraw-lock-") as scratch, Repo(str(root)) as repo:
        (recorded,) = repo.stage.collect(stage_target(repo.root_dir, stage))
        recorded.save(run_cache=False)  # the run cache is DVC's to fill when it records the stage
        draft = Path(scratch) / DVC_LOCK
        current = Path(repo.root_dir) / DVC_LOCK
        if current.exists():
            shutil.copyfile(current, draft)
        with quiet_logger("dvc.dvcfile"):  # "Updating lock file '<scratch>/dvc.lock'": a draft, not news
            Lockfile(repo, str(draft)).dump(recorded)
        return draft.read_bytes()


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Drop the INFO lines of logger `name` for the block (warnings still show)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def stage_target(root: str | Path, stage: str) -> str:
    """DVC's address of a stage of the project at `root` (DVC resolves a bare name from the working directory)."""
    return f"{Path(root).resolve() / DVC_YAML}:{stage}"


# Set by `make demo` (flows/demo.py) for the pipeline it runs: the demo's own workspace, whose DVC cache holds
# its data and models. A run made there is tagged as a demo, so it is not taken for a run of the project.
DEMO_WORKSPACE_ENV = "QUICKDRAW_DEMO_WORKSPACE"


def demo_tags() -> dict[str, str]:
    """`demo` (true/false) and, for a demo run, `demo_workspace`: where `make reproduce` finds its DVC cache."""
    workspace = os.environ.get(DEMO_WORKSPACE_ENV, "").strip()
    return {"demo": "true", "demo_workspace": workspace} if workspace else {"demo": "false"}


# What Prefect's runtime reads when no flow-run context is in the process: the id a Prefect worker gives the
# process it starts, and its test overrides (PREFECT__RUNTIME__FLOW_RUN__ID, ...).
PREFECT_RUNTIME_ENV_PREFIXES = ("PREFECT__FLOW_RUN_ID", "PREFECT__RUNTIME__")


def orchestrator_ids() -> tuple[str | None, str | None]:
    """The Prefect flow-run id and deployment name when Prefect runs us, else None."""
    if "prefect" not in sys.modules and not any(key.startswith(PREFECT_RUNTIME_ENV_PREFIXES) for key in os.environ):
        # No flow-run context can exist in a process that never imported Prefect, and none was handed down:
        # a stage run by `dvc repro` or alone skips importing it (1.5 CPU s here, a fifth of evaluate's start).
        return None, None
    try:
        from prefect.runtime import deployment, flow_run

        run_id = str(flow_run.id) if flow_run.id else None
    except Exception:  # noqa: BLE001 - outside Prefect there is simply no id
        return None, None
    try:  # asked of the Prefect API when only the run's id was handed down: it may not answer
        return run_id, deployment.name or None
    except Exception:  # noqa: BLE001 - the run's id is still known; its deployment's name is not
        return run_id, None
