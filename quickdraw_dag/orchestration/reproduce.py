"""Reproduce a past pipeline run from its MLflow record: its code, params, data and model, evaluated again.

    python -m quickdraw_dag.orchestration.reproduce RUN_ID [--workdir DIR] [--keep] [--params params.yaml]
    make reproduce RUN=<run id>

Every pipeline run logs the `params.yaml` and `dvc.lock` it ran with (its
`dvc/` artifacts) next to its `git_commit` tag. From those this:

1. checks out the run's code, `git_commit`, in a git worktree of its own
   (a temporary folder; the workspace is never touched), and writes the run's
   params.yaml and dvc.lock over the commit's;
2. restores what the evaluate stage reads, by the hashes in that dvc.lock:
   the processed data and the model from the DVC cache, or from the default
   DVC remote when the cache lacks them; the reports git keeps (the training
   history), which no cache holds, from the run's own artifacts;
3. checks with DVC that every input of evaluate (code, params, data, model)
   is exactly what the lock records;
4. runs the evaluate stage there, with the commit's own code and MLflow off,
   and compares its test metrics with the ones the run logged: evaluation is
   deterministic, so they must be equal, exactly.

Exit codes: 0 reproduced; 1 an input is missing (named, with its hash and
where it was looked for) or differs, or a metric came out different; 2 a run
id this store does not hold, or a run that recorded no dvc.lock.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from quickdraw_dag.artifacts import Catalog, read_metrics
from quickdraw_dag.config.loading import load_params
from quickdraw_dag.config.params_yaml import MAX_LOCK_BYTES, load_yaml_bytes
from quickdraw_dag.config.schema import DEFAULT_PARAMS_PATH, MlflowParams, PathsParams
from quickdraw_dag.errors import ConfigError, NotReproduced, QuickDrawDagError
from quickdraw_dag.orchestration.dvc_state import open_repo
from quickdraw_dag.orchestration.versioning import remote_of
from quickdraw_dag.runtime.cli import configure_logging
from quickdraw_dag.tracking.lineage import DVC_LOCK, stage_target

log = logging.getLogger(__name__)
LAST_STAGE = "evaluate"
# A stage command run here must not join a pipeline run or an experiment of the caller's.
FOREIGN_ENV = ("QUICKDRAW_MLFLOW_RUN", "DVC_STAGE", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")


@dataclass(frozen=True)
class PastRun:
    """What an MLflow run recorded about its pipeline run."""

    run_id: str
    name: str
    commit: str
    dirty: str
    metrics: dict[str, float]  # the test metrics, as logged (`test_accuracy`, ...)
    params_file: bytes
    lock_file: bytes
    demo_workspace: str | None = None  # a `make demo` run: the workspace whose DVC cache holds its data and model


@dataclass(frozen=True)
class Restored:
    """One input of the evaluate stage, put back by its hash: from where."""

    path: str
    md5: str
    source: str


def find_run(run_id: str, mlflow_params: MlflowParams) -> PastRun:
    """The run's tags, test metrics and recorded params.yaml and dvc.lock; ConfigError when it has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from quickdraw_dag.tracking.record import RUN_RECORD
    from quickdraw_dag.tracking.store import check_store, tracking_uri

    uri = tracking_uri(mlflow_params)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise ConfigError(f"no MLflow store at {uri.removeprefix('sqlite:///')}: nothing was logged here yet")
    check_store(mlflow_params)  # a dead server: one line in seconds, not "no such run" after minutes of retries
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"no MLflow run {run_id!r} in the store {uri}") from None
    with tempfile.TemporaryDirectory(prefix="quickdraw-record-") as folder:
        try:
            record = Path(client.download_artifacts(run_id, RUN_RECORD, folder))
        except (MlflowException, OSError):
            record = Path(folder) / "absent"
        if not (record / DVC_LOCK).is_file() or not (record / DEFAULT_PARAMS_PATH.name).is_file():
            raise ConfigError(
                f"run {run_id} recorded no {RUN_RECORD}/{DVC_LOCK} and {RUN_RECORD}/{DEFAULT_PARAMS_PATH.name}: "
                "it is not a pipeline run, or it was logged before runs recorded them"
            )
        params_file = (record / DEFAULT_PARAMS_PATH.name).read_bytes()
        lock_file = (record / DVC_LOCK).read_bytes()
    tags = run.data.tags
    return PastRun(
        run_id=run_id,
        name=tags.get("mlflow.runName", run_id),
        commit=tags.get("git_commit", "none"),
        dirty=tags.get("git_dirty", "unknown"),
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
        params_file=params_file,
        lock_file=lock_file,
        demo_workspace=tags.get("demo_workspace") if tags.get("demo") == "true" else None,
    )


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["git", *args], done.stdout, done.stderr)
    return done.stdout.strip()


