"""The benchmarks that decide defaults (issue 24): bench.quality's search against the untuned default (the
choice is measured, never assumed), and bench.candidates' epoch-by-epoch scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.candidates import screen
from bench.quality import run_search, search_table
from quickdraw_dag.artifacts import Catalog, read_metrics
from quickdraw_dag.config.schema import SearchSpace
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


def test_a_candidate_is_scored_after_every_epoch_plain_and_with_test_flips(tiny_processed: Catalog) -> None:
    result = screen(
        tiny_processed,
        {"epochs": 2, "filters": 4, "batch_size": 32, "flip": True, "label_smoothing": 0.1, "head": "gap"},
    )
    points = result["points"]
    assert [p["epoch"] for p in points] == [1, 2] and 0 < points[0]["seconds"] < points[1]["seconds"]
    assert all(0.0 <= p[key] <= 1.0 for p in points for key in ("accuracy", "with_test_flips"))
    assert result["config"]["batch_norm"] is True and result["config"]["head"] == "gap"
    # global pooling: the head sees 16 features whatever the image size, not 3 x 3 x 16
    assert result["parameters"] < screen(tiny_processed, {"epochs": 1, "filters": 4})["parameters"]
    with pytest.raises(SystemExit, match="unknown candidate keys \\['bn'\\]"):
        screen(tiny_processed, {"bn": False})
