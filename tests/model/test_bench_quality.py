"""The benchmarks that decide defaults (issue 24): bench.quality's search against the untuned default (the
choice is measured, never assumed), and bench.candidates' epoch-by-epoch scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.candidates import screen
from bench.ceiling import agreement
from bench.ceiling import main as ceiling_main
from bench.quality import run_search, search_table
from quickdraw_dag.artifacts import Catalog, read_categories, read_metrics
from quickdraw_dag.config.schema import SearchSpace
from quickdraw_dag.data.stream import open_split
from quickdraw_dag.errors import DataError
from tests.helpers import REPO, set_params


def test_the_search_is_compared_with_the_default_it_would_replace(tmp_path: Path, tiny_processed: Catalog) -> None:
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, train={"epochs": 1, "batch_size": 32, "max_seconds": None}, tune={"max_seconds": None})
    catalog = Catalog.under(tmp_path)
    shutil.copytree(tiny_processed.processed, catalog.processed)
    default = {**SearchSpace().first_choices(), "filters": 8, "batch_norm": False}
    pipeline = {"hyperparameters": default, "accuracy": 0.123, "wall_s": 200.0}

    # A search that lands on the default: the pipeline's model is its model, so nothing is trained again.
    same = run_search(tmp_path, f"tune.space={{{space(default)}}}", pipeline)
    assert same["chosen"] == default and same["same_as_default"] is True
    assert same["accuracy"] == 0.123 and same["train_s"] == 0.0 and not catalog.model.exists()

    # One that chooses otherwise (dropout 0.2): trained and scored like the pipeline, on the same split.
    other = run_search(tmp_path, f"tune.space={{{space({**default, 'dropout': 0.2})}}}", pipeline)
    assert other["chosen"] == {**default, "dropout": 0.2} and other["same_as_default"] is False
    assert catalog.model.exists() and other["train_s"] > 0
    assert other["accuracy"] == read_metrics(catalog)["accuracy"] and 0.0 <= other["accuracy"] <= 1.0

    rows = search_table({"searches": [{"seed": 0, **same}, {"seed": 1, **other}], "pipeline": [pipeline] * 2})
    share = 100 * same["seconds"] / 200.0
    assert rows[-2] == f"| 0 | the default | {same['seconds']:.0f} | {share:.1f}% | 12.30 / 12.30 |"
    assert rows[-1].startswith("| 1 | dropout=0.2 |") and rows[-1].endswith(f"{100 * other['accuracy']:.2f} / 12.30 |")
    assert search_table({"searches": [], "pipeline": []}) == []  # --search none: no section


def space(point: dict) -> str:
    """A one-point `tune.space` as a YAML flow mapping (one value per hyperparameter)."""
    return ", ".join(
        f"{name}: [{str(value).lower() if isinstance(value, bool) else value}]" for name, value in point.items()
    )


def test_a_candidate_is_scored_after_every_epoch_plain_and_with_test_flips(
    tmp_path: Path, tiny_processed: Catalog
) -> None:
    result = screen(
        tiny_processed,
        {"epochs": 2, "filters": 4, "batch_size": 32, "flip": True, "label_smoothing": 0.1, "head": "gap"},
    )
    points = result["points"]
    assert [p["epoch"] for p in points] == [1, 2] and 0 < points[0]["seconds"] < points[1]["seconds"]
    assert all(0.0 <= p[key] <= 1.0 for p in points for key in ("accuracy", "with_test_flips"))
    assert result["config"]["batch_norm"] is True and result["config"]["head"] == "gap"
    # global pooling: the head sees 16 features whatever the image size, not 3 x 3 x 16
    kept = tmp_path / "candidate-0.npy"
    flatten = screen(tiny_processed, {"epochs": 1, "filters": 4}, save=kept)
    assert result["parameters"] < flatten["parameters"]
    # --save keeps the final test probabilities, rows in test order: their accuracy is the last point's
    probabilities = np.load(kept)
    _, test_labels = open_split(tiny_processed, "test")
    assert probabilities.shape == (len(test_labels), len(read_categories(tiny_processed)))
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert np.mean(probabilities.argmax(1) == test_labels) == flatten["points"][-1]["accuracy"]
    with pytest.raises(SystemExit, match="unknown candidate keys \\['bn'\\]"):
        screen(tiny_processed, {"bn": False})


def test_the_ceiling_counts_what_every_model_misses(
    tmp_path: Path, tiny_processed: Catalog, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = np.array([0, 1, 2, 0, 1])
    sure = np.eye(3)[[0, 1, 2, 1, 2]]  # right on 0-2, wrong on 3 (says 1) and 4 (says 2)
    other = np.eye(3)[[0, 1, 1, 2, 0]]  # wrong on 2 (says 1), 3 (says 2) and 4 (says 0)
    result = agreement([sure, other], labels)
    assert result["each"] == [0.6, 0.4]
    assert result["any_right"] == 0.6 and result["all_wrong"].tolist() == [3, 4]
    # the mean of the two: drawing 2 is a tie of classes 1 and 2, which argmax gives to class 1 (wrong)
    assert result["ensemble"] == 0.4
    with pytest.raises(DataError, match="model 1: 4 rows for 5 test drawings"):
        agreement([sure, other[:4]], labels)

    # The command, on a real processed split: two "models" that are the labels and their neighbours.
    _, test_labels = open_split(tiny_processed, "test")
    classes = len(read_categories(tiny_processed))
    truth = np.eye(classes)[np.asarray(test_labels)]
    shifted = np.eye(classes)[(np.asarray(test_labels) + 1) % classes]
    np.save(tmp_path / "right.npy", truth)
    np.save(tmp_path / "wrong.npy", shifted)
    grid = tmp_path / "missed.png"
    project = tmp_path / "project"
    shutil.copytree(tiny_processed.processed, Catalog.under(project).processed)
    argv = ["bench.ceiling", str(project), str(tmp_path / "right.npy"), str(tmp_path / "wrong.npy")]
    monkeypatch.setattr("sys.argv", [*argv, "--grid", str(grid)])
    ceiling_main()
    printed = capsys.readouterr().out
    count = len(test_labels)
    assert "right.npy: 100.00% (0 wrong)" in printed and f"wrong.npy: 0.00% ({count} wrong)" in printed
    assert f"every model wrong: 0 of {count} (0.00%)" in printed and "some model right: 100.00%" in printed
    assert grid.read_bytes().startswith(b"\x89PNG")
    monkeypatch.setattr("sys.argv", [*argv[:2], str(tmp_path / "wrong.npy"), str(tmp_path / "wrong.npy")])
    ceiling_main()
    assert f"every model wrong: {count} of {count} (100.00%)" in capsys.readouterr().out