# The temporary folder each reproduction's worktree lives in (unless --workdir): how its leftovers are known.
WORKTREE_PREFIX = "quickdraw-reproduce-"


@contextmanager
def code_worktree(project: Path, commit: str, workdir: Path | None, keep: bool) -> Iterator[Path]:
    """The project's folder in a git worktree of `commit` (removed afterwards unless `keep`)."""
    if commit in ("", "none"):
        raise NotReproduced("the run was not made in a git repository: its code cannot be checked out")
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=project))
    except (subprocess.CalledProcessError, OSError):
        raise ConfigError(f"{project.resolve()} is not in a git repository: run this in the project's clone") from None
    try:
        git("cat-file", "-e", f"{commit}^{{commit}}", cwd=top)
    except subprocess.CalledProcessError:
        raise NotReproduced(
            f"the run's code, commit {commit}, is not in this repository: `git fetch` it from where it was pushed"
        ) from None
    parent = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    parent.mkdir(parents=True, exist_ok=True)
    tree = parent / f"{commit[:12]}"
    if tree.exists():
        raise ConfigError(f"{tree} exists already: remove it or pass another --workdir")
    # Never `git worktree prune`: it also forgets a user's worktree whose folder is away for a moment (an
    # unmounted drive), and what was staged there is lost. Only our own leftovers are removed, by path.
    forget_own_stale_worktrees(top, also=tree)
    git("worktree", "add", "--detach", "--quiet", str(tree), commit, cwd=top)
    try:
        yield tree / Path(project).resolve().relative_to(top.resolve())
    finally:
        if keep:
            print(f"the run's workspace is kept in {tree} (`git worktree remove --force {tree}` removes it)")
        else:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=top, capture_output=True)
            if not workdir:
                shutil.rmtree(parent, ignore_errors=True)


def storage_of(run: PastRun, project: Path) -> Path:
    """The DVC project whose cache holds the run's outputs: the project, or a demo run's own workspace."""
    if run.demo_workspace is None:
        return project
    workspace = Path(run.demo_workspace)
    if not (workspace / ".dvc").is_dir():
        raise NotReproduced(
            f"run {run.run_id} is a `make demo` run: its data and model were in the DVC cache of its workspace "
            f"{workspace}, which is gone. `make demo` makes a new one; this run cannot be restored."
        )
    print(f"a `make demo` run: its data and model come from the DVC cache of {workspace}")
    return workspace


def forget_own_stale_worktrees(top: Path, also: Path) -> list[str]:
    """Remove the registrations of worktrees this command made earlier and a kill left behind; their paths.

    Only entries whose folder is gone and that are ours: under a `quickdraw-reproduce-` temporary folder,
    or the very path about to be added (`--workdir` reused after its folder was deleted).
    """
    listing = git("worktree", "list", "--porcelain", cwd=top)
    removed = []
    for entry in listing.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in entry.splitlines() if line)
        path = fields.get("worktree")
        if not path or "prunable" not in fields or Path(path).exists():
            continue
        folder = Path(path).parent
        temporary = Path(tempfile.gettempdir()).resolve()
        ours = folder.name.startswith(WORKTREE_PREFIX) and folder.parent.resolve() == temporary
        if ours or Path(path).resolve() == Path(also).resolve():
            git("worktree", "remove", "--force", path, cwd=top)
            removed.append(path)
    return removed


