"""Invalid params.yaml variants: each exits with code 2 naming the key, before any output is touched."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from quickdraw_dag.artifacts import PAINT_PIPELINE, Catalog
from tests.helpers import REPO
from tests.helpers import tree_digest as full_digest

DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())
PAINT_DEFAULT = yaml.safe_load((REPO / PAINT_PIPELINE / "params.yaml").read_text())
DROP = object()

# (id, dotted key, value, what the message must name)
VARIANTS: list[tuple[str, str, Any, str]] = [
    ("categories-not-a-list", "data.categories", "apple", "data.categories"),
    ("categories-empty", "data.categories", [], "data.categories"),
    ("category-unknown", "data.categories", ["aple", "banana"], "did you mean 'apple'"),
    ("category-repeated", "data.categories", ["apple", "apple"], "data.categories"),
    ("category-traversal", "data.categories", ["../../etc/passwd", "apple"], "data.categories"),
    ("source-wrong-type", "data.source", 42, "data.source"),
    ("bad-record-policy", "data.on_bad_record", "ignore", "data.on_bad_record"),
    ("unknown-key", "data.colour", "red", "data.colour"),
    ("unknown-section", "trian", {"epochs": 3}, "trian"),
    ("fractions-sum", "split.fractions.train", 0.9, "split.fractions"),
    ("fraction-negative", "split.fractions.val", -0.1, "split.fractions.val"),
    ("fraction-above-one", "split.fractions.test", 1.5, "split.fractions.test"),
    ("max-per-class-negative", "split.max_per_class", -5, "split.max_per_class"),
    ("seed-not-int", "split.seed", "zero", "split.seed"),
    ("image-size-negative", "preprocess.image_size", -28, "preprocess.image_size"),
    ("image-size-zero", "preprocess.image_size", 0, "preprocess.image_size"),
    ("line-width-negative", "preprocess.line_width", -1.0, "preprocess.line_width"),
    ("scaling-unknown", "preprocess.scaling", "log", "preprocess.scaling"),
    ("workers-retired", "preprocess.workers", 2, "QUICKDRAW_WORKERS"),
    ("tune-epochs-zero", "tune.max_epochs", 0, "tune.max_epochs"),
    ("tune-filters-empty", "tune.space.filters", [], "tune.space.filters"),
    ("tune-lr-negative", "tune.space.learning_rate", [-0.1], "tune.space.learning_rate"),
    ("tune-activation-unknown", "tune.space.activation", ["sigmoidal"], "tune.space.activation"),
    ("tune-fraction-above-one", "tune.train_fraction", 1.5, "tune.train_fraction"),
    ("train-epochs-negative", "train.epochs", -1, "train.epochs"),
    ("train-batch-zero", "train.batch_size", 0, "train.batch_size"),
    ("augment-rotation-huge", "train.augment.rotation", 5, "train.augment.rotation"),
    ("evaluate-batch-zero", "evaluate.batch_size", 0, "evaluate.batch_size"),
    ("cron-out-of-range", "schedule.cron", "61 * * * *", "schedule.cron"),
    ("cron-impossible", "schedule.cron", "0 0 30 2 *", "schedule.cron"),
    ("cron-four-fields", "schedule.cron", "0 3 * *", "schedule.cron"),
    ("timezone-unknown", "schedule.timezone", "Mars/Olympus_Mons", "schedule.timezone"),
    ("path-absolute-outside", "paths.raw", "/etc", "paths.raw"),
    ("path-traversal", "paths.processed", "../outside", "paths.processed"),
    ("timeout-zero", "fetch.download.timeout_s", 0, "fetch.download.timeout_s"),
    ("local-format-unknown", "fetch.local_format", "jpeg", "fetch.local_format"),
    ("paint-moved-out", "paint.epochs", 3, "paint/params.yaml"),  # the paint pipeline has its own params file
    ("experiment-empty", "mlflow.experiment", "", "mlflow.experiment"),
    ("section-missing", "data", DROP, "data"),
    ("source-not-a-directory", "data.source", "/etc/hostname", "data.source"),
]


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file but the workspace lock (taken before a stage looks at its data source)."""
    return {name: data for name, data in full_digest(root).items() if name != ".quickdraw.lock"}


