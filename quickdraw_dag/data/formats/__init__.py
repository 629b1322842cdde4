"""Readers and writers for Google's four Quick, Draw! formats.

`binary` (.bin), `simplified` and `raw` (.ndjson) hold strokes and are read
as `DrawingBatch`es; `numpy_bitmap` (.npy) holds 28×28 images. This module
names the files (Google's published names, and our names under `data/raw`)
and dispatches to the right reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from quickdraw_dag.errors import DataError
from quickdraw_dag.data.formats.batch import DrawingBatch
from quickdraw_dag.data.formats.binary import iter_binary, read_binary, write_binary
from quickdraw_dag.data.formats.bitmap import open_bitmaps
from quickdraw_dag.data.formats.ndjson import bounded_lines, iter_ndjson, sniff_ndjson_kind

Format = Literal["binary", "simplified", "raw", "numpy_bitmap"]
STROKE_FORMATS: tuple[Format, ...] = ("binary", "simplified", "raw")
# When a local directory holds several formats of one category, `auto` takes
# the one with the most drawings, and among equals this order: the binary
# file is smallest and fastest; bitmaps lose the strokes.
FORMAT_PREFERENCE: tuple[Format, ...] = ("binary", "simplified", "raw", "numpy_bitmap")
# Google's bucket keeps each format in a folder of its own (full/binary/, full/simplified/, ...);
# a local source may mirror that layout.
FORMAT_FOLDERS: tuple[str, ...] = ("binary", "simplified", "raw", "numpy_bitmap")

# Our names under data/raw: the quickdraw package's cache layout for .bin.
_RAW_SUFFIX: dict[Format, str] = {
    "binary": ".bin",
    "simplified": ".ndjson",
    "raw": ".raw.ndjson",
    "numpy_bitmap": ".npy",
}


def raw_file_name(category: str, fmt: Format) -> str:
    """File name of `category` in `fmt` under `data/raw`."""
    return category + _RAW_SUFFIX[fmt]


def google_file_candidates(category: str) -> list[tuple[str, Format | None]]:
    """Google's published names for a category; None means sniff ndjson.

    A name with spaces ("smiley face") is also looked for with underscores (`smiley_face.npy`), as
    many copies of Google's files are named; Google's own name comes first.
    """
    spellings = dict.fromkeys([category, category.replace(" ", "_")])
    return [
        candidate
        for name in spellings
        for candidate in (
            (f"{name}.bin", "binary"),
            (f"full_simplified_{name}.ndjson", "simplified"),
            (f"{name}.ndjson", None),
            (f"full_raw_{name}.ndjson", "raw"),
            (f"{name}.npy", "numpy_bitmap"),
            (f"full_numpy_bitmap_{name}.npy", "numpy_bitmap"),
        )
    ]


def find_local_file(
    directory: Path, category: str, wanted: Literal["auto"] | Format = "auto"
) -> tuple[Path, Format] | None:
    """The file of `category` in `directory` (or its format folders), by Google's names and `wanted`.

    `auto` takes the format with the most drawings (the sample's 1,000
    bitmaps over its 25 stroke drawings), then `FORMAT_PREFERENCE`.
    """
    found: dict[Format, Path] = {}
    for folder in (directory, *(directory / name for name in FORMAT_FOLDERS)):
        for name, fmt in google_file_candidates(category):
            path = folder / name
            if not path.is_file():
                continue
            actual: Format = fmt if fmt is not None else sniff_ndjson_kind(path)
            found.setdefault(actual, path)
    if wanted != "auto":
        return (found[wanted], wanted) if wanted in found else None
    present = [fmt for fmt in FORMAT_PREFERENCE if fmt in found]
    if not present:
        return None
    if len(present) > 1:
        counts = {fmt: count_drawings(found[fmt], fmt) for fmt in present}
        present.sort(key=lambda fmt: -counts[fmt])  # stable: equals keep the preference order
    return found[present[0]], present[0]


def count_drawings(path: Path, fmt: Format) -> int:
    """How many drawings a file holds, cheaply: the array's rows, the ndjson's lines, the binary's records."""
    if fmt == "numpy_bitmap":
        return int(open_bitmaps(path).shape[0])
    if fmt == "binary":
        return sum(len(batch) for batch in iter_binary(path))
    with open(path, "rb") as handle:  # a line too long to be a drawing counts as one: validation rejects it
        return sum(1 for _, _, line in bounded_lines(handle) if line is None or line.strip())


def iter_drawings(
    path: str | Path,
    fmt: Format,
    *,
    category: str | None = None,
    on_bad_record: Literal["fail", "skip"] = "fail",
    stats: dict[str, int] | None = None,
) -> Iterator[DrawingBatch]:
    """Stream drawings of a stroke-format file as batches."""
    if fmt == "binary":
        return iter_binary(path, on_bad_record=on_bad_record, stats=stats)
    if fmt in ("simplified", "raw"):
        return iter_ndjson(path, fmt, category=category, on_bad_record=on_bad_record, stats=stats)
    raise ValueError(f"{fmt} holds bitmaps, not strokes")


def validate_file(
    path: str | Path,
    fmt: Format,
    *,
    category: str | None = None,
    on_bad_record: Literal["fail", "skip"] = "fail",
) -> tuple[int, int]:
    """Read the whole file; returns (good drawings, skipped bad records)."""
    if fmt == "numpy_bitmap":
        return int(open_bitmaps(path).shape[0]), 0
    stats: dict[str, int] = {}
    count = sum(
        len(batch) for batch in iter_drawings(path, fmt, category=category, on_bad_record=on_bad_record, stats=stats)
    )
    return count, stats.get("skipped", 0)


__all__ = [
    "DataError",
    "DrawingBatch",
    "Format",
    "STROKE_FORMATS",
    "count_drawings",
    "find_local_file",
    "iter_drawings",
    "open_bitmaps",
    "raw_file_name",
    "read_binary",
    "validate_file",
    "write_binary",
]
