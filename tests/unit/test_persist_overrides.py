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


def test_a_set_value_s_own_comment_and_its_continuation_give_way_to_a_note(tmp_path: Path) -> None:
    import time

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    before = path.read_text().splitlines()
    persist_overrides(path, ["train.epochs=20", "train.max_steps=100", "tune.space.filters=[16]"])
    after = path.read_text().splitlines()
    today = time.strftime("%Y-%m-%d")
    assert f"  epochs: 20                # train.epochs: set with --set on {today}" in after
    assert f"  max_steps: 100            # train.max_steps: set with --set on {today}" in after
    assert f"    filters: [16]           # tune.space.filters: set with --set on {today}" in after
    # the reasons for the replaced values are gone, continuation lines included; the neighbours' stay
    text = "\n".join(after)
    assert "still rising at 15" not in text and "40,000 drawings in 11.5 min" not in text
    assert "the seed's space, for a GPU" not in text
    assert "  batch_size: 128" in after and "# fixed: 3-epoch trials rank rates" in text
    assert len(before) - len(after) == 2  # two continuation lines removed, nothing else
    assert load_params(path).train.max_steps == 100
