"""Versioning's parts on small real DVC and git repositories: the lock a run will leave, pushing, lineage.

The whole story (a flow run, experiments, a clone, reproducing a run) is tests/integration/test_versioning.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog, git_tracked_outputs
from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.errors import PushError
from quickdraw_dag.orchestration.versioning import default_remote, describe_push, push_outputs
from quickdraw_dag.tracking.lineage import experiment_tags, git_state, not_code, pending_lock
from quickdraw_dag.tracking.store import tracking_uri
from tests.helpers import git_commit_all

STAGE = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [size]
    outs: [out]
    metrics:
      - score.json:
          cache: false
"""
MAKE = """import json, os
os.makedirs("out", exist_ok=True)
open("out/data.bin", "wb").write(bytes(range(256)) * 4)
json.dump({"score": 0.5}, open("score.json", "w"))
"""


def dvc_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC project with one stage whose outputs exist, never recorded in dvc.lock; the working directory.

    (DVC resolves stage names from the working directory, as its commands run in the project.)
    """
    from dvc.repo import Repo

    root.mkdir(parents=True)
    monkeypatch.chdir(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    Repo.init(str(root)).close()
    (root / "dvc.yaml").write_text(STAGE)
    (root / "params.yaml").write_text("size: 4  # a comment DVC keeps\n")
    (root / "make.py").write_text(MAKE)
    (root / ".gitignore").write_text("/out/\n")
    subprocess.run(["python", "make.py"], cwd=root, check=True)
    return root


def test_the_pending_lock_is_byte_for_byte_the_lock_dvc_then_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dvc.repo import Repo

    project = dvc_project(tmp_path / "p", monkeypatch)
    pending = pending_lock("make", project)
    assert not (project / "dvc.lock").exists()  # computed, not written
    with Repo(str(project)) as repo:
        repo.commit("make", force=True)
    assert pending == (project / "dvc.lock").read_bytes()
    assert b"size: 4" in pending and b"out" in pending
    # a second stage run with a changed output: the pending lock again equals the committed one
    (project / "out" / "data.bin").write_bytes(b"changed")
    pending = pending_lock("make", project)
    assert pending != (project / "dvc.lock").read_bytes()
    with Repo(str(project)) as repo:
        repo.commit("make", force=True)
    assert pending == (project / "dvc.lock").read_bytes()


def test_push_is_a_no_op_without_a_default_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = dvc_project(tmp_path / "p", monkeypatch)
    assert default_remote(project) is None
    result = push_outputs(project)
    assert result == {"pushed": False, "reason": "no default DVC remote"}
    assert describe_push(result) == (
        "dvc push: nothing pushed, no default DVC remote (`dvc remote add -d NAME URL` sets one)"
    )


def test_push_sends_the_recorded_outputs_to_the_default_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvc.repo import Repo

    project = dvc_project(tmp_path / "p", monkeypatch)
    remote = tmp_path / "remote"
    with Repo(str(project)) as repo:
        repo.commit("make", force=True)
        with repo.config.edit() as config:
            config["remote"]["shared"] = {"url": str(remote)}
            config["core"]["remote"] = "shared"
    assert str(default_remote(project)) == f"'shared' ({remote})"
    result = push_outputs(project)
    assert result == {"pushed": True, "remote": "shared", "url": str(remote), "files": 2}  # the .dir and its file
    assert describe_push(result) == f"dvc push: 2 file(s) sent to remote 'shared' ({remote})"
    pushed = sorted(p.read_bytes() for p in (remote / "files" / "md5").rglob("*") if p.is_file())
    assert bytes(range(256)) * 4 in pushed
    assert push_outputs(project)["files"] == 0  # nothing new to send


def test_a_failed_push_names_the_remote_and_how_to_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvc.repo import Repo

    project = dvc_project(tmp_path / "p", monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with Repo(str(project)) as repo:
        repo.commit("make", force=True)
        with repo.config.edit() as config:
            config["remote"]["shared"] = {"url": str(blocker / "remote")}
            config["core"]["remote"] = "shared"
    with pytest.raises(PushError, match=r"dvc push to remote 'shared' \(.*a-file/remote\) failed: .*`make push`"):
        push_outputs(project)


def test_git_dirty_means_the_code_differs_not_the_runs_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = dvc_project(tmp_path / "p", monkeypatch)
    reports = git_tracked_outputs(Catalog.under(Path(".")))
    for report in reports:
        (project / report).parent.mkdir(parents=True, exist_ok=True)
        (project / report).write_text("{}")
    commit = git_commit_all(project)
    run_files = not_code(reports)
    assert git_state(project, run_files) == {"git_commit": commit, "git_dirty": "false"}
    (project / "params.yaml").write_text("size: 5\n")
    for report in reports:
        (project / report).write_text('{"accuracy": 1}')
    assert git_state(project, run_files)["git_dirty"] == "false"  # the run logs its params and lock itself
    assert git_state(project)["git_dirty"] == "true"  # without the exclusions: any change counts
    (project / "make.py").write_text(MAKE + "\n# edited\n")
    assert git_state(project, run_files)["git_dirty"] == "true"
    outside = tmp_path / "not-in-git"
    outside.mkdir()
    assert git_state(outside, run_files) == {"git_commit": "none", "git_dirty": "unknown"}


def test_experiment_tags_name_the_dvc_experiment_only_under_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert experiment_tags() == {}
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-bass")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    assert experiment_tags() == {"dvc_exp_name": "tidy-bass", "dvc_exp_baseline_rev": "a" * 40}


def test_a_relative_store_is_the_dvc_projects_even_in_a_queued_experiments_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_uri(MlflowParams()) == "sqlite:///mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVC sets it to the project, also in .dvc/tmp/exps/<copy>
    assert tracking_uri(MlflowParams()) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_uri(MlflowParams(tracking_uri="sqlite:///../mlflow.db")) == f"sqlite:///{tmp_path}/../mlflow.db"
    assert tracking_uri(MlflowParams(tracking_uri="sqlite:////abs/store.db")) == "sqlite:////abs/store.db"
    assert tracking_uri(MlflowParams(tracking_uri="http://127.0.0.1:5000")) == "http://127.0.0.1:5000"


def test_reproduce_refuses_a_run_it_cannot_find_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from quickdraw_dag.orchestration.reproduce import main
    from tests.helpers import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    assert main(["0123abcd", "--params", str(REPO / "params.yaml")]) == 2
    assert f"no MLflow store at {tmp_path / 'none.db'}" in capsys.readouterr().err


def test_demo_runs_are_tagged_with_the_workspace_whose_cache_holds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from quickdraw_dag.tracking.lineage import DEMO_WORKSPACE_ENV, demo_tags

    monkeypatch.delenv(DEMO_WORKSPACE_ENV, raising=False)
    assert demo_tags() == {"demo": "false"}
    monkeypatch.setenv(DEMO_WORKSPACE_ENV, "  ")
    assert demo_tags() == {"demo": "false"}
    monkeypatch.setenv(DEMO_WORKSPACE_ENV, "/home/u/project/.demo")
    assert demo_tags() == {"demo": "true", "demo_workspace": "/home/u/project/.demo"}


def test_reproduce_reads_a_demo_runs_own_dvc_cache_or_says_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from quickdraw_dag.errors import NotReproduced
    from quickdraw_dag.orchestration.reproduce import find_run, main, storage_of
    from tests.helpers import REPO, dvc

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("quickdraw")
    workspace = tmp_path / ".demo"
    runs = {}
    for name, tags in (("demo", {"demo": "true", "demo_workspace": str(workspace)}), ("real", {"demo": "false"})):
        run = client.create_run(experiment, tags={"git_commit": "abc", **tags})
        record = tmp_path / name
        record.mkdir()
        (record / "params.yaml").write_text("{}\n")
        (record / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
        client.log_artifacts(run.info.run_id, str(record), "dvc")
        client.set_terminated(run.info.run_id)
        runs[name] = find_run(run.info.run_id, MlflowParams())
    assert runs["real"].demo_workspace is None and storage_of(runs["real"], tmp_path) == tmp_path
    assert runs["demo"].demo_workspace == str(workspace)
    with pytest.raises(NotReproduced, match=r"is a `make demo` run: its data and model were in the DVC cache"):
        storage_of(runs["demo"], tmp_path)  # the demo's workspace is gone: the truth, not "push them"
    workspace.mkdir()
    assert dvc(workspace, "init", "--no-scm", "-q").returncode == 0
    assert storage_of(runs["demo"], tmp_path) == workspace
    assert "DVC cache of " + str(workspace) in capsys.readouterr().out
    # the whole command on a demo run whose workspace went: exit 1 and one line naming it, no traceback
    import shutil

    shutil.rmtree(workspace)
    monkeypatch.chdir(REPO)
    assert main([runs["demo"].run_id, "--params", str(REPO / "params.yaml")]) == 1
    err = capsys.readouterr().err
    assert "`make demo` run" in err and "Traceback" not in err


def test_a_stage_that_ended_is_not_a_killed_run_while_its_dvc_process_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc exp run`: tune's process ends, train's opens the store: the run is the dvc process's, still alive."""
    import os
    import socket
    import sys

    import mlflow
    import psutil

    from quickdraw_dag.tracking.store import close_abandoned_runs, dvc_process_alive

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("quickdraw")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # a stage's process that is gone
    live = f"{os.getpid()}:{psutil.Process().create_time():.3f}"  # stands for the running `dvc` process
    reused = f"{os.getpid()}:{psutil.Process().create_time() - 100:.3f}"  # same pid, another process: gone
    owners = {"dvc alive": live, "dvc gone": f"{ended.pid}:1.000", "pid reused": reused, "no dvc": None}
    runs = {}
    for name, owner in owners.items():
        tags = {"host": socket.gethostname(), "pid": str(ended.pid), **({"dvc_process": owner} if owner else {})}
        runs[name] = client.create_run(experiment, tags=tags).info.run_id
    closed = close_abandoned_runs(experiment)
    assert sorted(closed) == sorted(runs[name] for name in ("dvc gone", "pid reused", "no dvc"))
    assert client.get_run(runs["dvc alive"]).info.status == "RUNNING"
    assert "killed_note" not in client.get_run(runs["dvc alive"]).data.tags
    assert "ended without finishing" in client.get_run(runs["no dvc"]).data.tags["killed_note"]
    for key in ("", "abc", "123", "123:"):
        assert not dvc_process_alive(key)


