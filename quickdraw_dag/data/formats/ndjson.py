"""Google's ndjson formats: simplified (integers 0-255) and raw (floats, times).

One JSON object per line with `word`, `countrycode`, `timestamp`,
`recognized`, `key_id` (a string) and `drawing`: `[[xs], [ys]]` per stroke
(simplified) or `[[xs], [ys], [ts]]` (raw). Raw drawings are converted with
Google's simplification on the way in, so both yield the same
`DrawingBatch`. Files are streamed line by line, each line read at most
`MAX_LINE_BYTES` (a longer one is a bad record, never held in memory);
every problem is reported with the file, line number and byte offset of
that line. A UTF-8 byte-order mark at the start of a file is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from quickdraw_dag.errors import DataError, excerpt
from quickdraw_dag.data.formats.batch import DrawingBatch
from quickdraw_dag.data.formats.simplify import simplify_drawing

NdjsonKind = Literal["simplified", "raw"]
REQUIRED_KEYS = ("word", "countrycode", "timestamp", "recognized", "key_id", "drawing")
BATCH_DRAWINGS = 8192
MAX_UINT64 = 2**64 - 1
MAX_UINT32 = 2**32 - 1
# The longest raw drawing among the real samples is a 26 KB line; Google's simplified ones are smaller.
MAX_LINE_BYTES = 2 << 20
# Raw coordinates are screen pixels; beyond this, scaling to the 255-pixel box loses every detail anyway.
MAX_RAW_COORDINATE = 1e9
BOM = b"\xef\xbb\xbf"


class _BadRecord(ValueError):
    """A record-level problem; the reader adds file, line and offset."""


def bounded_lines(handle: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, byte offset, line) per line; the line is None when longer than `limit` (skipped unread).

    A UTF-8 byte-order mark at the start of the file is not part of line 1.
    """
    offset = 0
    if handle.read(len(BOM)) == BOM:
        offset = len(BOM)
    else:
        handle.seek(0)
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        start = offset
        offset += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # the rest of the long line, a block at a time
                line = handle.readline(1 << 20)
                offset += len(line)
            yield number, start, None
        else:
            yield number, start, line


def sniff_ndjson_kind(path: str | Path) -> NdjsonKind:
    """'raw' if the first drawing's strokes carry times, else 'simplified'."""
    with open(path, "rb") as handle:
        for number, offset, line in bounded_lines(handle):
            if line is None:
                raise DataError(f"line longer than {MAX_LINE_BYTES} bytes", path=path, line=number, offset=offset)
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                stroke = record["drawing"][0]
            except orjson.JSONDecodeError as error:
                raise DataError(
                    f"first record is not valid JSON ({error.msg}): not a Quick, Draw! ndjson file",
                    path=path,
                    line=number,
                    offset=offset,
                ) from None
            except (KeyError, IndexError, TypeError):
                raise DataError(
                    "first record has no 'drawing' list of strokes: not a Quick, Draw! ndjson drawing",
                    path=path,
                    line=number,
                    offset=offset,
                ) from None
            return "raw" if isinstance(stroke, list) and len(stroke) == 3 else "simplified"
    return "simplified"


def iter_ndjson(
    path: str | Path,
    kind: NdjsonKind,
    *,
    category: str | None = None,
    on_bad_record: Literal["fail", "skip"] = "fail",
    stats: dict[str, int] | None = None,
) -> Iterator[DrawingBatch]:
    """Stream batches of drawings from a simplified or raw ndjson file."""
    if stats is not None:
        stats.setdefault("skipped", 0)
    rows: dict[str, list[Any]] = _empty_rows()
    with open(path, "rb") as handle:
        for number, line_offset, line in bounded_lines(handle):
            if line is not None and not line.strip():
                continue
            try:
                if line is None:
                    raise _BadRecord(f"line longer than {MAX_LINE_BYTES} bytes: not a drawing")
                _parse_record(line, kind, category, rows, origin=line_offset)
            except _BadRecord as problem:
                if on_bad_record == "skip":
                    if stats is not None:
                        stats["skipped"] += 1
                    continue
                raise DataError(str(problem), path=path, line=number, offset=line_offset) from None
            if len(rows["key_id"]) >= BATCH_DRAWINGS:
                yield _to_batch(rows)
                rows = _empty_rows()
    if rows["key_id"]:
        yield _to_batch(rows)


