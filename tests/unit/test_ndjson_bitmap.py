"""ndjson (simplified, raw) and numpy_bitmap readers: values, streaming, named errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.data.formats import DrawingBatch, find_local_file, iter_drawings, open_bitmaps, validate_file
from quickdraw_dag.data.formats.bitmap import derived_key_ids
from quickdraw_dag.data.formats.ndjson import sniff_ndjson_kind
from quickdraw_dag.errors import DataError


def line(**overrides) -> str:
    record = {
        "word": "cat",
        "countrycode": "SE",
        "timestamp": "2017-03-10 22:17:57.57466 UTC",
        "recognized": True,
        "key_id": "6420579601088512",
        "drawing": [[[0, 10, 255], [5, 6, 7]]],
    }
    record.update(overrides)
    return json.dumps(record)


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{text}\n" for text in lines))
    return path


def test_simplified_values_are_read_exactly(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "cat.ndjson", line(), line(key_id="7", recognized=False, countrycode="US"))
    batch = DrawingBatch.concat(iter_drawings(path, "simplified", category="cat"))
    assert batch.key_id.tolist() == [6420579601088512, 7]
    assert batch.recognized.tolist() == [1, 0]
    assert batch.timestamp[0] == 1489184277  # 2017-03-10 22:17:57 UTC
    assert batch.countrycode_str(0) == "SE" and batch.countrycode_str(1) == "US"
    assert [s[0].tolist() for s in batch.strokes(0)] == [[0, 10, 255]]
    assert batch.origin.tolist() == [0, len(line()) + 1]


def test_real_samples_parse(samples: Path) -> None:
    batch = DrawingBatch.concat(iter_drawings(samples / "simplified" / "bear.ndjson", "simplified"))
    assert len(batch) == 25 and batch.x.max() <= 255 and set(batch.recognized.tolist()) <= {0, 1}
    assert sniff_ndjson_kind(samples / "simplified" / "bear.ndjson") == "simplified"


def test_real_raw_files_are_sniffed_as_raw(shared_raw: Path) -> None:
    assert sniff_ndjson_kind(shared_raw / "raw" / "apple.ndjson") == "raw"
    assert sniff_ndjson_kind(shared_raw / "simplified" / "apple.ndjson") == "simplified"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"word": "cat", "drawing": [', "not valid JSON"),
        ("[1, 2, 3]", "one JSON object"),
        (json.dumps({"word": "cat", "drawing": []}), "missing key(s) ['countrycode', 'timestamp'"),
        (line(drawing=[[[0, 300], [1, 2]]]), "coordinate 300 out of range"),
        (line(drawing=[[[0, -1], [1, 2]]]), "coordinate -1 out of range"),
        (line(drawing=[[[0, 1.5], [1, 2]]]), "coordinate 1.5 out of range"),
        (line(drawing=[[[0, 1], [1]]]), "equal length"),
        (line(drawing=[]), "non-empty list of strokes"),
        (line(key_id="12ab"), "key_id '12ab'"),
        (line(key_id=str(2**64)), "not an unsigned 64-bit"),
        (line(recognized="yes"), "recognized 'yes'"),
        (line(countrycode="USA"), "countrycode 'USA'"),
        (line(timestamp="yesterday"), "timestamp 'yesterday'"),
        (line(word="dog"), "word 'dog' does not match"),
    ],
)
def test_bad_lines_name_file_line_and_offset(tmp_path: Path, bad_line: str, message: str) -> None:
    path = write_lines(tmp_path / "cat.ndjson", line(), line(), bad_line, line())
    with pytest.raises(DataError) as error:
        validate_file(path, "simplified", category="cat")
    assert error.value.line == 3
    assert error.value.offset == 2 * (len(line()) + 1)
    assert str(path) in str(error.value) and "line 3" in str(error.value)
    assert message in str(error.value)


def test_skip_policy_counts_bad_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "cat.ndjson", line(), "{oops", line(key_id="9"), line(drawing=[[[999], [1]]]))
    assert validate_file(path, "simplified", category="cat", on_bad_record="skip") == (2, 2)


def test_raw_lines_are_simplified_on_read(tmp_path: Path) -> None:
    raw = [[[100.5, 300.25, 500.0], [50.0, 50.0, 250.0], [0, 16, 40]]]
    path = write_lines(tmp_path / "cat.ndjson", line(drawing=raw))
    batch = DrawingBatch.concat(iter_drawings(path, "raw"))
    xs, ys = batch.strokes(0)[0]
    # Aligned to the origin, longer side (x: 399.5) scaled to 255, RDP keeps the corner.
    assert xs.tolist() == [0, 128, 255]  # 199.75 * 255 / 399.5 = 127.5, rounds to even
    assert ys.tolist() == [0, 0, 128]
    with pytest.raises(DataError, match="must be 3 lists"):
        validate_file(write_lines(tmp_path / "x.ndjson", line()), "raw")


def save_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=True)
    return path


def test_bitmaps_memory_map_and_validate(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (50, 784), dtype=np.uint8)
    path = save_npy(tmp_path / "full_numpy_bitmap_cat.npy", images)
    mapped = open_bitmaps(path)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, images)
    assert find_local_file(tmp_path, "cat") == (path, "numpy_bitmap")


def test_a_name_with_a_space_is_also_found_spelled_with_underscores(tmp_path: Path) -> None:
    images = np.zeros((3, 784), np.uint8)
    underscored = save_npy(tmp_path / "smiley_face.npy", images)
    assert find_local_file(tmp_path, "smiley face") == (underscored, "numpy_bitmap")
    assert find_local_file(tmp_path, "smiley") is None
    googles = save_npy(tmp_path / "full_numpy_bitmap_smiley face.npy", images)
    assert find_local_file(tmp_path, "smiley face") == (googles, "numpy_bitmap")  # Google's own name first


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 784), np.float32), "dtype must be uint8"),
        (np.zeros((3, 28, 28), np.uint8), "shape must be (N, 784)"),
        (np.array([{"a": 1}, None], dtype=object), "holds Python objects"),
        (np.asfortranarray(np.zeros((3, 784), np.uint8)), "Fortran order"),
    ],
)
def test_bad_bitmaps_are_rejected(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = save_npy(tmp_path / "cat.npy", array)
    with pytest.raises(DataError) as error:
        open_bitmaps(path)
    assert message in str(error.value) and str(path) in str(error.value)
    assert error.value.offset is not None


def test_truncated_bitmap_file_names_the_offset(tmp_path: Path) -> None:
    path = save_npy(tmp_path / "cat.npy", np.zeros((10, 784), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"truncated: header declares 10 bitmaps") as error:
        open_bitmaps(path)
    assert error.value.offset == len(data) - 100
    path.write_bytes(b"not numpy at all")
    with pytest.raises(DataError, match="not a .npy file"):
        open_bitmaps(path)


def test_derived_ids_are_stable_and_distinct() -> None:
    first = derived_key_ids("cat", 1000)
    assert np.array_equal(first[:10], derived_key_ids("cat", 10))
    assert np.array_equal(first[500:], derived_key_ids("cat", 500, start=500))
    assert len(np.unique(first)) == 1000
    assert not np.array_equal(first[:10], derived_key_ids("dog", 10))
