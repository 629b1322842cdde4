"""Where a result came from: git commit, DVC hashes, orchestrator ids.

Every MLflow run carries these as tags, so from any run a user can get back
its exact code (`git checkout <git_commit>`), data and model
(`dvc checkout`, which restores the outputs recorded in that commit's
`dvc.lock`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml


def git_state(root: Path = Path(".")) -> dict[str, str]:
    """The commit checked out and whether the work tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (RuntimeError, OSError):
        return {"git_commit": "none", "git_dirty": "unknown"}
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (RuntimeError, OSError):
        return {"git_commit": commit, "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def dvc_output_hashes(root: Path = Path(".")) -> dict[str, str]:
    """md5 of every stage output recorded in dvc.lock, keyed by path."""
    lock = Path(root) / "dvc.lock"
    if not lock.exists():
        return {}
    data: dict[str, Any] = yaml.safe_load(lock.read_text()) or {}
    hashes = {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "md5" in out:
                hashes[str(out["path"])] = str(out["md5"])
    return hashes


def lineage_tags(processed_dir: str, model_path: str, root: Path = Path(".")) -> dict[str, str]:
    hashes = dvc_output_hashes(root)
    return {
        **git_state(root),
        "dvc_processed_md5": hashes.get(processed_dir.rstrip("/"), "not in dvc.lock"),
        "dvc_model_md5": hashes.get(model_path, "not in dvc.lock"),
    }


def orchestrator_ids() -> tuple[str | None, str | None]:
    """The Prefect flow-run id and deployment name when Prefect runs us, else None."""
    try:
        from prefect.runtime import deployment, flow_run

        return (str(flow_run.id) if flow_run.id else None), (deployment.name or None)
    except Exception:  # noqa: BLE001 - outside Prefect there is simply no id
        return None, None
