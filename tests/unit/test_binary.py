"""Google's binary format: exact round trip, quickdraw compatibility, named corruption."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quickdraw import QuickDrawDataGroup

from quickdraw_dag.data.formats import DrawingBatch, read_binary
from quickdraw_dag.data.formats.binary import encode_binary, iter_binary
from quickdraw_dag.errors import DataError

coordinate = st.integers(0, 255)
stroke = st.integers(1, 20).flatmap(
    lambda n: st.tuples(st.lists(coordinate, min_size=n, max_size=n), st.lists(coordinate, min_size=n, max_size=n))
)
drawing = st.lists(stroke, min_size=1, max_size=6)


def record(key: int, strokes: list[tuple[list[int], list[int]]], recognized: int = 1, cc: bytes = b"US") -> bytes:
    """One record written by hand from the documented layout (independent of our writer)."""
    out = struct.pack("<Q2sBIH", key, cc, recognized, 1490000000, len(strokes))
    for xs, ys in strokes:
        out += struct.pack("<H", len(xs)) + bytes(xs) + bytes(ys)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(drawing, min_size=1, max_size=30), st.integers(0, 2**64 - 1))
def test_round_trip_is_exact(drawings: list, first_key: int) -> None:
    keys = [(first_key + i) % 2**64 for i in range(len(drawings))]
    batch = DrawingBatch.from_drawings(
        drawings, key_ids=keys, countrycodes=["GB"] * len(drawings), timestamps=[1490000000] * len(drawings)
    )
    data = encode_binary(batch)
    assert data == b"".join(record(k, d, cc=b"GB") for k, d in zip(keys, drawings))
    back = read_binary(io.BytesIO(data))
    assert back.equals(batch)
    assert encode_binary(back) == data


def test_small_blocks_give_the_same_drawings() -> None:
    drawings = [[([i % 256, 3], [4, 5]), ([1] * (i + 1), [2] * (i + 1))] for i in range(300)]
    data = encode_binary(DrawingBatch.from_drawings(drawings))
    whole = read_binary(io.BytesIO(data))
    pieces = DrawingBatch.concat(iter_binary(io.BytesIO(data), block_bytes=64))
    assert pieces.equals(whole) and len(whole) == 300
    assert whole.strokes(299)[1][0].tolist() == [1] * 300


def test_quickdraw_package_reads_what_we_write(tmp_path: Path, samples: Path) -> None:
    from quickdraw_dag.data.formats import iter_drawings

    batch = DrawingBatch.concat(iter_drawings(samples / "simplified" / "bear.ndjson", "simplified"))
    (tmp_path / "bear.bin").write_bytes(encode_binary(batch))
    group = QuickDrawDataGroup("bear", max_drawings=None, cache_dir=str(tmp_path), print_messages=False)
    assert group.drawing_count == len(batch) == 25
    for index in (0, 7, 24):
        theirs = group.get_drawing(index)
        assert theirs.key_id == int(batch.key_id[index])
        assert theirs.recognized == int(batch.recognized[index])
        code = theirs.countrycode
        code = code.decode() if isinstance(code, bytes) else code
        assert code.rstrip("\0") == batch.countrycode_str(index)
        ours = [(tuple(x.tolist()), tuple(y.tolist())) for x, y in batch.strokes(index)]
        assert theirs.image_data == ours


GOOD = record(1, [([1, 2], [3, 4])]) + record(2, [([5], [6]), ([7, 8, 9], [1, 2, 3])])


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (GOOD + record(3, [([1], [1])])[:10], len(GOOD), "truncated record"),
        (GOOD + record(3, [([1, 2, 3], [1, 2, 3])])[:-2], len(GOOD) + 17, "stroke runs past the end"),
        (GOOD + record(3, [([1], [1])])[:18], len(GOOD) + 17, "inside a stroke's n_points"),
        (GOOD + record(3, [([1], [1])], recognized=7), len(GOOD) + 10, "recognized flag must be 0 or 1 (got 7)"),
        (GOOD + struct.pack("<Q2sBIH", 3, b"US", 1, 0, 0), len(GOOD) + 15, "0 strokes"),
        (GOOD + struct.pack("<Q2sBIHH", 3, b"US", 1, 0, 1, 0), len(GOOD) + 17, "0 points"),
    ],
)
def test_corruption_names_file_and_offset(tmp_path: Path, data: bytes, offset: int, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    with pytest.raises(DataError) as error:
        read_binary(path)
    assert error.value.offset == offset
    assert str(path) in str(error.value) and f"byte offset {offset}" in str(error.value)
    assert message in str(error.value)


def test_huge_point_count_in_tiny_file_does_not_allocate(tmp_path: Path) -> None:
    path = tmp_path / "liar.bin"
    path.write_bytes(struct.pack("<Q2sBIHH", 1, b"US", 1, 0, 1, 65535) + bytes(83))
    with pytest.raises(DataError, match="declares 65535 points"):
        read_binary(path)


def test_skip_policy_counts_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "mixed.bin"
    bad = record(9, [([1], [1])], recognized=5)
    path.write_bytes(GOOD + bad + record(3, [([1], [2])]) + record(4, [([1, 2], [1, 2])])[:-1])
    stats: dict[str, int] = {}
    batch = DrawingBatch.concat(iter_binary(path, on_bad_record="skip", stats=stats))
    assert batch.key_id.tolist() == [1, 2, 3]
    assert stats["skipped"] == 2  # the bad flag and the cut-off last record


def test_empty_file_has_no_drawings(tmp_path: Path) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    assert len(read_binary(tmp_path / "empty.bin")) == 0


def test_take_selects_whole_drawings() -> None:
    batch = DrawingBatch.from_drawings(
        [[([1], [1])], [([2, 2], [2, 2]), ([3], [3])], [([4, 4, 4], [4, 4, 4])]], key_ids=[10, 20, 30]
    )
    picked = batch.take(np.array([2, 0]))
    assert picked.key_id.tolist() == [30, 10]
    assert [s[0].tolist() for s in picked.strokes(0)] == [[4, 4, 4]]
    assert [s[0].tolist() for s in picked.strokes(1)] == [[1]]
