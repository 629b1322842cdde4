"""Where the docs promise exit 2 with a message, not a traceback: seeds, absurd coordinates, huge images,
two first runs on one MLflow store, unsafe models; and the small things (a BOM, a stale comment).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.helpers import REPO, run_module, set_params
from tests.reliability.faults import TINY_DATA


@pytest.fixture()
def workspace(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    set_params(project, **TINY_DATA)
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize("key", ["train.seed", "tune.seed", "paint.seed", "split.seed", "fetch.synthetic_seed"])
def test_a_seed_beyond_32_bits_is_refused_before_the_flow_saves_it(workspace: Path, key: str, record) -> None:
    before = (workspace / "params.yaml").read_bytes()
    done = run_module("flows.pipeline", "--until", "fetch", "--set", f"{key}=4294967296", cwd=workspace)
    assert done.returncode == 2 and key in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (workspace / "params.yaml").read_bytes() == before  # later runs do not inherit it
    record("clear errors", case=f"{key}=2**32 through the flow", exit_2=1)


def raw_line(xs: list, ys: list) -> str:
    record = {
        "word": "cat",
        "countrycode": "SE",
        "timestamp": "2017-03-01 10:00:00.00000 UTC",
        "recognized": True,
        "key_id": "1",
        "drawing": [[xs, ys, list(range(len(xs)))]],
    }
    return json.dumps(record)


@pytest.mark.parametrize("xs", [[1e308, -1e308, 0.0], [0.0, 1e12, 5.0]], ids=["1e308", "1e12"])
def test_absurd_raw_coordinates_are_a_data_error(tmp_path: Path, xs: list, record) -> None:
    from quickdraw_dag.data.formats import validate_file
    from quickdraw_dag.errors import DataError

    path = tmp_path / "cat.ndjson"
    path.write_text(raw_line(xs, [0.0, 1.0, 2.0]) + "\n")
    with pytest.raises(DataError, match="line 1") as refused:
        validate_file(path, "raw", category="cat")
    assert "cat.ndjson" in str(refused.value) and "coordinate" in str(refused.value)
    record("clear errors", case=f"raw coordinates of ±{max(abs(v) for v in xs):g}", exit_2=1)


def png_header_only(width: int, height: int) -> bytes:
    """A real PNG of `width`×`height` 1-bit pixels, all black: a few KB that decode to megapixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


PAINT_PROBE = """
import sys
from quickdraw_dag.errors import DataError
from quickdraw_dag.painting import load_image
try:
    load_image(sys.argv[1], 100)
    print("decoded")
except DataError as error:
    print("DataError", error)
# VmHWM is this program's peak; ru_maxrss would also count the forking pytest worker (TensorFlow loaded)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("peak_mb", int(hwm.split()[1]) / 1024)
"""


@pytest.mark.parametrize("side", [20_000, 12_000], ids=["400-megapixels", "144-megapixels"])
def test_a_huge_image_is_refused_from_its_header(tmp_path: Path, side: int, record) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(side, side))
    done = subprocess.run(
        [sys.executable, "-c", PAINT_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DataError" in done.stdout and "megapixels" in done.stdout and "huge.png" in done.stdout
    peak_mb = float(done.stdout.split("peak_mb")[-1])
    assert peak_mb < 600  # the 144-megapixel one took 2.45 GB to decode
    record("clear errors", case=f"paint.image of {side * side / 1e6:.0f} Mpx ({path.stat().st_size} bytes)", exit_2=1)


STORE_PROBE = """
import sys, time
from pathlib import Path
from quickdraw_dag.config.schema import MlflowParams
from quickdraw_dag.tracking.store import configure
while not Path(sys.argv[2]).exists():  # start together
    time.sleep(0.01)
print(configure(MlflowParams(tracking_uri=sys.argv[1], experiment="race")))
"""


@pytest.mark.slow
def test_first_runs_at_once_on_a_fresh_mlflow_store_all_succeed(tmp_path: Path, record) -> None:
    uri, go = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", STORE_PROBE, uri, str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    import time

    time.sleep(15)  # every process has imported MLflow and waits
    go.touch()
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    failures = [err.decode()[-300:] for code, _, err in results if code != 0]
    assert failures == []
    assert len({out.strip() for _, out, _ in results}) == 1  # one experiment, the same id for all
    record("clear errors", case="4 first runs at once on a fresh SQLite store", exit_2=0)


def test_an_unsafe_model_is_exit_2_with_our_own_message(workspace: Path, capsys: pytest.CaptureFixture, record) -> None:
    import keras

    import tasks.evaluate
    from quickdraw_dag.artifacts import Catalog

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    target = Catalog.under(workspace).model
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    assert tasks.evaluate.main([]) == 2
    error = capsys.readouterr().err
    assert "refusing to load" in error and "carries code" in error and target.name in error
    assert "safe_mode=False" not in error and "Traceback" not in error
    record("clear errors", case="a .keras file with a Lambda layer as the model", exit_2=1)


def test_an_ndjson_file_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    from quickdraw_dag.data.formats import validate_file
    from quickdraw_dag.data.formats.ndjson import sniff_ndjson_kind

    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + raw_line([0.0, 10.0, 20.0], [0.0, 5.0, 0.0]).encode() + b"\n")
    assert sniff_ndjson_kind(path) == "raw"
    assert validate_file(path, "raw", category="cat") == (1, 0)


def test_a_saved_override_retires_the_comment_that_described_the_old_value(tmp_path: Path) -> None:
    from quickdraw_dag.orchestration.dvc_state import persist_overrides

    path = tmp_path / "params.yaml"
    path.write_bytes((REPO / "params.yaml").read_bytes())
    persist_overrides(path, ["data.categories=[circle, square, star]", "split.max_per_class=50"])
    text = path.read_text()
    assert "The sample's seven categories" not in text
    assert "data.categories: set with --set on" in text and "categories: [circle, square, star]" in text
    # its own remark gives way to the note too (docs/PARAMS.md); the next key's stays
    assert re.search(r"max_per_class: 50 +# split.max_per_class: set with --set on", text)
    assert "keep the first N per class" not in text
    assert re.search(r"min_per_split: 1 +# every class needs this many drawings", text)
