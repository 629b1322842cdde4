"""Pictures read as they are: any Pillow mode → 8-bit grey or RGB by its value range, transparency on white.

Pillow's own `convert("L")` clamps deeper grey levels to 255: a 16-bit PNG's
0-65535 gradient becomes 98% white. Here every mode is converted by the range
its values mean:

- `I;16` (16-bit PNG, TIFF, either byte order) and `I` (32-bit integers, as
  Pillow opens some 16-bit files) are read as 0-65535 and scaled to 0-255;
  an `I` picture holding values outside 0-65535 is refused (no range to
  read it by);
- `F` (floating point) is read as 0-1 and scaled; values outside are refused;
- 8-bit modes (`1`, `L`, `P`, `RGB`, `CMYK`, `YCbCr`, ...) convert as Pillow
  converts them;
- transparency (`LA`, `PA`, `RGBA`, a palette's or a grey or RGB picture's
  transparent colour) is composited on white, as a viewer shows it.

The pixel count is checked from the header, before anything is decoded. Both
the paint flow (`painting.load_image`, RGB) and `predict` (`serving.images`,
grey) read pictures through `open_picture`: one conversion, not two.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from quickdraw_dag.errors import DataError, clip

if TYPE_CHECKING:
    from PIL.Image import Image

# Decoded as RGBA, 50 megapixels take 200 MB; checked from the header, before decoding.
MAX_PICTURE_PIXELS = 50_000_000
SIXTEEN_BIT = 65535
DEEP_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def open_picture(path: Path, mode: Literal["L", "RGB"], max_pixels: int = MAX_PICTURE_PIXELS) -> Image:
    """The picture at `path` as an 8-bit `mode` image; DataError naming the file when it cannot be read as one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:  # reads the header only
            width, height = opened.size
            if width * height > max_pixels:
                raise DataError(
                    f"{width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more than the "
                    f"{max_pixels / 1e6:.0f} megapixels read; downscale it first",
                    path=path,
                )
            opened.load()
            return as_8bit(opened, mode, path)
    except Image.DecompressionBombError:  # Pillow's own limit (about 179 megapixels), checked in `open`
        raise DataError(
            f"too many pixels: more than the {max_pixels / 1e6:.0f} megapixels read; downscale it first", path=path
        ) from None
    except UnidentifiedImageError:
        raise DataError("not an image Pillow can read", path=path, offset=0) from None
    except (OSError, ValueError) as error:
        raise DataError(f"not an image Pillow can read ({clip(str(error), 160)})", path=path) from None


def as_8bit(image: Image, mode: Literal["L", "RGB"], path: Path | None = None) -> Image:
    """`image` in 8-bit `mode`, its values read by their range and transparency composited on white."""
    from PIL import Image as PilImage

    if image.mode in DEEP_GREY_MODES:
        return deep_grey_to_8bit(image, path).convert(mode)
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = PilImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PilImage.alpha_composite(white, rgba).convert(mode)
    return image.convert(mode)


def deep_grey_to_8bit(image: Image, path: Path | None = None) -> Image:
    """A 16-bit, 32-bit or float grey picture → `L`, scaled by the range its mode means (see the module)."""
    from PIL import Image as PilImage

    values = np.asarray(image)
    if image.mode == "F":
        top, what = 1.0, "floating-point grey levels are read as 0-1"
    else:
        top, what = float(SIXTEEN_BIT), "integer grey levels are read as 16-bit, 0-65535"
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= top):
        raise DataError(
            f"{what}, and this {image.mode} picture holds {low:g} to {high:g}: save it as an 8- or 16-bit image",
            path=path,
        )
    scaled = np.rint(values.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int) and image.mode != "F":  # a 16-bit PNG's transparent grey level
        scaled[values == transparent] = 255
    return PilImage.fromarray(scaled, "L")
