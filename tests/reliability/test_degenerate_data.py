"""Degenerate data stops early: a class with no usable drawings, or too few for a split, exits 2 naming it.

It used to pass fetch and split, train on the classes left, report accuracy
1.0 and register a model; `split.max_per_class=2` left validation empty and
crashed in training ("PyDataset has length 0").
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats.binary import write_binary


def ndjson_lines(category: str, count: int, *, recognized: bool = True, same_key: bool = False) -> bytes:
    batch = synthetic.generate(category, count, 3)
    lines = []
    for i in range(count):
        drawing = [[x.tolist(), y.tolist()] for x, y in batch.strokes(i)]
        record = {
            "word": category,
            "countrycode": "SE",
            "timestamp": "2017-03-01 10:00:00.00000 UTC",
            "recognized": recognized,
            "key_id": "42" if same_key else str(1000 + i),
            "drawing": drawing,
        }
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture()
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of Google's files where `square` is fine; each test writes its own `circle`."""
    folder = tmp_path / "source"
    folder.mkdir()
    buffer = io.BytesIO()
    write_binary(buffer, synthetic.generate("square", 100, 1))
    (folder / "square.bin").write_bytes(buffer.getvalue())
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    monkeypatch.chdir(workspace)
    (workspace / "params.yaml").write_bytes((Path(__file__).parents[2] / "params.yaml").read_bytes())
    return folder


def stage(name: str, source: Path, *extra: str) -> int:
    import importlib

    args = ["--set", f"data.source={source}", "--set", "data.categories=[circle, square]", *extra]
    return importlib.import_module(f"tasks.{name}").main(args)


EMPTY = [
    ("circle.bin", b"", "the file is empty"),
    ("circle.ndjson", b"", "the file is empty"),
    ("circle.npy", None, "the file is empty"),
    ("circle.ndjson", b"\n\n\n", "the file is empty"),
]


@pytest.mark.parametrize("name,content,named", EMPTY, ids=["empty-bin", "empty-ndjson", "zero-row-npy", "blank-lines"])
def test_a_class_file_without_drawings_stops_fetch(
    source: Path, capsys: pytest.CaptureFixture, name: str, content: bytes | None, named: str, record
) -> None:
    if content is None:
        np.save(source / name, np.zeros((0, 784), np.uint8), allow_pickle=False)
    else:
        (source / name).write_bytes(content)
    assert stage("fetch", source) == 2
    error = capsys.readouterr().err
    assert name in error and named in error
    assert not Path("data").exists()
    record("degenerate data", case=f"{name}: {named}", stage="fetch", exit_2=1)


CASES = [
    ("only unrecognized", dict(recognized=False), [], "circle: train 0, val 0, test 0 (dropped: 25 unrecognized)"),
    ("only duplicates", dict(same_key=True), [], "circle: train 1, val 0, test 0 (dropped: 24 duplicates)"),
    ("max_per_class=2", {}, ["--set", "split.max_per_class=2"], "(dropped: 23 over split.max_per_class)"),
]


@pytest.mark.parametrize("name,kind,extra,named", CASES, ids=[c[0] for c in CASES])
def test_too_few_drawings_in_a_split_stops_split_naming_the_class(
    source: Path, capsys: pytest.CaptureFixture, name: str, kind: dict, extra: list, named: str, record
) -> None:
    (source / "circle.ndjson").write_bytes(ndjson_lines("circle", 25, **kind))
    assert stage("fetch", source) == 0
    assert stage("split", source, *extra) == 2
    error = capsys.readouterr().err
    assert named in error and "split.min_per_split=1" in error
    assert not Path("data/interim").exists()
    record("degenerate data", case=name, stage="split", exit_2=1)


def test_the_minimum_is_a_param(source: Path, capsys: pytest.CaptureFixture) -> None:
    (source / "circle.ndjson").write_bytes(ndjson_lines("circle", 25))
    assert stage("fetch", source) == 0
    assert stage("split", source, "--set", "split.min_per_split=3") == 2
    assert "split.min_per_split=3" in capsys.readouterr().err
    assert stage("split", source, "--set", "split.min_per_split=2") == 0
    summary = json.loads(Catalog.under(Path(".")).split_summary.read_text())
    assert min(summary["classes"]["circle"]["counts"].values()) >= 2
