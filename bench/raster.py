"""Rasterizing: ours against the quickdraw package's image path, same drawings.

    python -m bench.raster [--drawings 20000] [--image-size 28]

Theirs: `QuickDrawing.image` (a 255×255 PIL drawing), then grayscale, then a
resize to the same size. Ours: `quickdraw_dag.data.raster.rasterize` on the parsed
batch. Both start from drawings already in memory; both rates and the ratio
are printed. It also prints how far our fast renderer is from a slow,
supersampled reference of the same numpy_bitmap convention.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image, ImageDraw
from quickdraw.data import QuickDrawing

from bench.corpus import seed_drawings, tiled
from quickdraw_dag.data.formats import DrawingBatch
from quickdraw_dag.data.raster import BOX, DEFAULT_LINE_WIDTH, PADDING, rasterize


def quickdraw_objects(batch: DrawingBatch) -> list[QuickDrawing]:
    drawings = []
    for i in range(len(batch)):
        strokes = [(tuple(x.tolist()), tuple(y.tolist())) for x, y in batch.strokes(i)]
        data = {
            "key_id": int(batch.key_id[i]),
            "countrycode": "US",
            "recognized": 1,
            "timestamp": 0,
            "n_strokes": len(strokes),
            "image": strokes,
        }
        drawings.append(QuickDrawing("cat", data))
    return drawings


def quickdraw_path(drawings: list[QuickDrawing], size: int) -> np.ndarray:
    return np.stack([np.asarray(d.image.convert("L").resize((size, size))) for d in drawings])


def reference(
    batch: DrawingBatch, index: int, size: int, line_width: float = DEFAULT_LINE_WIDTH, supersample: int = 16
) -> np.ndarray:
    """The convention drawn slowly: PIL at 16× with round caps, box-filtered down."""
    big = size * supersample
    total_padding = 2 * PADDING + line_width
    scale = big / (BOX + total_padding)
    strokes = batch.strokes(index)
    max_x = max(int(x.max()) for x, _ in strokes)
    max_y = max(int(y.max()) for _, y in strokes)
    off = np.array([(BOX - max_x) / 2 + total_padding / 2, (BOX - max_y) / 2 + total_padding / 2])
    canvas = np.zeros((big, big), np.float64)
    radius = line_width * scale / 2
    for xs, ys in strokes:
        layer = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(layer)
        points = [tuple((np.array([x, y], float) + off) * scale) for x, y in zip(xs, ys)]
        if len(points) > 1:
            draw.line(points, fill=255, width=int(round(2 * radius)), joint="curve")
        for px, py in (points[0], points[-1]):
            draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=255)
        cover = np.asarray(layer, np.float64) / 255
        canvas = canvas + cover * (1 - canvas)
    small = canvas.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return np.round(small * 255).astype(np.uint8)


def measure(drawings: int = 20_000, image_size: int = 28) -> dict:
    """Both rasterizers on the same drawings: rates, ratio, and our error against the reference."""
    seed, origin = seed_drawings()
    batch = tiled(seed, drawings)
    rasterize(batch.take(np.arange(10)), image_size)  # compile (cached after the first run)
    objects = quickdraw_objects(batch)

    start = time.perf_counter()
    ours = rasterize(batch, image_size)
    ours_s = time.perf_counter() - start
    theirs_n = min(len(objects), 5000)  # their path is slow: time a prefix
    start = time.perf_counter()
    quickdraw_path(objects[:theirs_n], image_size)
    theirs_s = time.perf_counter() - start
    sample = range(0, len(seed), max(1, len(seed) // 200))
    error = float(np.mean([np.abs(ours[i].astype(int) - reference(batch, i, image_size)).mean() for i in sample]))
    return {
        "drawings": len(batch),
        "image_size": image_size,
        "origin": origin,
        "ours_s": ours_s,
        "theirs_n": theirs_n,
        "theirs_s": theirs_s,
        "ours_rate": len(batch) / ours_s,
        "theirs_rate": theirs_n / theirs_s,
        "ratio": (len(batch) / ours_s) / (theirs_n / theirs_s),
        "error": error,
        "error_sample": len(sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--drawings", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=28)
    args = parser.parse_args()
    r = measure(args.drawings, args.image_size)
    if args.json:
        print(json.dumps(r, default=str))
        return
    print(f"drawings: {r['drawings']:,} at {args.image_size}x{args.image_size} ({r['origin']})")
    print("| rasterizer | drawings | seconds | drawings/s |")
    print("|---|---:|---:|---:|")
    print(
        f"| quickdraw QuickDrawing.image → L → resize | {r['theirs_n']:,} | {r['theirs_s']:.3f} | {r['theirs_rate']:,.0f} |"
    )
    print(f"| quickdraw_dag rasterize | {r['drawings']:,} | {r['ours_s']:.3f} | {r['ours_rate']:,.0f} |")
    print(f"ratio (ours / quickdraw): {r['ratio']:.1f}x")
    print(
        f"mean |ours - 16x supersampled reference|: {r['error']:.2f} grey levels of 255 ({r['error_sample']} drawings)"
    )


if __name__ == "__main__":
    main()