@pytest.mark.parametrize(
    "experiment,promote,held",
    [
        (None, None, False),  # a flow run or `dvc repro`: the gate decides
        ("exp-a1b2", None, True),  # an experiment: held back, saying how to promote it
        ("exp-a1b2", "1", False),
        ("exp-a1b2", "true", False),
        ("exp-a1b2", "0", True),
        ("exp-a1b2", "", True),
        (None, "1", False),
    ],
)
def test_experiments_stay_out_of_promotion_unless_asked(
    experiment: str | None, promote: str | None, held: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.evaluate import PROMOTE_EXPERIMENTS_ENV, experiment_held_back

    for name, value in (("DVC_EXP_NAME", experiment), (PROMOTE_EXPERIMENTS_ENV, promote)):
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
    why = experiment_held_back()
    assert (why is not None) == held
    if held:
        assert why == f"DVC experiment {experiment}: experiments are not promoted unless {PROMOTE_EXPERIMENTS_ENV}=1"


@pytest.mark.parametrize(
    "flow_run,dvc_stage,commit,expected",
    [
        ("f1", None, "abc123", {"mlflow.source.name": "flows/pipeline.py", "mlflow.source.git.commit": "abc123"}),
        (None, "evaluate", "abc123", {"mlflow.source.name": "dvc.yaml", "mlflow.source.git.commit": "abc123"}),
        (None, None, "none", {"mlflow.source.name": "tasks/evaluate.py"}),  # no git: no commit to show
        (None, None, None, {"mlflow.source.name": "tasks/evaluate.py"}),
    ],
)
def test_runs_name_their_source_for_mlflows_source_column(
    flow_run: str | None, dvc_stage: str | None, commit: str | None, expected: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quickdraw_dag.tracking.record import source_tags

    monkeypatch.delenv("DVC_STAGE", raising=False)
    if dvc_stage:
        monkeypatch.setenv("DVC_STAGE", dvc_stage)
    assert source_tags(flow_run, commit) == {**expected, "mlflow.source.type": "LOCAL"}


ORCHESTRATOR_PROBE = """import sys
from quickdraw_dag.tracking.lineage import orchestrator_ids
print(orchestrator_ids(), "prefect" in sys.modules)
"""


@pytest.mark.parametrize(
    ("handed_down", "expected"),
    [
        ({}, "(None, None) False"),  # dvc repro's or a lone stage's process: Prefect is never imported
        # what Prefect's runtime reads outside a flow-run context: still asked, and answered
        (
            {"PREFECT__RUNTIME__FLOW_RUN__ID": "3f0c", "PREFECT__RUNTIME__DEPLOYMENT__NAME": "nightly"},
            "('3f0c', 'nightly') True",
        ),
        # the id a Prefect worker hands its process, its API out of reach: the id is kept, the name is unknown
        (
            {
                "PREFECT__FLOW_RUN_ID": "5b1c0e3e-0000-4000-8000-000000000001",
                "PREFECT_API_URL": "http://127.0.0.1:9/api",
            },
            "('5b1c0e3e-0000-4000-8000-000000000001', None) True",
        ),
    ],
)
def test_orchestrator_ids_import_prefect_only_where_a_flow_run_can_be_found(
    handed_down: dict[str, str], expected: str
) -> None:
    import os
    import sys

    from tests.helpers import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT__FLOW_RUN_ID", "PREFECT__RUNTIME__"))}
    done = subprocess.run(
        [sys.executable, "-c", ORCHESTRATOR_PROBE],
        env={**env, **handed_down, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
