"""`make compare`: the last runs as one table with only the params that differ, and their curves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


@pytest.fixture()
def two_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Two parent runs (seeds 0 and 1) with a trial each, epochs, test figures and hashes, in a real store."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("quickdraw")
    ids = []
    for seed, accuracy in ((0, 0.7812), (1, 0.7950)):
        start = int(time.time() * 1000) + seed
        run = client.create_run(experiment, run_name=f"quickdraw-7cls-seed{seed}", start_time=start)
        client.log_batch(
            run.info.run_id,
            params=[Param("train.seed", str(seed)), Param("train.epochs", "40"), Param("data.source", "s")],
            metrics=[
                Metric("test_accuracy", accuracy, start, 0),
                Metric("test_map_at_3", accuracy + 0.1, start, 0),
                Metric("train_seconds", 100.0 + seed, start, 0),
            ]
            + [Metric("val_accuracy", 0.5 + 0.1 * e, start, e) for e in (1, 2, 3)]
            + [Metric("val_loss", 1.0 - 0.1 * e, start, e) for e in (1, 2, 3)],
            tags=[RunTag("dvc_model_md5", f"{seed}" * 32), RunTag("dvc_processed_md5", "ab" * 16 + ".dir")],
        )
        trial = client.create_run(experiment, run_name="trial-0000", tags={"mlflow.parentRunId": run.info.run_id})
        client.set_terminated(trial.info.run_id)
        client.set_terminated(run.info.run_id, end_time=start + 125_000)
        ids.append(run.info.run_id)
    return ids[0], ids[1]


def test_compare_prints_both_runs_with_only_the_params_that_differ(two_runs, capsys, tmp_path: Path) -> None:
    from quickdraw_dag.tracking.compare import main
    from tests.helpers import REPO

    assert main(["-n", "5", "--params", str(REPO / "params.yaml"), "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[0].split()
    assert "train.seed" in header and "train.epochs" not in header and "data.source" not in header
    rows = [line for line in lines[1:] if "quickdraw-7cls" in line]
    assert header[:2] == ["run_id", "run"]  # the id `make reproduce RUN=<id>` takes, first
    assert [row.split()[:2] for row in rows] == [  # newest first
        [two_runs[1], "quickdraw-7cls-seed1"],
        [two_runs[0], "quickdraw-7cls-seed0"],
    ]
    assert "0.795" in rows[0] and "0.7812" in rows[1] and "2 min 05 s" in rows[0]
    assert "trial-0000" not in out  # nested trial runs are not pipeline runs
    assert "11111111111" in rows[0] and "abababababab" in rows[0]  # the hashes, shortened
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_compare_without_runs_says_how_to_get_one(tmp_path: Path, monkeypatch, capsys) -> None:
    from quickdraw_dag.tracking.compare import main
    from tests.helpers import REPO

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["--params", str(REPO / "params.yaml")]) == 2
    assert "run the pipeline first" in capsys.readouterr().err


def test_compare_help_explains_every_option(capsys) -> None:
    from quickdraw_dag.tracking.compare import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "the params whose mlflow section names the store (default: params.yaml)" in " ".join(text.split())
    for option in ("-n RUNS", "--plot FILE", "--experiment EXPERIMENT", "--params PARAMS"):
        assert option in text


def test_make_help_lists_every_described_target_with_its_description() -> None:
    import re
    import shutil
    import subprocess

    from tests.helpers import REPO, skip_outside_ci

    if shutil.which("make") is None:
        skip_outside_ci("make is not installed")
    done = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = dict(re.findall(r"^  make (\S+)\s+(.+)$", done.stdout, flags=re.M))
    makefile = (REPO / "Makefile").read_text()
    described = re.findall(r"^## .*\n(?:## .*\n|[A-Z_]+ \?=.*\n|# .*\n)*([a-z][a-z-]*):", makefile, flags=re.M)
    assert sorted(listed) == sorted(set(described)) and len(listed) >= 25
    assert listed["demo"].startswith("The whole pipeline offline on the shipped real sample")
    assert "synthetic" not in listed["demo"]
    assert "127.0.0.1:5002" in listed["play"] and "$(" not in done.stdout  # ports filled in
