"""Google's binary `.bin` format: a fast streaming reader and an exact writer.

Layout of one record (little-endian), from the dataset's documentation:

    key_id uint64 | countrycode 2 bytes | recognized uint8 | timestamp uint32
    | n_strokes uint16 | per stroke: n_points uint16, n_points x uint8,
    n_points y uint8

The reader reads fixed-size blocks and parses every whole record in a block
with one compiled loop (numba) straight into a columnar `DrawingBatch`; a
record cut by the block boundary is carried into the next block. Every length
is checked against the bytes actually present before anything is allocated,
so a corrupt count can neither read past the end nor allocate for points that
are not there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import numba
import numpy as np

from quickdraw_dag.errors import DataError
from quickdraw_dag.data.formats.batch import DrawingBatch

HEADER_BYTES = 17  # key_id 8 + countrycode 2 + recognized 1 + timestamp 4 + n_strokes 2
MIN_RECORD_BYTES = HEADER_BYTES + 2 + 2  # one stroke of one point
DEFAULT_BLOCK_BYTES = 8 << 20

# Error codes returned by the compiled parser (0 means no error).
_OK, _TRUNCATED_HEADER, _TRUNCATED_STROKE_COUNT, _STROKE_PAST_END = 0, 1, 2, 3
_NO_STROKES, _NO_POINTS, _BAD_RECOGNIZED = 4, 5, 6
_MESSAGES = {
    _TRUNCATED_HEADER: "truncated record: {value} bytes left, a record header needs 17",
    _TRUNCATED_STROKE_COUNT: "truncated record: the file ends inside a stroke's n_points field",
    _STROKE_PAST_END: "stroke runs past the end of the file: it declares {value} points",
    _NO_STROKES: "record declares 0 strokes",
    _NO_POINTS: "stroke declares 0 points",
    _BAD_RECOGNIZED: "recognized flag must be 0 or 1 (got {value})",
}


@numba.njit(cache=True, nogil=True)
def _u16(buf, pos):  # pragma: no cover - compiled
    return np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)


@numba.njit(cache=True, nogil=True)
def _parse_block(buf, final, skip_bad):  # pragma: no cover - compiled
    """Parse whole records of `buf`.

    Returns (n, n_strokes, n_points, consumed, skipped, err, err_at, err_value,
    record_start, key, cc, rec, ts, stroke_start, point_start, xs, ys). On error
    parsing stops at the offending record; `consumed` is where it begins.
    """
    size = buf.shape[0]
    max_records = size // MIN_RECORD_BYTES + 1
    max_strokes = size // 4 + 1
    max_points = size // 2 + 1
    record_start = np.empty(max_records, np.int64)
    key = np.empty(max_records, np.uint64)
    cc = np.empty((max_records, 2), np.uint8)
    rec = np.empty(max_records, np.uint8)
    ts = np.empty(max_records, np.uint32)
    stroke_start = np.empty(max_records + 1, np.int64)
    point_start = np.empty(max_strokes + 1, np.int64)
    xs = np.empty(max_points, np.uint8)
    ys = np.empty(max_points, np.uint8)
    stroke_start[0] = 0
    point_start[0] = 0
    n = 0
    s = 0
    p = 0
    pos = 0
    skipped = 0
    err = 0
    err_at = 0
    err_value = 0
    while pos < size:
        start = pos
        if size - pos < HEADER_BYTES:
            if final:
                err = _TRUNCATED_HEADER
                err_at = pos
                err_value = size - pos
            break
        n_strokes = _u16(buf, pos + 15)
        recognized = buf[pos + 10]
        q = pos + HEADER_BYTES
        s0 = s
        p0 = p
        complete = True
        bad = 0
        bad_at = 0
        bad_value = 0
        if n_strokes == 0:
            bad = _NO_STROKES
            bad_at = pos + 15
        elif recognized > 1:
            bad = _BAD_RECOGNIZED
            bad_at = pos + 10
            bad_value = recognized
        for _ in range(n_strokes):
            if size - q < 2:
                complete = False
                if final:
                    err = _TRUNCATED_STROKE_COUNT
                    err_at = q
                break
            n_points = _u16(buf, q)
            if size - q - 2 < 2 * n_points:
                complete = False
                if final:
                    err = _STROKE_PAST_END
                    err_at = q
                    err_value = n_points
                break
            if n_points == 0 and bad == 0:
                bad = _NO_POINTS
                bad_at = q
            for k in range(n_points):
                xs[p + k] = buf[q + 2 + k]
                ys[p + k] = buf[q + 2 + n_points + k]
            p += n_points
            s += 1
            point_start[s] = p
            q += 2 + 2 * n_points
        if not complete:
            s = s0
            p = p0
            if final and skip_bad:
                # A cut-off last record cannot be resynchronised: drop it.
                skipped += 1
                err = 0
                pos = size
            break
        if bad != 0:
            if skip_bad:
                s = s0
                p = p0
                skipped += 1
                pos = q
                continue
            err = bad
            err_at = bad_at
            err_value = bad_value
            s = s0
            p = p0
            break
        record_start[n] = start
        key_id = np.uint64(0)
        for b in range(8):
            key_id |= np.uint64(buf[start + b]) << np.uint64(8 * b)
        key[n] = key_id
        cc[n, 0] = buf[start + 8]
        cc[n, 1] = buf[start + 9]
        rec[n] = recognized
        ts[n] = np.uint32(
            np.int64(buf[start + 11])
            | (np.int64(buf[start + 12]) << 8)
            | (np.int64(buf[start + 13]) << 16)
            | (np.int64(buf[start + 14]) << 24)
        )
        n += 1
        stroke_start[n] = s
        pos = q
    return (
        n,
        s,
        p,
        pos,
        skipped,
        err,
        err_at,
        err_value,
        record_start,
        key,
        cc,
        rec,
        ts,
        stroke_start,
        point_start,
        xs,
        ys,
    )


def iter_binary(
    source: str | Path | BinaryIO,
    *,
    on_bad_record: Literal["fail", "skip"] = "fail",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    stats: dict[str, int] | None = None,
) -> Iterator[DrawingBatch]:
    """Stream `DrawingBatch`es from a `.bin` file, one per block read.

    Raises `DataError` naming the file and byte offset of the first bad record;
    with `on_bad_record="skip"` bad records are dropped and counted in
    `stats["skipped"]` instead (a record cut off at the end of the file counts
    as one).
    """
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    # a path is opened here and closed in `finally`; a stream belongs to the caller
    handle = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115
    skip_bad = on_bad_record == "skip"
    if stats is not None:
        stats.setdefault("skipped", 0)
    try:
        carry = b""
        base = 0  # file offset of carry[0]
        size = block_bytes
        while True:
            chunk = handle.read(size)
            at_end = not chunk
            data = carry + chunk if carry else chunk
            if not data:
                return
            buf = np.frombuffer(data, np.uint8)
            result = _parse_block(buf, at_end, skip_bad)
            (
                n,
                n_strokes,
                n_points,
                consumed,
                skipped,
                err,
                err_at,
                err_value,
                record_start,
                key,
                cc,
                rec,
                ts,
                stroke_start,
                point_start,
                xs,
                ys,
            ) = result
            if stats is not None:
                stats["skipped"] += int(skipped)
            if n:
                yield DrawingBatch(
                    key_id=key[:n].copy(),
                    countrycode=cc[:n].copy(),
                    recognized=rec[:n].copy(),
                    timestamp=ts[:n].copy(),
                    stroke_start=stroke_start[: n + 1].copy(),
                    point_start=point_start[: n_strokes + 1].copy(),
                    x=xs[:n_points].copy(),
                    y=ys[:n_points].copy(),
                    origin=record_start[:n] + base,
                )
            if err:
                message = _MESSAGES[err].format(value=int(err_value))
                raise DataError(message, path=name, offset=base + int(err_at))
            if at_end:
                return
            carry = data[consumed:]
            base += consumed
            # A record longer than a block: read more before parsing again.
            size = block_bytes if n else max(size * 2, len(carry))
    finally:
        if isinstance(source, (str, Path)):
            handle.close()


def read_binary(source: str | Path | BinaryIO, **kwargs) -> DrawingBatch:
    """Read a whole `.bin` file into one batch (small files and tests)."""
    return DrawingBatch.concat(iter_binary(source, **kwargs))


@numba.njit(cache=True, nogil=True)
def _encode(key, cc, rec, ts, stroke_start, point_start, xs, ys):  # pragma: no cover
    n = key.shape[0]
    n_strokes = point_start.shape[0] - 1
    total = n * HEADER_BYTES + 2 * n_strokes + 2 * xs.shape[0]
    out = np.empty(total, np.uint8)
    pos = 0
    for i in range(n):
        k = key[i]
        for b in range(8):
            out[pos + b] = np.uint8((k >> np.uint64(8 * b)) & np.uint64(0xFF))
        out[pos + 8] = cc[i, 0]
        out[pos + 9] = cc[i, 1]
        out[pos + 10] = rec[i]
        t = np.int64(ts[i])
        for b in range(4):
            out[pos + 11 + b] = np.uint8((t >> (8 * b)) & 0xFF)
        count = stroke_start[i + 1] - stroke_start[i]
        out[pos + 15] = np.uint8(count & 0xFF)
        out[pos + 16] = np.uint8((count >> 8) & 0xFF)
        pos += HEADER_BYTES
        for s in range(stroke_start[i], stroke_start[i + 1]):
            a = point_start[s]
            m = point_start[s + 1] - a
            out[pos] = np.uint8(m & 0xFF)
            out[pos + 1] = np.uint8((m >> 8) & 0xFF)
            for k2 in range(m):
                out[pos + 2 + k2] = xs[a + k2]
                out[pos + 2 + m + k2] = ys[a + k2]
            pos += 2 + 2 * m
    return out


def encode_binary(batch: DrawingBatch) -> bytes:
    """The exact `.bin` bytes of `batch` (inverse of the reader)."""
    if len(batch) == 0:
        return b""
    strokes_per_drawing = np.diff(batch.stroke_start)
    points_per_stroke = np.diff(batch.point_start)
    if strokes_per_drawing.max(initial=0) > 0xFFFF or points_per_stroke.max(initial=0) > 0xFFFF:
        raise ValueError("a drawing has more than 65535 strokes or a stroke more than 65535 points")
    return _encode(
        batch.key_id,
        batch.countrycode,
        batch.recognized,
        batch.timestamp,
        batch.stroke_start,
        batch.point_start,
        batch.x,
        batch.y,
    ).tobytes()


def write_binary(handle: BinaryIO, batch: DrawingBatch) -> int:
    """Append `batch` to an open binary file; returns the bytes written."""
    data = encode_binary(batch)
    handle.write(data)
    return len(data)


__all__ = ["iter_binary", "read_binary", "encode_binary", "write_binary"]
