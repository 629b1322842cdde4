"""Stage entry points as DVC runs them: exit codes, messages, nothing half-written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats.binary import encode_binary
from tests.helpers import run_module


def corrupt_dir(tmp_path: Path, name: str, content: bytes) -> Path:
    source = tmp_path / "google"
    source.mkdir(exist_ok=True)
    (source / "circle.bin").write_bytes(encode_binary(synthetic.generate("circle", 20)))
    (source / name).write_bytes(content)
    return source


GOOD_BIN = encode_binary(synthetic.generate("square", 10))
GOOD_LINE = (
    json.dumps(
        {
            "word": "square",
            "countrycode": "US",
            "timestamp": "2017-03-01 10:00:00.1 UTC",
            "recognized": True,
            "key_id": "42",
            "drawing": [[[0, 255], [0, 255]]],
        }
    )
    + "\n"
)


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("file_name", "content", "where"),
    [
        ("square.bin", GOOD_BIN + GOOD_BIN[:40], f"byte offset {len(GOOD_BIN) + 17}"),
        ("square.bin", GOOD_BIN[:-3], "stroke runs past the end"),
        ("full_simplified_square.ndjson", (GOOD_LINE * 3 + '{"word": "square"\n').encode(), "line 4"),
        (
            "full_raw_square.ndjson",
            (GOOD_LINE.replace("[[0, 255], [0, 255]]", "[[0, 255], [0, 255], [0, 1]]") * 2 + "[]\n").encode(),
            "line 3",
        ),
        ("square.npy", npy_bytes(np.zeros((4, 784), np.int64)), "dtype must be uint8"),
        ("square.npy", npy_bytes(np.array([None], dtype=object)), "holds Python objects"),
        ("square.npy", npy_bytes(np.zeros((4, 784), np.uint8))[:-10], "truncated"),
    ],
)
def test_corrupt_input_exits_2_naming_file_and_offset_and_writes_nothing(
    project: Path, tmp_path: Path, file_name: str, content: bytes, where: str
) -> None:
    source = corrupt_dir(tmp_path, file_name, content)
    result = run_module(
        "tasks.fetch", "--set", f"data.source={source}", "--set", "data.categories=[circle, square]", cwd=project
    )
    assert result.returncode == 2, result.stderr
    assert file_name in result.stderr and where in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data").exists()


def test_invalid_params_exit_2_before_anything_is_written(project: Path) -> None:
    result = run_module("tasks.fetch", "--set", "data.categories=[aple, banana]", cwd=project)
    assert result.returncode == 2
    assert "data.categories" in result.stderr and "did you mean 'apple'" in result.stderr
    result = run_module("tasks.split", "--set", "split.fractions.train=0.9", cwd=project)
    assert result.returncode == 2 and "split.fractions" in result.stderr and "sum to 1" in result.stderr
    result = run_module("tasks.split", "--sett", "x=1", cwd=project)
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
    assert not (project / "data").exists()


def test_missing_local_directory_is_a_config_error(project: Path) -> None:
    result = run_module("tasks.fetch", "--set", "data.source=/no/such/dir", cwd=project)
    assert result.returncode == 2 and "data.source" in result.stderr and "/no/such/dir" in result.stderr


def test_split_of_corrupted_raw_data_keeps_the_previous_output(project: Path) -> None:
    args = (
        "--set",
        "data.source=synthetic",
        "--set",
        "data.categories=[circle, line]",
        "--set",
        "fetch.synthetic_drawings=30",
    )
    assert run_module("tasks.fetch", *args, cwd=project).returncode == 0
    assert run_module("tasks.split", *args, cwd=project).returncode == 0
    before = Catalog.under(project).split_summary.read_bytes()
    raw = project / "data/raw/line.bin"
    raw.write_bytes(raw.read_bytes()[:-5])
    result = run_module("tasks.split", *args, cwd=project)
    assert result.returncode == 2 and "line.bin" in result.stderr and "byte offset" in result.stderr
    assert Catalog.under(project).split_summary.read_bytes() == before
    assert sorted(p.name for p in (project / "data").iterdir()) == ["interim", "raw"]


def test_skip_policy_reports_skipped_records(project: Path, tmp_path: Path) -> None:
    source = corrupt_dir(tmp_path, "square.bin", GOOD_BIN + struct.pack("<Q2sBIH", 7, b"US", 9, 0, 0))
    args = (
        "--set",
        f"data.source={source}",
        "--set",
        "data.categories=[circle, square]",
        "--set",
        "data.on_bad_record=skip",
        "--set",
        "split.recognized_only=false",
    )
    assert run_module("tasks.fetch", *args, cwd=project).returncode == 0
    manifest = json.loads(Catalog.under(project).manifest.read_text())
    assert manifest["categories"]["square"]["bad_records"] == 1
    assert manifest["categories"]["square"]["drawings"] == 10
    assert run_module("tasks.split", *args, cwd=project).returncode == 0
    summary = json.loads(Catalog.under(project).split_summary.read_text())
    assert summary["classes"]["square"]["dropped"]["bad_records"] == 1
    assert sum(summary["classes"]["square"]["counts"].values()) == 10


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_bucket_says_so_once_before_the_flow_starts_and_writes_nothing(project: Path) -> None:
    """A host that resolves but does not answer (no route out, a closed port) is offline too: the
    message comes before the Prefect server, the MLflow run or params.yaml are touched."""
    from tests.helpers import tree_digest

    before = tree_digest(project)
    port = closed_port()
    args = ["--set", "data.source=quickdraw", "--set", f"fetch.download.base_url=http://127.0.0.1:{port}/qd/"]
    result = run_module("flows.pipeline", *args, cwd=project, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert output.count(f"cannot reach 127.0.0.1 (127.0.0.1:{port}: connection refused)") == 1, output[-3000:]
    assert "--set data.source=samples/quickdraw" in output and "Traceback" not in output
    assert "temporary server" not in output and "Flow run" not in output  # Prefect never started
    after = {name: data for name, data in tree_digest(project).items() if not name.startswith(".dvc/tmp/")}
    assert after == before  # params.yaml as it was, no MLflow store, no data
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["source"] == "samples/quickdraw"


def test_offline_flow_says_so_once_names_the_sample_and_writes_nothing(project: Path) -> None:
    from tests.helpers import tree_digest

    before = tree_digest(project)
    args = ["--set", "data.source=quickdraw", "--set", "fetch.download.base_url=http://no-such-host.invalid/qd/"]
    result = run_module("flows.pipeline", *args, cwd=project, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert output.count("cannot reach no-such-host.invalid") == 1  # once: not per category task, not again by the flow
    assert "--set data.source=samples/quickdraw" in output and "Traceback" not in output
    after = {name: data for name, data in tree_digest(project).items() if not name.startswith(".dvc/tmp/")}
    assert after == before  # nothing written (DVC's own status cache aside): not even the override into params.yaml
