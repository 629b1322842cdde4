"""DVC and the flow in one workspace: DVC's lock held for the whole flow run; one params file.

A flow run holds DVC's own repository lock, so `dvc repro`, `dvc exp run`
and `dvc checkout` started meanwhile refuse before they delete or rewrite
anything (DVC deletes a stage's outputs before it runs its command, so a
refusal by our stage lock comes too late). The flow's own DVC calls still
work under it, and a flow started while DVC runs refuses with exit 75.
`--params` other than params.yaml is refused: DVC would record params.yaml's
values for a run made with another file's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import REPO, dvc, git_commit_all, run_module, set_params, tree_digest
from tests.reliability.faults import PAUSED_FLOW, TINY_DATA, wait_for


@pytest.mark.slow
def test_dvc_commands_refuse_while_a_flow_runs_and_touch_nothing(project: Path, tmp_path: Path, record) -> None:
    set_params(project, **TINY_DATA)
    git_commit_all(project)
    first = run_module("flows.pipeline", "--until", "split", cwd=project)
    assert first.returncode == 0, first.stderr[-3000:]
    interim = Catalog.under(project).interim
    completed = tree_digest(interim)
    reached, go = tmp_path / "reached", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PAUSE_REACHED": str(reached), "PAUSE_GO": str(go)}
    flow = subprocess.Popen(
        [sys.executable, "-c", PAUSED_FLOW, "--until", "split", "--set", "split.seed=1"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(reached.exists, flow)
        params_before = (project / "params.yaml").read_bytes()  # the flow saved split.seed=1 before running
        refused = []
        for command in (["repro", "split"], ["exp", "run", "-S", "split.seed=7"], ["checkout", "--force"]):
            done = dvc(project, *command)
            refused.append(done.returncode != 0 and "Unable to acquire lock" in done.stderr)
            assert tree_digest(interim) == completed, f"dvc {' '.join(command)} touched the outputs"
            assert (project / "params.yaml").read_bytes() == params_before
        assert refused == [True, True, True]
    finally:
        go.touch()
        output, _ = flow.communicate(timeout=300)
    assert flow.returncode == 0, output[-3000:]
    assert "up to date" in dvc(project, "status", "split").stdout  # the flow recorded its run as usual
    record(
        "dvc and the flow",
        scenario="dvc repro, dvc exp run, dvc checkout while a flow runs",
        refused=3,
        outputs_touched=0,
    )


@pytest.mark.slow
def test_a_flow_started_while_dvc_holds_its_lock_exits_75(project: Path, record) -> None:
    from quickdraw_dag.orchestration.dvc_state import repository_lock

    set_params(project, **TINY_DATA)
    before = tree_digest(project)
    with repository_lock(project):  # as `dvc repro` holds it
        done = run_module("flows.pipeline", "--until", "fetch", cwd=project)
    assert done.returncode == 75, done.stderr[-2000:]
    assert "is in use by" in done.stderr and f"(pid {os.getpid()})" in done.stderr and "--lock-wait" in done.stderr
    assert "Traceback" not in done.stderr
    after = tree_digest(project)
    assert {k: v for k, v in after.items() if not k.startswith(".dvc/tmp")} == {
        k: v for k, v in before.items() if not k.startswith(".dvc/tmp")
    }
    record("dvc and the flow", scenario="a flow started while DVC holds its lock", refused=1, outputs_touched=0)


def test_the_flows_own_dvc_calls_work_under_the_lock_it_holds(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quickdraw_dag.orchestration.dvc_state import commit_stage, repository_lock, stage_is_current

    set_params(project, **TINY_DATA)
    monkeypatch.chdir(project)
    import tasks.fetch

    with repository_lock(project):
        assert stage_is_current("fetch", project) is False
        assert tasks.fetch.main([]) == 0
        commit_stage("fetch", project)
        assert stage_is_current("fetch", project) is True
    assert "fetch" in (project / "dvc.lock").read_text()


@pytest.mark.parametrize("flow", ["flows.pipeline", "flows.paint", "flows.deploy"])
def test_a_flow_refuses_a_params_file_dvc_does_not_read(project: Path, flow: str, record) -> None:
    set_params(project, **TINY_DATA, paint={"longest_side": 12, "epochs": 2, "hidden_layers": 1, "units": 8})
    (project / "other.yaml").write_bytes((project / "params.yaml").read_bytes())
    before = tree_digest(project)
    argv = {"flows.pipeline": ["--until", "fetch"], "flows.paint": [], "flows.deploy": ["serve"]}[flow]
    done = run_module(flow, *argv, "--params", "other.yaml", cwd=project, timeout=120)  # `serve` would block
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--params other.yaml" in done.stderr and "params.yaml only" in done.stderr
    assert tree_digest(project) == before
    record("dvc and the flow", scenario=f"{flow} --params other.yaml", refused=1, outputs_touched=0)
