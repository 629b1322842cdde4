"""Pictures read as they are (issue 25, point 10): every Pillow mode by its value range, in paint and in predict.

Both readers go through `data.pictures.open_picture`; each case runs through both: paint's
`load_image` (RGB) and predict's `read_image_file` (grey).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quickdraw_dag.errors import DataError
from quickdraw_dag.painting import load_image
from quickdraw_dag.serving.images import read_image_file

WIDTH = 256


def grey_of_paint(path: Path) -> np.ndarray:
    rgb = load_image(str(path), 10_000)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # grey stays grey
    return rgb[..., 0]


READERS: dict[str, Callable[[Path], np.ndarray]] = {"paint": grey_of_paint, "predict": read_image_file}
EXPECTED = np.rint(np.linspace(0, 255, WIDTH)).astype(np.uint8)  # the gradient every case encodes


def gradient(top: float, dtype: type) -> np.ndarray:
    """4 rows of a left-to-right ramp from 0 to `top`."""
    return np.tile(np.linspace(0, top, WIDTH), (4, 1)).astype(dtype)


def save(path: Path, array: np.ndarray, mode: str | None = None, **options: object) -> Path:
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, **options)
    return path


def sixteen_bit_png(tmp_path: Path) -> Path:
    path = save(tmp_path / "g16.png", gradient(65535, np.uint16))
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")  # what Pillow makes of a 16-bit grey PNG
    return path


def sixteen_bit_big_endian_tiff(tmp_path: Path) -> Path:
    image = Image.frombytes("I;16B", (WIDTH, 4), gradient(65535, np.uint16).astype(">u2").tobytes())
    image.save(tmp_path / "g16b.tif")
    with Image.open(tmp_path / "g16b.tif") as check:
        assert check.mode.startswith("I;16")
    return tmp_path / "g16b.tif"


def int32_tiff(tmp_path: Path) -> Path:
    return save(tmp_path / "g32.tif", gradient(65535, np.int32))


def float_tiff(tmp_path: Path) -> Path:
    return save(tmp_path / "gf.tif", gradient(1.0, np.float32))


def eight_bit_png(tmp_path: Path) -> Path:
    return save(tmp_path / "g8.png", gradient(255, np.uint8))


def palette_png(tmp_path: Path) -> Path:
    rgb = Image.fromarray(np.stack([gradient(255, np.uint8)] * 3, axis=-1))
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "gp.png")
    return tmp_path / "gp.png"


CASES = {
    "16-bit png": sixteen_bit_png,
    "16-bit big-endian tiff": sixteen_bit_big_endian_tiff,
    "32-bit integer tiff": int32_tiff,
    "float tiff": float_tiff,
    "8-bit png": eight_bit_png,
    "palette png": palette_png,
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", CASES)
def test_every_grey_depth_reads_as_the_same_gradient(case: str, reader: str, tmp_path: Path) -> None:
    """A 0-65535 gradient became 98% white when clamped to 8 bits; read by its range it is the 0-255 one."""
    grey = READERS[reader](CASES[case](tmp_path))
    assert grey.dtype == np.uint8 and grey.shape == (4, WIDTH)
    assert np.abs(grey[0].astype(int) - EXPECTED).max() <= 1
    assert (grey == 255).mean() < 0.01


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("mode", "values", "message"),
    [
        ("I", np.array([[0, 70_000], [5, 6]], np.int32), "16-bit, 0-65535, and this I picture holds 0 to 70000"),
        ("I", np.array([[-3, 100], [5, 6]], np.int32), "holds -3 to 100"),
        ("F", np.array([[0, 255.0], [5, 6]], np.float32), "read as 0-1, and this F picture holds 0 to 255"),
        ("F", np.array([[0, -0.5], [0.2, 1]], np.float32), "holds -0.5 to 1"),
    ],
)
def test_deep_pictures_outside_their_range_are_refused_naming_the_file(
    mode: str, values: np.ndarray, message: str, reader: str, tmp_path: Path
) -> None:
    path = save(tmp_path / "odd.tif", values)
    with Image.open(path) as check:
        assert check.mode == mode
    with pytest.raises(DataError, match=message) as refused:
        READERS[reader](path)
    assert "odd.tif" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("reader", READERS)
def test_transparency_is_white_in_every_mode_that_carries_it(reader: str, tmp_path: Path) -> None:
    half = np.zeros((4, 8), np.uint8)  # black ink; its right half transparent
    alpha = np.zeros((4, 8), np.uint8)
    alpha[:, :4] = 255
    la = save(tmp_path / "la.png", np.stack([half, alpha], axis=-1))
    palette = Image.fromarray(np.stack([half] * 3, axis=-1)).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    palette.save(tmp_path / "p.png", transparency=int(np.asarray(palette)[0, 0]))
    deep = np.zeros((4, 8), np.uint16)
    deep[:, 4:] = 1000
    Image.fromarray(deep).save(tmp_path / "t16.png", transparency=1000)  # tRNS: grey 1000 is transparent
    for path, white_from in ((la, 4), (tmp_path / "p.png", 0), (tmp_path / "t16.png", 4)):
        grey = READERS[reader](path)
        assert (grey[:, white_from:] == 255).all(), path.name
        assert (grey[:, :white_from] == 0).all(), path.name


@pytest.mark.parametrize("reader", READERS)
def test_too_many_pixels_are_refused_from_the_header(reader: str, tmp_path: Path) -> None:
    Image.new("1", (8000, 7000)).save(tmp_path / "big.png")  # 56 megapixels in a few KB
    with pytest.raises(DataError, match=r"8000x7000 pixels \(56 megapixels\) is more than the 50 megapixels"):
        READERS[reader](tmp_path / "big.png")
