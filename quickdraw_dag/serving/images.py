"""Pictures of drawings (PNG, JPEG, pixel arrays, numpy_bitmap rows) → the model's uint8 input.

The training images are white strokes on black, framed by the rasterizer's
convention. A picture at the model's size passes untouched (after turning
dark-on-light into light-on-dark), exactly as the preprocess stage passes
numpy_bitmap rows; a 28×28 bitmap for a model of another size is resized as
preprocess resizes it. Any other picture is cropped to its ink, framed with
the rasterizer's margin (so the drawing fills the same share of the image as
in training) and resized with the same resampling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_dag.data.formats.bitmap import BITMAP_PIXELS, BITMAP_SIDE
from quickdraw_dag.data.pictures import open_picture
from quickdraw_dag.data.raster import BOX, PADDING, resize_bitmaps

INK_LEVEL = 48  # grey levels above the background that count as ink when cropping a photo or scan
# The longest side the ink is framed at: a longer crop is shrunk first, so framing a 2 × 300,000 strip
# allocates a square of this side, not one of 300,000 (105 GiB). Far above any model's image size.
MAX_FRAME_SIDE = 1024


class ImageError(ValueError):
    """Pixels that are not a grayscale picture; the message says why."""


def as_pixels(value: Any) -> np.ndarray:
    """A 2-D array of grey levels 0-255 (lists, arrays, or a flat numpy_bitmap row of 784)."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise ImageError("an image must be a rectangular 2-D list of grey levels 0-255") from None
    if array.ndim == 1 and array.size == BITMAP_PIXELS:
        array = array.reshape(BITMAP_SIDE, BITMAP_SIDE)
    if array.ndim != 2 or min(array.shape) < 2 or array.dtype.kind not in "iuf":
        raise ImageError(f"an image must be a 2-D array of grey levels 0-255 (got shape {array.shape})")
    if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 255):
        raise ImageError("grey levels must lie in 0-255")
    return np.rint(array).astype(np.uint8) if array.dtype.kind == "f" else array.astype(np.uint8)


def light_on_dark(pixels: np.ndarray) -> np.ndarray:
    """Invert a dark-on-light picture; the border tells the background."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    return 255 - pixels if np.median(border) > 127 else pixels


def frame(pixels: np.ndarray, line_width: float) -> np.ndarray:
    """Crop to the ink and pad to a square with the rasterizer's margin around it."""
    rows = np.flatnonzero((pixels > INK_LEVEL).any(axis=1))
    cols = np.flatnonzero((pixels > INK_LEVEL).any(axis=0))
    if rows.size == 0:
        return np.zeros((BITMAP_SIDE, BITMAP_SIDE), np.uint8)  # no ink: a blank picture
    ink = shrink_to(pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], MAX_FRAME_SIDE)
    # In training a drawing (BOX units plus its line) fills BOX + line_width of the
    # BOX + 2 * PADDING + line_width units across, centred.
    side = int(round(max(ink.shape) * (BOX + 2 * PADDING + line_width) / (BOX + line_width)))
    square = np.zeros((side, side), np.uint8)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return square


def shrink_to(pixels: np.ndarray, longest: int) -> np.ndarray:
    """`pixels` shrunk (area averaging) so the longer side is at most `longest`; the work is O(its pixels)."""
    from PIL import Image

    height, width = pixels.shape
    if max(height, width) <= longest:
        return pixels
    scale = longest / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


def normalize_image(value: Any, image_size: int, line_width: float) -> np.ndarray:
    """Any grayscale picture (either polarity, any size) → uint8 (image_size, image_size), white on black."""
    pixels = light_on_dark(as_pixels(value))
    if pixels.shape == (image_size, image_size):
        return pixels
    if pixels.shape != (BITMAP_SIDE, BITMAP_SIDE):
        pixels = frame(pixels, line_width)
    return resize_bitmaps(pixels[None], image_size)[0]


def read_image_file(path: Path) -> np.ndarray:
    """A PNG, JPEG or any picture Pillow reads, as 8-bit grey levels (by value range; transparency on white)."""
    return np.asarray(open_picture(path, "L"))
