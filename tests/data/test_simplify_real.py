"""Raw → simplified against Google's own output on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quickdraw_dag.data.formats import DrawingBatch, iter_drawings
from quickdraw_dag.data.formats.simplify import ramer_douglas_peucker, resample, simplify_drawing

REQUIRED_EXACT_SHARE = 0.95


def test_at_least_95_percent_match_googles_simplified_twin(shared_raw: Path) -> None:
    exact = total = 0
    for raw_file in sorted((shared_raw / "raw").glob("*.ndjson")):
        twins = {}
        for text in (shared_raw / "simplified" / raw_file.name).read_text().splitlines():
            record = json.loads(text)
            twins[int(record["key_id"])] = record["drawing"]
        ours = DrawingBatch.concat(iter_drawings(raw_file, "raw", category=raw_file.stem))
        for index, key in enumerate(ours.key_id.tolist()):
            if key not in twins:
                continue
            total += 1
            converted = [[x.tolist(), y.tolist()] for x, y in ours.strokes(index)]
            exact += converted == twins[key]
    assert total >= 400, f"expected the 20 raw sample files to pair up, got {total} pairs"
    share = exact / total
    print(f"raw → simplified exact matches: {exact}/{total} = {share:.1%}")
    assert share >= REQUIRED_EXACT_SHARE


def test_resample_spacing_and_ends() -> None:
    points = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 2.5]])
    out = resample(points)
    assert out.shape == (14, 2)  # 0..12 every pixel, then the end at 12.5
    assert np.allclose(np.diff(out[:-1], axis=0).__abs__().sum(axis=1), 1.0)
    assert np.array_equal(out[-1], [10.0, 2.5])


def test_rdp_keeps_corners_and_drops_noise() -> None:
    line = np.array([[0, 0], [1, 0.5], [2, -0.5], [3, 0], [3, 10]], float)
    assert ramer_douglas_peucker(line, 2.0).tolist() == [[0, 0], [3, 0], [3, 10]]


def test_single_point_and_degenerate_drawings() -> None:
    [(xs, ys)] = simplify_drawing([([5.0], [7.0])])
    assert xs.tolist() == [0, 0] and ys.tolist() == [0, 0]
    strokes = simplify_drawing([([0.0, 100.0], [0.0, 0.0]), ([50.0], [25.0])])
    assert strokes[0][0].tolist() == [0, 255] and strokes[1][0].tolist() == [128, 128]


def test_the_fast_simplification_equals_the_plain_one_on_every_real_raw_drawing(shared_raw: Path) -> None:
    from bench.simplify import quadratic_reference
    from quickdraw_dag.data.formats.simplify import resample_and_simplify

    strokes = 0
    for raw_file in sorted((shared_raw / "raw").glob("*.ndjson")):
        for text in raw_file.read_text().splitlines():
            drawing = json.loads(text)["drawing"]
            points = [np.asarray(stroke[:2], dtype=np.float64).T for stroke in drawing]
            everything = np.concatenate(points)
            low, extent = everything.min(axis=0), max(np.ptp(everything, axis=0).max(), 1.0)
            for stroke in points:
                scaled = (stroke - low) * 255.0 / extent
                if len(scaled) > 1 and np.hypot(*np.diff(scaled, axis=0).T).sum() > 0:
                    assert np.array_equal(resample_and_simplify(scaled), quadratic_reference(scaled)[0])
                    strokes += 1
    assert strokes > 2000
