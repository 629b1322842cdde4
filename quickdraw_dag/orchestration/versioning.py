"""Sharing a pipeline run's data and model: DVC's default remote, pushed after a flow run.

DVC's convention: `dvc.lock`, `params.yaml` and the small reports are committed
to git; data, models and the large outputs live in the DVC cache and, once
pushed, in a remote (a shared folder, S3, ...). A flow run pushes by itself
when the project has a default remote (`dvc remote add -d NAME URL`) and
`versioning.push` is on; `make push` / `make pull` do it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quickdraw_dag.config.redact import redact
from quickdraw_dag.errors import ConfigError, PushError
from quickdraw_dag.orchestration.dvc_state import open_repo


@dataclass(frozen=True)
class Remote:
    """A DVC remote: its name and where it points (credentials in the URL hidden)."""

    name: str
    url: str

    def __str__(self) -> str:
        return f"'{self.name}' ({self.url})"


def remote_of(config: Any, name: str | None = None) -> Remote | None:
    """The remote `name` (default: the default remote) of a DVC config, or None when there is none."""
    name = name or config["core"].get("remote")
    if not name:
        return None
    return Remote(name, redact(str(config["remote"].get(name, {}).get("url", "?"))))


def default_remote(root: Path = Path(".")) -> Remote | None:
    with open_repo(root) as repo:
        return remote_of(repo.config)


def push_outputs(root: Path = Path(".")) -> dict[str, Any]:
    """`dvc push` of every output dvc.lock records, to the default remote; a no-op without one."""
    from dvc.config import ConfigError as DvcConfigError
    from dvc.exceptions import DvcException
    from dvc_objects.fs.errors import RemoteMissingDepsError as MissingDeps

    try:
        with open_repo(root) as repo:
            remote = remote_of(repo.config)
            if remote is None:
                return {"pushed": False, "reason": "no default DVC remote"}
            try:
                files = repo.push()
            except (DvcConfigError, MissingDeps) as error:  # a remote misconfigured: no retry will help
                raise ConfigError(f"dvc push to remote {remote}: {error}") from None
            except Exception as error:  # noqa: BLE001 - DVC's own errors, OSError, a backend's: add where and what next
                raise PushError(
                    f"dvc push to remote {remote} failed: {type(error).__name__}: {error}; the outputs are "
                    "recorded in dvc.lock and the local DVC cache, so `make push` sends them later"
                ) from error
    except DvcException as error:  # the project's DVC config itself: no retry will help
        raise ConfigError(f"dvc push: {error}") from None
    return {"pushed": True, "remote": remote.name, "url": remote.url, "files": files}


def describe_push(result: dict[str, Any]) -> str:
    """One line on what `push_outputs` did, for the flow's log."""
    if result["pushed"]:
        return f"dvc push: {result['files']} file(s) sent to remote '{result['remote']}' ({result['url']})"
    return f"dvc push: nothing pushed, {result['reason']} (`dvc remote add -d NAME URL` sets one)"
