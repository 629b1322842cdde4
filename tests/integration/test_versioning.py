"""Versioning you can go back to (issue 15), in a scratch git repository on tiny synthetic data.

One run of the whole story, as a user lives it: a flow run, committed and pushed to a local-directory
DVC remote; `dvc exp run -S train.seed=1`, and a queued experiment run by `dvc queue start`; `dvc exp show`,
`dvc metrics diff`, `dvc plots diff`; a fresh `git clone` + `dvc pull`; and reproducing the first run from
its MLflow record after the others, from the DVC cache and the remote, and with neither.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import Catalog, git_tracked_outputs
from tests.helpers import TINY_FIXED_PIPELINE, dvc, git_commit_all, run_bounded, set_params, tree_digest

pytestmark = [pytest.mark.slow]
LAYOUT = Catalog.under(Path("."))


def git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def python(project: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module` in `project` with its own code, logging to its own MLflow store (and, as every test's
    flows, to the worker's Prefect server: tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(project)
    return run_bounded([sys.executable, "-m", module, *args], cwd=project, env=env, timeout=900)


def dvc_ok(project: Path, *args: str, timeout: float = 900) -> str:
    done = dvc(project, *args, timeout=timeout)
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def queue_busy(project: Path) -> bool:
    return any(word in dvc_ok(project, "queue", "status") for word in ("Queued", "Running"))


def parent_runs(project: Path) -> list:
    """The pipeline runs' MLflow runs in the project's store, oldest first."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["quickdraw"], output_format="list")
    return sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)


def logged_record(run_id: str, folder: Path) -> tuple[bytes, bytes]:
    """The params.yaml and dvc.lock a run logged."""
    import mlflow

    from quickdraw_dag.tracking.record import RUN_RECORD

    record = Path(mlflow.MlflowClient().download_artifacts(run_id, RUN_RECORD, str(folder)))
    return (record / "params.yaml").read_bytes(), (record / "dvc.lock").read_bytes()


def experiments(project: Path) -> dict[str, dict]:
    """`dvc exp show --json` by name: the baseline commit's row and each experiment's."""
    rows = {}
    for baseline in json.loads(dvc_ok(project, "exp", "show", "--json")):
        if baseline["rev"] != "workspace":
            rows["baseline"] = {"rev": baseline["rev"], **baseline["data"]}
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                rows[rev["name"]] = {"rev": rev["rev"], **rev["data"]}
    return rows