def read_record(line: bytes, kind: NdjsonKind, category: str | None = None) -> list[tuple[Any, Any]]:
    """One ndjson line checked exactly as `iter_ndjson` checks each of a file's lines; its simplified drawing.

    ValueError with the reader's reason when the reader would refuse it (the drawing page checks
    a drawing with this before saving it, so what it saves can always be read back and trained on).
    """
    if len(line) > MAX_LINE_BYTES:
        raise _BadRecord(f"line longer than {MAX_LINE_BYTES} bytes: not a drawing")
    rows = _empty_rows()
    _parse_record(line, kind, category, rows, origin=0)
    return rows["drawing"][0]


def _empty_rows() -> dict[str, list[Any]]:
    return {k: [] for k in ("drawing", "key_id", "countrycode", "recognized", "timestamp", "origin")}


def _to_batch(rows: dict[str, list[Any]]) -> DrawingBatch:
    batch = DrawingBatch.from_drawings(
        rows["drawing"], rows["key_id"], rows["countrycode"], rows["recognized"], rows["timestamp"]
    )
    batch.origin[:] = rows["origin"]
    return batch


def _parse_record(line: bytes, kind: NdjsonKind, category: str | None, rows: dict[str, list[Any]], origin: int) -> None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise _BadRecord(f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise _BadRecord("a line must hold one JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise _BadRecord(f"missing key(s) {missing}")
    if category is not None and record["word"] != category:
        raise _BadRecord(f"word {excerpt(record['word'])} does not match the file's category {category!r}")
    strokes = _strokes(record["drawing"], kind)
    try:
        drawing = simplify_drawing(strokes) if kind == "raw" else strokes
    except ValueError as error:
        raise _BadRecord(str(error)) from None
    rows["drawing"].append(drawing)
    rows["key_id"].append(_key_id(record["key_id"]))
    rows["countrycode"].append(_countrycode(record["countrycode"]))
    rows["recognized"].append(_recognized(record["recognized"]))
    rows["timestamp"].append(_timestamp(record["timestamp"]))
    rows["origin"].append(origin)


def _strokes(drawing: Any, kind: NdjsonKind) -> list[tuple[list, list]]:
    if not isinstance(drawing, list) or not drawing:
        raise _BadRecord("'drawing' must be a non-empty list of strokes")
    arrays = 3 if kind == "raw" else 2
    strokes = []
    for index, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) != arrays:
            raise _BadRecord(f"stroke {index} must be {arrays} lists ({'x, y, t' if arrays == 3 else 'x, y'})")
        xs, ys = stroke[0], stroke[1]
        if not (isinstance(xs, list) and isinstance(ys, list)) or not xs or len(xs) != len(ys):
            raise _BadRecord(f"stroke {index}: x and y must be non-empty lists of equal length")
        if kind == "raw":
            times = stroke[2]
            if not isinstance(times, list) or len(times) != len(xs):
                raise _BadRecord(f"stroke {index}: t must be a list as long as x")
            for value in (*xs, *ys):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise _BadRecord(f"stroke {index}: coordinate {excerpt(value)} is not a finite number")
                if abs(value) > MAX_RAW_COORDINATE:
                    raise _BadRecord(f"stroke {index}: coordinate {excerpt(value)} is beyond ±{MAX_RAW_COORDINATE:g}")
        else:
            for value in (*xs, *ys):
                if type(value) is not int or not 0 <= value <= 255:
                    raise _BadRecord(f"stroke {index}: coordinate {excerpt(value)} out of range (integers 0-255)")
        strokes.append((xs, ys))
    return strokes


def _key_id(value: Any) -> int:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isdigit() or int(text) > MAX_UINT64:
        raise _BadRecord(f"key_id {excerpt(value)} is not an unsigned 64-bit integer")
    return int(text)


def _countrycode(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 2 or not value.isascii():
        raise _BadRecord(f"countrycode {excerpt(value)} must be at most 2 ASCII characters")
    return value


def _recognized(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _BadRecord(f"recognized {excerpt(value)} must be true or false")
    return value


def _timestamp(value: Any) -> int:
    """'2017-03-10 22:17:57.57466 UTC' (or epoch seconds) → uint32 seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        text = value.removesuffix(" UTC").strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _BadRecord(f"timestamp {excerpt(value)} is not 'YYYY-MM-DD HH:MM:SS[.ffffff] UTC'") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = int(moment.timestamp())
    else:
        raise _BadRecord(f"timestamp {excerpt(value)} must be a string or an integer")
    if not 0 <= seconds <= MAX_UINT32:
        raise _BadRecord(f"timestamp {excerpt(value)} is outside the uint32 range of the binary format")
    return seconds
