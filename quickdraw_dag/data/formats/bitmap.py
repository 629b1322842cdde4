"""Google's numpy_bitmap `.npy` files: uint8 N×784 (28×28), already rasterized.

The header is read and checked (dtype, shape, order, length of the data)
before the data is memory-mapped, so a corrupt file fails with its byte
offset and a 100 MB file is never read into memory at once. Pickled objects
are never loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from quickdraw_dag.errors import DataError
from quickdraw_dag.data.hashing import splitmix64, text_seed

BITMAP_SIDE = 28
BITMAP_PIXELS = BITMAP_SIDE * BITMAP_SIDE


def open_bitmaps(path: str | Path) -> np.ndarray:
    """Memory-map a numpy_bitmap file as a read-only uint8 (N, 784) array."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            version = npy_format.read_magic(handle)
        except ValueError as error:
            raise DataError(f"not a .npy file ({error})", path=path, offset=0) from None
        header_at = handle.tell()
        try:
            if version == (1, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran_order, dtype = npy_format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as error:  # noqa: BLE001 - numpy's header parser raises ValueError,
            # SyntaxError, tokenize.TokenError, OverflowError... on hostile bytes: all mean "corrupt".
            raise DataError(
                f"corrupt .npy header ({type(error).__name__}: {error})", path=path, offset=header_at
            ) from None
        data_at = handle.tell()
    if dtype.hasobject:
        raise DataError(
            "array holds Python objects; numpy_bitmap files must be uint8 (refusing to unpickle)",
            path=path,
            offset=header_at,
        )
    if dtype != np.uint8:
        raise DataError(f"dtype must be uint8, got {dtype}", path=path, offset=header_at)
    if fortran_order:
        raise DataError("array must be C-ordered, got Fortran order", path=path, offset=header_at)
    if len(shape) != 2 or shape[1] != BITMAP_PIXELS:
        raise DataError(
            f"shape must be (N, {BITMAP_PIXELS}) for 28x28 bitmaps, got {shape}",
            path=path,
            offset=header_at,
        )
    expected = data_at + shape[0] * BITMAP_PIXELS
    actual = os.path.getsize(path)
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"file {what}: header declares {shape[0]} bitmaps ({expected} bytes), file has {actual}",
            path=path,
            offset=min(actual, expected),
        )
    if shape[0] == 0:
        return np.zeros((0, BITMAP_PIXELS), np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=data_at, shape=tuple(shape))


def derived_key_ids(category: str, count: int, start: int = 0) -> np.ndarray:
    """Stable uint64 ids for bitmap rows, which carry no key_id of their own.

    Derived from the category name and the row index, so appending rows never
    changes the ids of earlier ones.
    """
    rows = np.arange(start, start + count, dtype=np.uint64)
    return splitmix64(rows ^ text_seed(category))