def share_dvc_storage(project: Path, restored: Path) -> str:
    """Point the worktree's DVC at the project's cache and remotes (its `.dvc/config.local`); names them."""
    with open_repo(project) as repo:
        cache = repo.cache.local_cache_dir  # `dvc cache dir`
        config = repo.config.read()  # every level merged, paths absolute
    remotes = config.get("remote", {})
    default = config.get("core", {}).get("remote")
    with open_repo(restored) as repo, repo.config.edit("local") as local:
        local.setdefault("cache", {})["dir"] = cache
        for name, section in remotes.items():
            local.setdefault("remote", {})[name] = dict(section)
        if default:
            local.setdefault("core", {})["remote"] = default
    remote = remote_of({"core": {"remote": default}, "remote": remotes})
    cache_text = f"the DVC cache ({cache})"
    return f"{cache_text} and from remote {remote}" if remote else f"{cache_text}; no DVC remote is configured"


def evaluate_inputs(lock: dict[str, Any]) -> list[dict[str, Any]]:
    """The deps of the last stage that other stages write (data, model, reports), as the lock records them."""
    stages = lock.get("stages") or {}
    if LAST_STAGE not in stages:
        raise NotReproduced(f"the run's {DVC_LOCK} records no {LAST_STAGE} stage")
    written = {out["path"] for stage in stages.values() for out in stage.get("outs") or []}
    return [dep for dep in stages[LAST_STAGE].get("deps") or [] if dep["path"] in written]


def restore_inputs(run: PastRun, restored: Path, searched: str) -> list[Restored]:
    """Put the evaluate stage's data and model back by hash; NotReproduced naming whatever is missing."""
    from dvc.exceptions import CheckoutError, DvcException

    inputs = evaluate_inputs(load_yaml_bytes(run.lock_file, f"the run's {DVC_LOCK}", max_bytes=MAX_LOCK_BYTES))
    done: list[Restored] = []
    missing: list[str] = []
    with open_repo(restored) as repo:
        cached = {out.def_path: out.use_cache for stage in repo.index.stages for out in stage.outs}
        remote = remote_of(repo.config)
        for dep in inputs:
            path, md5 = dep["path"], str(dep.get("md5", "?"))
            target = str(restored / path)  # DVC resolves relative targets from the working directory
            if not cached.get(path, True):
                report_source = restore_report(run, restored, path, md5)
                if report_source is None:
                    missing.append(f"{path} (md5 {md5}; not among the run's MLflow artifacts)")
                else:
                    done.append(Restored(path, md5, report_source))
                continue
            source = "the DVC cache"
            try:
                repo.checkout(targets=[target])
            except CheckoutError:
                if remote is None:
                    missing.append(f"{path} (md5 {md5})")
                    continue
                source = f"remote {remote}"
                try:
                    repo.fetch(targets=[target])
                    repo.checkout(targets=[target])
                except DvcException:
                    missing.append(f"{path} (md5 {md5})")
                    continue
            done.append(Restored(path, md5, source))
    if missing:
        raise NotReproduced(
            f"cannot reproduce run {run.run_id}: missing from {searched}:\n  " + "\n  ".join(missing) + "\n"
            "Push them from the machine that made the run (`make push`), or point this project at a remote "
            "that holds them (`dvc remote add -d NAME URL`)."
        )
    return done


def restore_report(run: PastRun, restored: Path, path: str, md5: str) -> str | None:
    """A report git keeps (not in any DVC cache), from the run's artifacts, if its bytes match the lock."""
    import hashlib

    import mlflow
    from mlflow.exceptions import MlflowException

    from quickdraw_dag.tracking.record import REPORTS

    with tempfile.TemporaryDirectory(prefix="quickdraw-report-") as folder:
        try:
            got = Path(mlflow.MlflowClient().download_artifacts(run.run_id, f"{REPORTS}/{Path(path).name}", folder))
        except (MlflowException, OSError):
            return None
        if hashlib.md5(got.read_bytes()).hexdigest() != md5:
            return None
        target = restored / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(got, target)
    return "the run's MLflow artifacts"


