"""Raw simplification cost: the plain algorithm (resample every pixel, RDP scanning whole ranges) against ours.

    python -m bench.simplify

The probe's case is a zigzag across the whole 255-pixel box: every raw point
adds ~360 samples, and RDP peels the zigzag one corner at a time, so the
plain algorithm's cost is quadratic in the ink. Prints, per size, the
distances each computes, their CPU seconds and the ratio, side by side in
one run; the plain one is skipped where it would take minutes.
"""

from __future__ import annotations

import time

import numpy as np

PLAIN_UP_TO = 2000  # raw points; beyond, the plain algorithm takes minutes


def quadratic_reference(points: np.ndarray, epsilon: float = 2.0) -> tuple[np.ndarray, int]:
    """The algorithm of 40890e3 (every 1-pixel sample, RDP scanning each whole range), and its distance count."""
    steps = np.diff(points, axis=0)
    along = np.concatenate([[0.0], np.cumsum(np.hypot(steps[:, 0], steps[:, 1]))])
    at = np.arange(0.0, along[-1], 1.0)
    if at[-1] < along[-1]:
        at = np.append(at, along[-1])
    samples = np.stack([np.interp(at, along, points[:, 0]), np.interp(at, along, points[:, 1])], axis=1)
    keep = np.zeros(len(samples), bool)
    keep[0] = keep[-1] = True
    pending, evaluations = [(0, len(samples) - 1)], 0
    while pending:
        first, last = pending.pop()
        if last <= first + 1:
            continue
        start, chord = samples[first], samples[last] - samples[first]
        inner = samples[first + 1 : last]
        length = np.hypot(chord[0], chord[1])
        if length == 0:
            distance = np.hypot(inner[:, 0] - start[0], inner[:, 1] - start[1])
        else:
            distance = np.abs(chord[0] * (inner[:, 1] - start[1]) - chord[1] * (inner[:, 0] - start[0])) / length
        evaluations += len(inner)
        farthest = int(np.argmax(distance))
        if distance[farthest] > epsilon:
            keep[first + 1 + farthest] = True
            pending += [(first, first + 1 + farthest), (first + 1 + farthest, last)]
    return samples[keep], evaluations


def zigzag(points: int) -> np.ndarray:
    """A stroke across the whole 255-pixel box and back, `points` times."""
    xs = np.linspace(0.0, 255.0, points)
    return np.stack([xs, np.where(np.arange(points) % 2 == 0, 0.0, 255.0)], axis=1)


def main() -> None:
    from quickdraw_dag.data.formats.simplify import resample_and_simplify

    resample_and_simplify(zigzag(10))  # compiled code loaded before timing
    print("| raw points | samples | plain: distances | plain: CPU s | ours: distances | ours: CPU s | CPU ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for points in (500, 1000, 2000, 4000, 16000, 64000):
        stroke = zigzag(points)
        stats: dict[str, int] = {}
        started = time.process_time()
        ours = resample_and_simplify(stroke, stats=stats)
        ours_s = time.process_time() - started
        if points <= PLAIN_UP_TO:
            started = time.process_time()
            plain, plain_evaluations = quadratic_reference(stroke)
            plain_s = time.process_time() - started
            assert np.array_equal(plain, ours)
            plain_cells = f"{plain_evaluations:,} | {plain_s:.2f} | "
            ratio = f"{plain_s / ours_s:.0f}×"
        else:
            plain_cells, ratio = "– | – | ", "–"
        print(f"| {points:,} | {stats['samples']:,} | {plain_cells}{stats['evaluations']:,} | {ours_s:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
