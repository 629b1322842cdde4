"""Flow overrides land in params.yaml (as `dvc exp run -S` does), comments kept, invalid ones refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quickdraw_dag.config.loading import load_params
from quickdraw_dag.errors import ConfigError
from quickdraw_dag.orchestration.dvc_state import persist_overrides
from tests.helpers import REPO


def test_overrides_are_written_and_comments_kept(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    persist_overrides(
        path, ["data.source=synthetic", "data.categories=[circle, line]", "train.epochs=7", "tune.space.filters=[16]"]
    )
    params = load_params(path)
    assert params.data.source == "synthetic" and params.data.categories == ("circle", "line")
    assert params.train.epochs == 7 and params.tune.space.filters == (16,)
    text = path.read_text()
    assert "# QuickDraw DAG parameters" in text and "# early stopping on val_loss" in text


def test_invalid_override_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="train.epochs"):
        persist_overrides(path, ["train.epochs=-1"])
    with pytest.raises(ConfigError, match="unknown key"):
        persist_overrides(path, ["train.epoch=3"])
    assert path.read_bytes() == before