def cache_object(project: Path, md5: str) -> Path:
    return project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def test_runs_are_committed_pushed_experimented_cloned_and_reproduced(tmp_path: Path) -> None:
    from bench.workspace import copy_project

    project = copy_project(tmp_path / "project")
    remote = tmp_path / "remote"
    set_params(project, **TINY_FIXED_PIPELINE)
    dvc_ok(project, "remote", "add", "-d", "store", str(remote))
    code = git_commit_all(project, "code")

    # 1. A flow run: git status shows exactly what a user commits; the flow pushed data and model.
    first = python(project, "flows.pipeline")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    status = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    kept = sorted(path.as_posix() for path in git_tracked_outputs(LAYOUT))
    assert sorted(status) == sorted(f"?? {path}" for path in ["dvc.lock", *kept])
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    model_md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == LAYOUT.model.as_posix())
    assert (remote / "files" / "md5" / model_md5[:2] / model_md5[2:]).is_file()  # pushed by the flow
    assert f"file(s) sent to remote 'store' ({remote})" in first.stdout + first.stderr  # and it says so
    assert "are in sync" in dvc_ok(project, "status", "--cloud")  # nothing left to push
    (run1,) = parent_runs(project)
    assert (run1.data.tags["git_commit"], run1.data.tags["git_dirty"]) == (code, "false")
    params_logged, lock_logged = logged_record(run1.info.run_id, tmp_path / "record1")
    assert params_logged == (project / "params.yaml").read_bytes()
    assert lock_logged == (project / "dvc.lock").read_bytes()  # the lock the flow committed after the run closed
    git(project, "add", "dvc.lock", "params.yaml", "reports")  # docs/VERSIONING.md's commit command
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "run 1")
    committed = git(project, "rev-parse", "HEAD")
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""

    # 2. A fresh clone gets the same data and model from the remote, up to date, nothing to reproduce.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    dvc_ok(clone, "pull")
    assert tree_digest(clone / LAYOUT.processed) == tree_digest(project / LAYOUT.processed)
    assert (clone / LAYOUT.model).read_bytes() == (project / LAYOUT.model).read_bytes()
    assert "up to date" in dvc_ok(clone, "status")
    again = dvc_ok(clone, "repro")
    assert "Running stage" not in again and "didn't change, skipping" in again

    # 3. An experiment reruns what changed, with the project's python, and logs its lineage to MLflow.
    experiment = dvc_ok(project, "exp", "run", "-S", "train.seed=1")
    assert "Running stage 'train'" in experiment and "Running stage 'evaluate'" in experiment
    assert "Running stage 'tune'" not in experiment
    run1, run2 = parent_runs(project)
    tags = run2.data.tags
    assert tags["dvc_exp_baseline_rev"] == tags["git_commit"] == committed and tags["git_dirty"] == "false"
    assert logged_record(run2.info.run_id, tmp_path / "record2")[1] == (project / "dvc.lock").read_bytes()
    # A healthy experiment: no false alarm that a stage's ended process killed it (issue 28 point 5) ...
    assert run2.info.status == "FINISHED" and "killed_note" not in tags and "marked KILLED" not in experiment
    # ... and its model is registered but kept out of promotion unless asked (QUICKDRAW_PROMOTE_EXPERIMENTS=1)
    assert tags["promotion.decision"] == "held" and "QUICKDRAW_PROMOTE_EXPERIMENTS=1" in tags["promotion.reason"]
    import mlflow

    champion = mlflow.MlflowClient().get_model_version_by_alias("quickdraw-cnn", "champion")
    assert champion.run_id == run1.info.run_id
    # The experiment's metrics differ from the commit's, and DVC's diffs say so.
    metrics_diff = json.loads(dvc_ok(project, "metrics", "diff", "--json"))
    assert metrics_diff[LAYOUT.metrics.as_posix()], metrics_diff  # at least one test metric changed
    plots = json.loads(dvc_ok(project, "plots", "diff", "--json"))["data"]
    curves = next(v for k, v in plots.items() if "training curves" in k or LAYOUT.training_log.as_posix() in k)
    assert set(curves[0]["revisions"]) == {"workspace", "HEAD"}
    images = [k for k in plots if k.startswith(LAYOUT.plots.as_posix())]
    assert images and {r for k in images for p in plots[k] for r in p["revisions"]} == {"workspace", "HEAD"}

    # 4. A queued experiment runs in DVC's temporary copy, with the project's python and MLflow store.
    dvc_ok(project, "exp", "run", "--queue", "-S", "train.seed=2")
    dvc_ok(project, "queue", "start")
    deadline = time.monotonic() + 900
    # Its MLflow run finishing first, read from the store (cheap), then DVC's word that the queue is done:
    # `dvc queue status` every 5 s cost a DVC start (2-3 CPU s) a poll, a dozen times over the run.
    polls = 0
    while sum(run.info.status != "RUNNING" for run in parent_runs(project)) < 3:
        assert time.monotonic() < deadline, dvc_ok(project, "queue", "status")
        polls += 1
        if polls % 15 == 0 and not queue_busy(project):
            break  # it ended without an MLflow run: the checks below say what is missing
        time.sleep(1)
    while queue_busy(project):
        assert time.monotonic() < deadline, dvc_ok(project, "queue", "status")
        time.sleep(1)
    rows = experiments(project)
    queued = next(name for name, row in rows.items() if row["params"]["params.yaml"]["data"]["train"]["seed"] == 2)
    for name, seed in (("baseline", 0), (tags["dvc_exp_name"], 1), (queued, 2)):
        row = rows[name]
        assert row["params"]["params.yaml"]["data"]["train"]["seed"] == seed
        assert 0 <= row["metrics"][LAYOUT.metrics.as_posix()]["data"]["accuracy"] <= 1
    assert (
        rows["baseline"]["metrics"][LAYOUT.metrics.as_posix()]["data"]["accuracy"] == run1.data.metrics["test_accuracy"]
    )
    run3 = parent_runs(project)[-1]  # in the project's store, though its stages ran in a temporary copy
    assert run3.data.tags["dvc_exp_name"] == queued and run3.data.tags["git_commit"] == committed

    # 5. The first run, reproduced after the others: its data from the DVC cache, its model (gone from the
    # cache) from the remote; then with neither.
    lock_before = (project / "dvc.lock").read_bytes()
    expected = {
        name: repr(run1.data.metrics[f"test_{name}"])
        for name in ("accuracy", "top3_accuracy", "map_at_3", "macro_precision", "macro_recall", "macro_f1")
    }
    cache_object(project, model_md5).unlink()
    done = python(project, "quickdraw_dag.orchestration.reproduce", run1.info.run_id)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    restored = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    processed_md5 = run1.data.tags["dvc_processed_md5"]
    assert processed_md5 in restored[LAYOUT.processed.as_posix()]
    assert restored[LAYOUT.processed.as_posix()].endswith("from the DVC cache")
    assert model_md5 in restored[LAYOUT.model.as_posix()]
    assert restored[LAYOUT.model.as_posix()].endswith(f"from remote 'store' ({remote})")
    table = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.split()}
    for name, value in expected.items():
        assert table[name] == [value, value, "equal"], (name, table.get(name))
    assert (project / "dvc.lock").read_bytes() == lock_before  # the workspace was never touched
    assert len(git(project, "worktree", "list").splitlines()) == 1  # the run's worktree was removed

    cache_object(project, model_md5).unlink()  # fetched back by the last reproduction
    shutil.move(remote, tmp_path / "remote-gone")
    missing = python(project, "quickdraw_dag.orchestration.reproduce", run1.info.run_id)
    assert missing.returncode == 1
    message = missing.stderr
    assert f"{LAYOUT.model.as_posix()} (md5 {model_md5})" in message, message
    assert "missing from the DVC cache" in message and "remote 'store'" in message and "Traceback" not in message
