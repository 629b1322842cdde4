"""Rasterizer: geometry of the numpy_bitmap convention, anti-aliasing, agreement with a slow reference."""

from __future__ import annotations

import numpy as np

from bench.raster import reference
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats import DrawingBatch
from quickdraw_dag.data.raster import rasterize, resize_bitmaps


def one(drawing: list) -> DrawingBatch:
    return DrawingBatch.from_drawings([drawing])


def test_horizontal_line_is_centred_and_antialiased() -> None:
    image = rasterize(one([([0, 255], [0, 0])]), 28)[0]
    # Centred in the 256 box, the line lies on y = 14.0 px exactly, the border of
    # rows 13 and 14; it is 16 * 28 / 304 = 1.47 px wide, so each row is covered
    # 0.737 of the way: 188 of 255.
    assert np.flatnonzero(image.max(axis=1)).tolist() == [13, 14]
    assert image[13, 5:23].tolist() == [188] * 18 and image[14, 5:23].tolist() == [188] * 18
    # the padding keeps the outermost columns dark; the round caps fade out
    assert image[:, 0].max() == 0 and image[:, 27].max() == 0
    assert 0 < image[13, 1] < 188


def test_output_is_symmetric_for_symmetric_input() -> None:
    image = rasterize(one([([0, 255, 255, 0, 0], [0, 0, 255, 255, 0])]), 28)[0].astype(int)
    assert np.abs(image - image[:, ::-1]).max() <= 1 and np.abs(image - image.T).max() <= 1


def test_single_points_draw_a_dot_and_empty_space_stays_black() -> None:
    image = rasterize(one([([128], [128])]), 28)[0]
    assert 0 < np.count_nonzero(image) <= 9 and image.max() > 100


def test_batch_matches_single_renders_and_sizes() -> None:
    batch = synthetic.generate("star", 20, seed=4)
    whole = rasterize(batch, 32)
    assert whole.shape == (20, 32, 32) and whole.dtype == np.uint8
    for index in (0, 7, 19):
        assert np.array_equal(whole[index], rasterize(batch.take([index]), 32)[0])


def test_close_to_supersampled_reference() -> None:
    batch = DrawingBatch.concat([synthetic.generate(c, 10, seed=1) for c in ("circle", "zigzag", "moon")])
    ours = rasterize(batch, 28).astype(int)
    errors = [np.abs(ours[i] - reference(batch, i, 28)).mean() for i in range(len(batch))]
    assert np.mean(errors) < 4.0, errors


def test_resize_bitmaps_keeps_size_or_averages() -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    assert resize_bitmaps(images, 28) is not None and np.array_equal(resize_bitmaps(images, 28), images)
    small = resize_bitmaps(images, 14)
    assert small.shape == (2, 14, 14) and small[0, 5:9, 5:9].min() == 255 and small[0, 0, 0] == 0