def changed_inputs(restored: Path) -> list[str]:
    """What DVC finds different, among the last stage's deps and params, from the restored dvc.lock."""
    with open_repo(restored) as repo:
        (stage,) = repo.stage.collect(stage_target(restored, LAST_STAGE))
        changes = []
        for dep in stage.deps:
            for path, change in dep.status().items():
                changes.append(f"{path}: {change}")
    return changes


def run_last_stage(restored: Path) -> None:
    """The evaluate stage with the commit's own code (MLflow off: this is a check, not a new run)."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
    env["PYTHONPATH"] = str(restored)
    done = subprocess.run(
        [sys.executable, "-m", f"tasks.{LAST_STAGE}", "--set", "mlflow.enabled=false"],
        cwd=restored,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise NotReproduced(f"the {LAST_STAGE} stage failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


def compare(run: PastRun, restored: Path) -> tuple[list[str], bool]:
    """A table of each test metric, logged against reproduced; whether all are exactly equal."""
    raw = load_yaml_bytes(run.params_file, f"the run's {DEFAULT_PARAMS_PATH.name}") or {}
    paths = PathsParams.model_validate(raw.get("paths") or {}).model_dump()
    got = read_metrics(Catalog.from_paths(SimpleNamespace(**{k: restored / v for k, v in paths.items()})))
    rows = [f"{'metric':<18} {'logged':>22} {'reproduced':>22}"]
    equal = True
    for name, value in got.items():
        if name == "test_images":
            continue
        logged = run.metrics.get(f"test_{name}")
        same = logged is not None and float(value) == logged
        equal &= same
        rows.append(f"{name:<18} {logged!r:>22} {float(value)!r:>22}  {'equal' if same else 'DIFFERENT'}")
    return rows, equal


def reproduce(run_id: str, project: Path, params_path: Path, workdir: Path | None, keep: bool) -> list[str]:
    """Reproduce the run; returns the comparison table. NotReproduced when anything stands in the way."""
    run = find_run(run_id, load_params(params_path).mlflow)
    print(f"run {run.run_id} ({run.name}): code of commit {run.commit[:12]}, params.yaml and dvc.lock it recorded")
    storage = storage_of(run, project)  # a demo run whose workspace is gone: say so before checking anything out
    with code_worktree(project, run.commit, workdir, keep) as restored:
        (restored / DEFAULT_PARAMS_PATH.name).write_bytes(run.params_file)
        (restored / DVC_LOCK).write_bytes(run.lock_file)
        searched = share_dvc_storage(storage, restored)
        for item in restore_inputs(run, restored, searched):
            print(f"  {item.path:<28} md5 {item.md5:<40} from {item.source}")
        changes = changed_inputs(restored)
        if changes:
            note = " (the run's code was not committed: git_dirty=true)" if run.dirty == "true" else ""
            raise NotReproduced(
                f"the inputs of {LAST_STAGE} differ from the run's {DVC_LOCK}{note}:\n  " + "\n  ".join(changes)
            )
        print(f"every input of {LAST_STAGE} (code, params, data, model) matches the run's {DVC_LOCK}; evaluating")
        run_last_stage(restored)
        rows, equal = compare(run, restored)
    print("\n".join(rows))
    if not equal:
        raise NotReproduced(f"run {run.run_id}: the re-evaluated test metrics differ from the logged ones")
    print(f"reproduced: every test metric of run {run.run_id} equals the logged one exactly")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quickdraw_dag.orchestration.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run of a pipeline run (the UI's run ID)")
    parser.add_argument("--params", default=str(DEFAULT_PARAMS_PATH), help="this project's params (its MLflow store)")
    parser.add_argument("--workdir", type=Path, help="where to check the run out (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the run's checked-out workspace afterwards")
    args = parser.parse_args(argv)
    configure_logging()
    import dvc  # noqa: F401 - importing DVC sets its loggers' levels: quiet them after, not before

    for name in ("dvc", "dvc_objects", "dvc_data"):  # our messages name what is missing; DVC's repeat them
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # two small files: no bars
    try:
        reproduce(args.run_id, Path("."), Path(args.params), args.workdir, args.keep)
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
