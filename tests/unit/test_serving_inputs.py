"""The serving input path without a model: stroke parsing, picture normalization, predict's file readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from quickdraw_dag.data.formats import iter_drawings
from quickdraw_dag.data.formats.simplify import simplify_drawing
from quickdraw_dag.data.raster import rasterize
from quickdraw_dag.errors import DataError
from quickdraw_dag.serving.images import ImageError, normalize_image
from quickdraw_dag.serving.readers import check_input, iter_chunks
from quickdraw_dag.serving.strokes import StrokeError, parse_drawing, rasterize_strokes

SQUARE = [[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]


def first_sample(samples: Path, category: str = "frog") -> list:
    return orjson.loads((samples / "simplified" / f"{category}.ndjson").read_bytes().splitlines()[0])["drawing"]


def test_simplified_strokes_pass_untouched(samples: Path) -> None:
    drawing = first_sample(samples)
    parsed = parse_drawing(drawing)
    assert [(xs.tolist(), ys.tolist()) for xs, ys in parsed] == [tuple(stroke) for stroke in drawing]
    assert all(xs.dtype == np.uint8 for xs, _ in parsed)


def test_raw_strokes_go_through_googles_simplification() -> None:
    raw = [[[10.5, 300.25, 600.0, 620.0], [20.0, 400.0, 20.0, 25.5], [0, 10, 20, 30]]]
    expected = simplify_drawing([(raw[0][0], raw[0][1])])
    for fmt in ("auto", "raw"):
        got = parse_drawing(raw, fmt)
        assert [(x.tolist(), y.tolist()) for x, y in got] == [(x.tolist(), y.tolist()) for x, y in expected]
    assert max(int(got[0][0].max()), int(got[0][1].max())) == 255  # scaled to Google's 0-255 box


def test_auto_takes_integers_beyond_255_or_floats_as_raw() -> None:
    big = [[[0, 100, 510], [0, 510, 0]]]
    assert parse_drawing(big)[0][0].max() == 255  # simplified (scaled), not clipped or refused
    floats = [[[0.0, 10.0], [0.0, 5.0]]]
    assert parse_drawing(floats)[0][0].tolist() == [0, 255]  # raw: scaled to the box
    with pytest.raises(StrokeError, match="integers 0-255"):
        parse_drawing(big, "simplified")


@pytest.mark.parametrize(
    ("drawing", "message"),
    [
        ([], "non-empty list of strokes"),
        ("strokes", "non-empty list of strokes"),
        ([[[1, 2]]], "stroke 0 must be"),
        ([[[1, 2], [3]]], "stroke 0: x and y differ in length"),
        ([SQUARE[0], [[1, "a"], [1, 2]]], "stroke 1: x must be a non-empty list of numbers"),
        ([[[1, 2], [True, False]]], "stroke 0: y must be"),
        ([[[1.0, float("nan")], [1, 2]]], "not a finite number"),
        ([[[1, [2]], [1, 2]]], "stroke 0: x must be"),
        ([[[1, 2], [3, 4], [0]]], "x, y and t differ in length"),
    ],
)
def test_bad_strokes_say_which_stroke_and_why(drawing: object, message: str) -> None:
    with pytest.raises(StrokeError, match=message):
        parse_drawing(drawing)


def test_served_strokes_rasterize_like_the_preprocess_stage(samples: Path) -> None:
    batch = next(iter_drawings(samples / "simplified" / "duck.ndjson", "simplified"))
    drawings = [parse_drawing(json.loads(line)["drawing"]) for line in (samples / "simplified" / "duck.ndjson").open()]
    np.testing.assert_array_equal(rasterize_strokes(drawings, 28, 16.0), rasterize(batch, 28, 16.0))


def test_pictures_of_either_polarity_become_white_on_black() -> None:
    bitmap = np.zeros((28, 28), np.uint8)
    bitmap[6:22, 13:15] = 255
    np.testing.assert_array_equal(normalize_image(bitmap, 28, 16.0), bitmap)  # the model's size: untouched
    np.testing.assert_array_equal(normalize_image(255 - bitmap, 28, 16.0), bitmap)  # dark on light: inverted
    np.testing.assert_array_equal(normalize_image(bitmap.ravel().tolist(), 28, 16.0), bitmap)  # a numpy_bitmap row


def test_a_large_picture_is_cropped_and_framed_like_a_rasterized_drawing() -> None:
    photo = np.full((300, 500), 250, np.uint8)  # dark ink on white paper, off-centre, lots of margin
    photo[40:200, 300:310] = 10
    image = normalize_image(photo, 28, 16.0)
    assert image.shape == (28, 28) and image.dtype == np.uint8
    rows, cols = np.flatnonzero(image.max(axis=1) > 64), np.flatnonzero(image.max(axis=0) > 64)
    assert rows[0] >= 1 and rows[-1] <= 26  # the rasterizer's margin on both sides
    assert rows[-1] - rows[0] >= 22  # the ink's long side fills the box, as a drawing scaled to 255 does
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]], np.zeros((3, 3, 3)), [[0, 300], [0, 0]], [["a", "b"]]])
def test_bad_pixels_are_refused(value: object) -> None:
    with pytest.raises(ImageError):
        normalize_image(value, 28, 16.0)


# ----- predict's file readers -----


def test_ndjson_drawings_carry_their_line_numbers(samples: Path, tmp_path: Path) -> None:
    lines = (samples / "simplified" / "bear.ndjson").read_bytes().splitlines()[:3]
    path = tmp_path / "bear.ndjson"
    path.write_bytes(lines[0] + b"\n\n" + lines[1] + b"\n" + lines[2] + b"\n")  # a blank line 2
    (chunk,) = iter_chunks(path)
    assert chunk.where == ["line 1", "line 3", "line 4"] and len(chunk.batch) == 3


def test_a_bad_ndjson_line_names_file_and_line(samples: Path, tmp_path: Path) -> None:
    lines = (samples / "simplified" / "bear.ndjson").read_bytes().splitlines()[:2]
    path = tmp_path / "bear.ndjson"
    path.write_bytes(lines[0] + b"\n" + lines[1][:-20] + b"\n")
    with pytest.raises(DataError, match=r"bear\.ndjson, line 2, byte offset \d+: not valid JSON"):
        list(iter_chunks(path))


def test_json_strokes_files_in_every_layout(tmp_path: Path) -> None:
    layouts = {
        "one.json": SQUARE,
        "many.json": [SQUARE, SQUARE],
        "objects.json": [{"drawing": SQUARE}, {"strokes": SQUARE}],
        "object.json": {"drawing": SQUARE},
    }
    for name, value in layouts.items():
        (tmp_path / name).write_text(json.dumps(value))
        (chunk,) = iter_chunks(tmp_path / name)
        assert chunk.where == [f"drawing {i}" for i in range(len(chunk.batch))]
        assert chunk.batch.x.tolist() == [0, 255, 255, 0, 0] * len(chunk.batch)


def test_bad_json_files_name_the_drawing_or_the_offset(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps([SQUARE, [[[1, 2], [3]]]]))
    with pytest.raises(DataError, match=r"bad\.json: drawing 1: stroke 0: x and y differ in length"):
        list(iter_chunks(tmp_path / "bad.json"))
    (tmp_path / "cut.json").write_text("[[[1, 2], [3, 4]]")
    with pytest.raises(DataError, match=r"cut\.json, line 1, byte offset \d+: not valid JSON"):
        list(iter_chunks(tmp_path / "cut.json"))


def test_bitmaps_and_pictures(samples: Path, tmp_path: Path) -> None:
    chunks = list(iter_chunks(samples / "numpy_bitmap" / "sheep.npy"))
    assert sum(len(c) for c in chunks) == 1000 and chunks[0].where[:2] == ["row 0", "row 1"]
    assert chunks[0].pictures.shape[1:] == (28, 28)
    Image.fromarray(np.asarray(chunks[0].pictures[0])).save(tmp_path / "sheep.png")
    (chunk,) = iter_chunks(tmp_path / "sheep.png")
    np.testing.assert_array_equal(chunk.pictures[0], chunks[0].pictures[0])


def test_unknown_or_missing_files_fail_before_any_output(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: cannot tell what this holds"):
        check_input(tmp_path / "notes.txt")
    with pytest.raises(DataError, match=r"gone\.ndjson: no such file"):
        check_input(tmp_path / "gone.ndjson")
    (tmp_path / "fake.png").write_bytes(b"not a picture")
    with pytest.raises(DataError, match=r"fake\.png, byte offset 0: not an image"):
        list(iter_chunks(tmp_path / "fake.png"))


# ----- predict reads ahead while the model runs -----


def test_read_ahead_keeps_order_and_raises_errors_after_the_items_before_them() -> None:
    from quickdraw_dag.serving.predict import read_ahead

    def items():
        yield from range(5)
        raise DataError("broken at item 5", path="x.ndjson", line=6)

    got = []
    with pytest.raises(DataError, match=r"x\.ndjson, line 6: broken at item 5"):
        for item in read_ahead(items(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stops_its_thread_when_the_reader_stops_early() -> None:
    import threading

    from quickdraw_dag.serving.predict import read_ahead

    reader = read_ahead(iter(range(1000)), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    for _ in range(50):
        if not any(t.name == "predict-read-ahead" for t in threading.enumerate()):
            break
        threading.Event().wait(0.05)
    assert not any(t.name == "predict-read-ahead" for t in threading.enumerate())


@pytest.mark.parametrize(
    "drawing",
    [
        [[[1e307, 0.0], [0.0, 1.0]]],  # an OverflowError inside the simplification before
        [[[-1e308, 1e308], [0.0, 1.0], [0, 1]]],
        [[[2**63, 0], [0, 1]]],
        [[[0.0, 1.0], [0.0, -1e9 - 1]]],
    ],
)
def test_raw_coordinates_beyond_the_readers_limit_are_refused_like_the_reader_does(drawing: list) -> None:
    with pytest.raises(StrokeError, match=r"stroke 0: coordinate .* is beyond ±1e\+09"):
        parse_drawing(drawing)
    assert parse_drawing([[[-1e9, 1e9], [0.0, 1.0]]])[0][0].tolist() == [0, 255]  # the limit itself is read


def test_an_extreme_strip_is_framed_at_a_bounded_size() -> None:
    """2 × 300,000 pixels asked for a 105 GiB square before; the crop is shrunk first."""
    import time

    strip = np.zeros((2, 300_000), np.uint8)
    strip[:, ::7] = 255
    started = time.process_time()
    image = normalize_image(strip, 28, 16.0)
    assert image.shape == (28, 28) and image.max() > 0
    assert time.process_time() - started < 2.0
