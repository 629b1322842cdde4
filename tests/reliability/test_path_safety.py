"""Output paths that point at the project, .git, the MLflow store or out of the workspace; stages that clean up.

Each hostile `paths.*` value exits 2 naming the key, and not one byte of the
project changes (params.yaml included, also through the flow). A stage
deletes only what it wrote: fetch only files its previous manifest lists
under its own names, split/preprocess/paint only folders holding nothing but
their own files, leftovers only under the exact temporary names they make.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from tests.helpers import run_module, tree_digest

SYNTHETIC = ["--set", "data.source=synthetic", "--set", "data.categories=[circle, square, star]"]
SYNTHETIC += ["--set", "fetch.synthetic_drawings=200"]

# (stage, key, value): the probe's four and their neighbours.
HOSTILE = [
    ("fetch", "raw", "."),
    ("fetch", "raw", "./"),
    ("fetch", "raw", "data/.."),
    ("split", "interim", ".git"),
    ("split", "interim", ".dvc/tmp"),
    ("preprocess", "processed", "quickdraw_dag"),
    ("preprocess", "processed", "tasks/out"),
    ("fetch", "raw", "samples/quickdraw"),
    ("fetch", "raw", "mlflow.db"),
    ("fetch", "raw", "mlartifacts"),
    ("fetch", "raw", "data"),  # contains paths.interim and paths.processed
    ("split", "interim", "data/raw/interim"),  # inside paths.raw
    ("fetch", "raw", "linkout"),  # a symlink out of the workspace
    ("split", "interim", "linkgit"),  # a symlink to .git
    ("fetch", "raw", "dvc.yaml"),
]


def project_digest(project: Path) -> dict[str, bytes]:
    """Every file of the project but the workspace lock (taken before a stage looks at its paths)."""
    return {name: data for name, data in tree_digest(project).items() if name != ".quickdraw.lock"}


@pytest.fixture()
def workspace(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project copy with a run's outputs, an MLflow store, and two symlinks: one out, one to .git."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the pipeline's\n")
    (project / "linkout").symlink_to(outside)
    (project / "linkgit").symlink_to(project / ".git")
    (project / "mlflow.db").write_bytes(b"SQLite format 3\0")
    layout = Catalog.under(project)
    for path in (layout.manifest, layout.split_summary, layout.model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"earlier": "run"}\n')
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize("stage,key,value", HOSTILE, ids=[f"{s}-{k}={v}" for s, k, v in HOSTILE])
def test_a_hostile_output_path_exits_2_and_changes_nothing(
    workspace: Path, capsys: pytest.CaptureFixture, stage: str, key: str, value: str, record
) -> None:
    import importlib

    before = project_digest(workspace)
    outside = (workspace / "linkout").resolve()
    outside_before = tree_digest(outside)
    code = importlib.import_module(f"tasks.{stage}").main([*SYNTHETIC, "--set", f"paths.{key}={value}"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert f"paths.{key}" in error and "Traceback" not in error
    assert project_digest(workspace) == before
    assert tree_digest(outside) == outside_before
    record("path safety", check=f"{stage} with paths.{key}={value}", exit_2=1, files_changed=0)


# (stage, folder it runs in, key, value)
INPUTS_IN_OUTPUTS = [
    ("fetch", ".", "data.source", "data/interim"),  # split would replace what fetch copies from
    ("paint", "paint", "paint.image", "reports/paint/me.png"),  # paint replaces its folder after reading the image
    ("fetch", ".", "mlflow.tracking_uri", "sqlite:///data/raw/mlflow.db"),  # fetch cleans its folder
]


@pytest.mark.parametrize("stage,folder,key,value", INPUTS_IN_OUTPUTS, ids=[k for _, _, k, _ in INPUTS_IN_OUTPUTS])
def test_what_the_pipeline_reads_or_records_into_never_lies_in_an_output(
    workspace: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    folder: str,
    key: str,
    value: str,
    record,
) -> None:
    import importlib

    before = project_digest(workspace)
    monkeypatch.chdir(workspace / folder)  # the paint pipeline runs in paint/, as DVC runs it
    overrides = SYNTHETIC if stage == "fetch" else []  # a later --set wins: the hostile value is the one read
    code = importlib.import_module(f"tasks.{stage}").main([*overrides, "--set", f"{key}={value}"])
    error = capsys.readouterr().err
    assert code == 2 and key.split(".")[0] in error and "overlap" in error, error
    assert project_digest(workspace) == before
    record("path safety", check=f"{key}={value}", exit_2=1, files_changed=0)


def test_the_flow_refuses_before_saving_the_value_into_params_yaml(workspace: Path, record) -> None:
    before = project_digest(workspace)
    done = run_module("flows.pipeline", *SYNTHETIC, "--set", "paths.raw=.", "--until", "fetch", cwd=workspace)
    assert done.returncode == 2 and "paths.raw" in done.stderr, done.stderr[-2000:]
    assert project_digest(workspace) == before  # params.yaml too: the next plain stage run cannot do the damage
    record("path safety", check="flow with paths.raw=. (never saved into params.yaml)", exit_2=1, files_changed=0)


def test_fetch_removes_only_the_files_its_previous_manifest_lists(workspace: Path, record) -> None:
    import tasks.fetch

    assert tasks.fetch.main([*SYNTHETIC]) == 0
    layout = Catalog.under(workspace)
    raw = layout.raw
    (raw / "notes.txt").write_text("mine\n")
    (raw / "circle.ndjson").write_text("a user's file with a category's name, not in any manifest\n")
    manifest = json.loads(layout.manifest.read_text())
    manifest["categories"]["square"]["file"] = "../../params.yaml"  # a hand-edited manifest
    layout.manifest.write_text(json.dumps(manifest))
    params_before = (workspace / "params.yaml").read_bytes()
    assert tasks.fetch.main([*SYNTHETIC[:2], "--set", "data.categories=[circle, triangle]"]) == 0
    names = sorted(p.name for p in raw.iterdir())
    # star.bin went; square.bin stays, since the edited manifest no longer lists it under fetch's name for it
    assert names == sorted(
        ["circle.bin", "circle.ndjson", layout.manifest.name, "notes.txt", "square.bin", "triangle.bin"]
    )
    assert (workspace / "params.yaml").read_bytes() == params_before
    record("path safety", check="fetch drops a category: only its own file goes", exit_2=0, files_changed=0)


@pytest.mark.parametrize("stage,folder", [("split", "interim"), ("preprocess", "processed")])
def test_a_stage_never_replaces_a_folder_holding_files_it_did_not_write(
    workspace: Path, capsys: pytest.CaptureFixture, stage: str, folder: str, record
) -> None:
    import importlib

    for before_stage in ("fetch", "split", "preprocess"):
        assert importlib.import_module(f"tasks.{before_stage}").main(SYNTHETIC) == 0
    target = getattr(Catalog.under(workspace), folder)
    (target / "my-notes.md").write_text("kept\n")
    before = tree_digest(target)
    code = importlib.import_module(f"tasks.{stage}").main([*SYNTHETIC, "--set", "split.seed=5"])
    error = capsys.readouterr().err
    assert code == 2 and "my-notes.md" in error and "refusing" in error
    assert tree_digest(target) == before
    (target / "my-notes.md").unlink()
    assert importlib.import_module(f"tasks.{stage}").main([*SYNTHETIC, "--set", "split.seed=5"]) == 0
    record("path safety", check=f"{stage} over a folder with a foreign file", exit_2=1, files_changed=0)


def test_leftover_cleanup_touches_only_its_own_temporary_names(tmp_path: Path, record) -> None:
    from quickdraw_dag.runtime.atomic import atomic_directory, write_json_atomic

    target = tmp_path / "out" / "numbers.json"
    target.parent.mkdir()
    mine = target.parent / ".numbers.json.backup.tmp"
    mine.write_text("a user's backup\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    (target.parent / ".processed.abcd1234.old").symlink_to(outside)  # the name of a leftover, but a link
    write_json_atomic(target, {"a": 1})
    with atomic_directory(target.parent / "processed", owns=lambda name: True) as building:
        (building / "x.npy").write_bytes(b"x")
    assert mine.read_text() == "a user's backup\n"
    assert (outside / "keep.txt").read_text() == "keep\n"
    assert not os.path.lexists(target.parent / ".processed.abcd1234.old")  # the link itself was removed
    record(
        "path safety", check="leftover cleanup: exact temporary names, links never followed", exit_2=0, files_changed=0
    )