def set_key(params: dict, key: str, value: Any) -> dict:
    params = copy.deepcopy(params)
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return params


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace holding outputs of an earlier run, which a bad config must not touch."""
    layout = Catalog.under(tmp_path)
    for path in (layout.manifest, layout.split_summary, layout.model):
        path.parent.mkdir(parents=True)
        path.write_text('{"earlier": "run"}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_fetch(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    import tasks.fetch

    code = tasks.fetch.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name,key,value,named", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_invalid_params_exit_2_naming_the_key(
    workspace: Path, capsys: pytest.CaptureFixture, name: str, key: str, value: Any, named: str, record
) -> None:
    (workspace / "params.yaml").write_text(yaml.safe_dump(set_key(DEFAULT, key, value), sort_keys=False))
    before = tree_digest(workspace)
    code, error = run_fetch(["--params", "params.yaml"], capsys)
    assert code == 2, error
    assert named in error and "Traceback" not in error
    assert tree_digest(workspace) == before  # nothing written, nothing removed
    record(
        "invalid params",
        variants=1,
        exit_2=int(code == 2),
        key_named=int(named in error),
        outputs_touched=int(tree_digest(workspace) != before),
    )


# The paint pipeline's own params file (paint/params.yaml), through its stage command.
PAINT_VARIANTS: list[tuple[str, str, Any, str]] = [
    ("paint-side-zero", "paint.longest_side", 0, "paint.longest_side"),
    ("paint-mode-unknown", "paint.mode", "segmentation", "paint.mode"),
    ("paint-sample-traversal", "paint.image", "matplotlib:../../etc/passwd", "paint.image"),
    ("paint-reports-outside", "paths.reports", "../reports", "paths.reports"),
    ("paint-experiment-empty", "mlflow.experiment", "", "mlflow.experiment"),
    ("paint-doodle-section", "data", {"categories": ["apple", "cat"]}, "data"),
]


@pytest.mark.parametrize("name,key,value,named", PAINT_VARIANTS, ids=[v[0] for v in PAINT_VARIANTS])
def test_invalid_paint_params_exit_2_naming_the_key(
    workspace: Path, capsys: pytest.CaptureFixture, name: str, key: str, value: Any, named: str, record
) -> None:
    import tasks.paint

    (workspace / "params.yaml").write_text(yaml.safe_dump(set_key(PAINT_DEFAULT, key, value), sort_keys=False))
    before = tree_digest(workspace)
    code = tasks.paint.main(["--params", "params.yaml"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert named in error and "Traceback" not in error
    assert tree_digest(workspace) == before
    record("invalid params", variants=1, exit_2=int(code == 2), key_named=int(named in error), outputs_touched=0)


@pytest.mark.parametrize(
    "text,named",
    [
        ("data: [unclosed\n", "params.yaml"),
        ("- just\n- a list\n", "params.yaml"),
    ],
)
def test_unparseable_params_files_exit_2(
    workspace: Path, capsys: pytest.CaptureFixture, text: str, named: str, record
) -> None:
    (workspace / "params.yaml").write_text(text)
    before = tree_digest(workspace)
    code, error = run_fetch(["--params", "params.yaml"], capsys)
    assert code == 2 and named in error
    assert tree_digest(workspace) == before
    record("invalid params", variants=1, exit_2=int(code == 2), key_named=1, outputs_touched=0)


def test_overrides_and_missing_files_exit_2(workspace: Path, capsys: pytest.CaptureFixture, record) -> None:
    (workspace / "params.yaml").write_text(yaml.safe_dump(DEFAULT, sort_keys=False))
    before = tree_digest(workspace)
    cases = [
        (["--set", "paths.raw=../../../tmp/evil"], "paths.raw"),
        (["--set", "data.categories=[apple, ../secrets]"], "data.categories"),
        (["--set", "train.epoch=3"], "did you mean 'train.epochs'"),
        (["--set", "no-equals-sign"], "key.path=value"),
        (["--params", "missing.yaml"], "missing.yaml"),
    ]
    for argv, named in cases:
        code, error = run_fetch(argv, capsys)
        assert code == 2 and named in error, (argv, error)
    assert tree_digest(workspace) == before
    assert not os.path.exists(workspace.parent / "tmp")
    record("invalid params", variants=len(cases), exit_2=len(cases), key_named=len(cases), outputs_touched=0)
