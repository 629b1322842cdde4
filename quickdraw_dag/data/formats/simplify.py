"""Google's simplification of raw drawings, as the dataset documents it.

1. Align the drawing to the top-left corner (minimum 0).
2. Scale uniformly so the longer side spans 0-255.
3. Resample every stroke at 1-pixel spacing along its length.
4. Simplify every stroke with Ramer-Douglas-Peucker, epsilon 2.0.

Details that decide whether a point lands on Google's exact integer were
found by converting the raw samples in `shared/data/quickdraw/raw` and
comparing with their simplified twins (`tests/data/test_simplify_real.py`):
resampling is by arc length over the whole stroke (not per segment), RDP
measures distance to the infinite line through the end points (not to the
segment) and keeps the first farthest point, scaling multiplies before it
divides, coordinates are rounded half to even only at the end, and a stroke
of one point is written as two identical points. Measured: 424 of the 444
raw samples (95.5%) convert to exactly Google's simplified twin.

Cost grows with the raw points n, not with the ink length. Resampling a
stroke whose 255-pixel box holds a long zigzag makes hundreds of samples per
raw point, and plain RDP peels such a zigzag one corner at a time: quadratic
in the samples (a 494 KB raw line took 4.5 minutes). Two facts make it
O(n log² n) with the same result:

- Samples between two raw points lie on one straight segment, where the
  distance to any line varies linearly, so the farthest sample of a range is
  the first or last sample of some segment (or lies on a segment parallel to
  the chord, whose first sample then comes first). RDP therefore only looks
  at those "segment-end" samples, at most 2n + 2 of them, computed with the
  same `np.interp` as a full resampling, and never builds the others.
- The farthest of m points from a line is a vertex of their convex hull. A
  segment tree keeps the hull of every aligned block of points, so a range's
  farthest point takes O(log² m) instead of O(m).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

RDP_EPSILON = 2.0
RESAMPLE_SPACING = 1.0
SCALE_TO = 255.0
LEAF = 16  # points per leaf block of the hull tree
# From this many candidates on, farthest points come from the hull tree; below it, a plain scan (a few
# milliseconds at worst). The tree finds the same point except among exactly collinear candidates, where
# rounding noise picks one in a scan; real strokes stay below it.
TREE_FROM = 2048


def simplify_drawing(
    strokes: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw strokes (float screen coordinates) → simplified uint8 strokes.

    ValueError when the coordinates span more than a float can hold.
    """
    arrays = [(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)) for xs, ys in strokes]
    all_x = np.concatenate([xs for xs, _ in arrays])
    all_y = np.concatenate([ys for _, ys in arrays])
    min_x, min_y = all_x.min(), all_y.min()
    extent = max(all_x.max() - min_x, all_y.max() - min_y) or 1.0
    if not np.isfinite(extent):
        raise ValueError("the coordinates span more than a 64-bit float holds")
    result = []
    for xs, ys in arrays:
        # Multiply before dividing: (x - min) * 255 / extent lands exactly on
        # .5 where Google's does, and those ties then round to even as theirs.
        points = np.stack([(xs - min_x) * SCALE_TO / extent, (ys - min_y) * SCALE_TO / extent], axis=1)
        points = resample_and_simplify(points, RESAMPLE_SPACING, RDP_EPSILON)
        rounded = np.clip(np.round(points), 0, 255).astype(np.uint8)
        if rounded.shape[0] == 1:
            rounded = np.concatenate([rounded, rounded])
        result.append((rounded[:, 0].copy(), rounded[:, 1].copy()))
    return result


def _arc_lengths(points: np.ndarray) -> np.ndarray:
    steps = np.diff(points, axis=0)
    return np.concatenate([[0.0], np.cumsum(np.hypot(steps[:, 0], steps[:, 1]))])


def resample(points: np.ndarray, spacing: float = RESAMPLE_SPACING) -> np.ndarray:
    """Points every `spacing` along the polyline's length, plus its end (every sample: for tests and small strokes)."""
    if points.shape[0] < 2:
        return points
    along = _arc_lengths(points)
    total = along[-1]
    if total == 0:
        return points[:1]
    at = np.arange(0.0, total, spacing)
    if at[-1] < total:
        at = np.append(at, total)
    return np.stack([np.interp(at, along, points[:, 0]), np.interp(at, along, points[:, 1])], axis=1)


def resample_and_simplify(
    points: np.ndarray, spacing: float = RESAMPLE_SPACING, epsilon: float = RDP_EPSILON, stats: dict | None = None
) -> np.ndarray:
    """`ramer_douglas_peucker(resample(points, spacing), epsilon)`, in O(n log² n) for n raw points.

    Only the samples that can be a range's farthest point are computed (the
    first and last sample on each raw segment); `stats["evaluations"]` counts
    the distances computed, `stats["samples"]` the samples a full resampling makes.
    """
    if points.shape[0] < 2:
        return points
    along = _arc_lengths(points)
    total = along[-1]
    if total == 0:
        return points[:1]
    # The samples `resample` makes, never built: `np.arange(0, total, spacing)` (sample j at j·spacing),
    # then the end of the stroke.
    regular = int(np.ceil(total / spacing))
    count = regular + (1 if (regular - 1) * spacing < total else 0)
    first_on = np.ceil(along / spacing).astype(np.int64)  # the first sample at or after each raw point
    first_on -= (first_on - 1) * spacing >= along  # exact for any spacing: j·spacing ≥ along, (j-1)·spacing not
    first_on += first_on * spacing < along
    first_on = np.minimum(first_on, regular)
    ends = np.unique(np.clip(np.concatenate([first_on, first_on - 1, [0, count - 1]]), 0, count - 1))
    positions = np.where(ends < regular, ends * spacing, total)
    xs, ys = np.interp(positions, along, points[:, 0]), np.interp(positions, along, points[:, 1])
    segment = np.searchsorted(first_on, ends, side="right") - 1  # the raw segment each sample lies on
    segment[(segment >= points.shape[0] - 1) | (ends >= regular)] = -1
    geometry = (
        first_on[:-1].astype(np.int64),
        (first_on[1:] - 1).astype(np.int64),
        along,
        np.ascontiguousarray(points[:, 0], np.float64),
        np.ascontiguousarray(points[:, 1], np.float64),
        float(spacing),
        int(regular),
        float(total),
    )
    _, kept_x, kept_y, evaluations = _rdp(
        xs, ys, ends.astype(np.int64), segment.astype(np.int64), geometry, float(epsilon), TREE_FROM
    )
    if stats is not None:
        stats["evaluations"] = stats.get("evaluations", 0) + int(evaluations)
        stats["samples"] = stats.get("samples", 0) + int(count)
    return np.stack([kept_x, kept_y], axis=1)


def ramer_douglas_peucker(
    points: np.ndarray, epsilon: float, stats: dict | None = None, tree_from: int | None = None
) -> np.ndarray:
    """Keep the points farther than `epsilon` from the chord, recursively (the first farthest point splits).

    Every point is scanned for every range (quadratic at worst) unless `tree_from` points or more turn
    the hull tree on; simplification itself goes through `resample_and_simplify`.
    """
    if points.shape[0] < 3:
        return points
    n = points.shape[0]
    no_segments = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0), 1.0, 0, 0.0)
    kept, _, _, evaluations = _rdp(
        np.ascontiguousarray(points[:, 0], np.float64),
        np.ascontiguousarray(points[:, 1], np.float64),
        np.arange(n, dtype=np.int64),
        np.full(n, -1, np.int64),
        no_segments,
        float(epsilon),
        n + 1 if tree_from is None else int(tree_from),
    )
    if stats is not None:
        stats["evaluations"] = stats.get("evaluations", 0) + int(evaluations)
    return points[kept]


# ----- compiled core: RDP over points in index order, farthest points found on a tree of convex hulls -----


@numba.njit(cache=True, nogil=True)
def _distance(xs, ys, i, sx, sy, cx, cy, length):  # pragma: no cover - compiled
    """The distance RDP compares: to the line through the chord, or to its start when the chord has no length."""
    if length == 0.0:
        return np.hypot(xs[i] - sx, ys[i] - sy)
    return abs(cx * (ys[i] - sy) - cy * (xs[i] - sx)) / length


@numba.njit(cache=True, nogil=True)
def _before(xs, ys, i, j):  # pragma: no cover - compiled
    return xs[i] < xs[j] or (xs[i] == xs[j] and ys[i] < ys[j])


@numba.njit(cache=True, nogil=True)
def _cross(xs, ys, o, a, b):  # pragma: no cover - compiled
    return (xs[a] - xs[o]) * (ys[b] - ys[o]) - (ys[a] - ys[o]) * (xs[b] - xs[o])


@numba.njit(cache=True, nogil=True)
def _build(xs, ys, leaf, levels):  # pragma: no cover - compiled
    """Per level and aligned block: its points sorted by (x, y), and their upper and lower hull chains."""
    n = xs.shape[0]
    blocks = (n + leaf - 1) // leaf
    order = np.empty((levels, n), np.int32)
    upper = np.empty((levels, n), np.int32)
    lower = np.empty((levels, n), np.int32)
    upper_len = np.zeros((levels, blocks), np.int32)
    lower_len = np.zeros((levels, blocks), np.int32)
    for level in range(levels):
        size = leaf << level
        for node in range((n + size - 1) // size):
            start = node * size
            end = min(n, start + size)
            if level == 0:
                for k in range(start, end):  # insertion sort of one leaf block
                    order[0, k] = k
                    j = k
                    while j > start and _before(xs, ys, order[0, j], order[0, j - 1]):
                        order[0, j], order[0, j - 1] = order[0, j - 1], order[0, j]
                        j -= 1
            else:  # merge the two children's sorted points
                middle = min(n, start + size // 2)
                i, j, k = start, middle, start
                while i < middle or j < end:
                    if j >= end or (i < middle and not _before(xs, ys, order[level - 1, j], order[level - 1, i])):
                        order[level, k] = order[level - 1, i]
                        i += 1
                    else:
                        order[level, k] = order[level - 1, j]
                        j += 1
                    k += 1
            h = 0  # Andrew's monotone chain, collinear points dropped
            for k in range(start, end):
                p = order[level, k]
                while h >= 2 and _cross(xs, ys, upper[level, start + h - 2], upper[level, start + h - 1], p) >= 0:
                    h -= 1
                upper[level, start + h] = p
                h += 1
            upper_len[level, node] = h
            h = 0
            for k in range(start, end):
                p = order[level, k]
                while h >= 2 and _cross(xs, ys, lower[level, start + h - 2], lower[level, start + h - 1], p) <= 0:
                    h -= 1
                lower[level, start + h] = p
                h += 1
            lower_len[level, node] = h
    return upper, lower, upper_len, lower_len


@numba.njit(cache=True, nogil=True)
def _signed(xs, ys, i, sign, sx, sy, cx, cy, counter):  # pragma: no cover - compiled
    counter[0] += 1
    return sign * (cx * (ys[i] - sy) - cy * (xs[i] - sx))


@numba.njit(cache=True, nogil=True)
def _chain_max(chain, level, start, count, xs, ys, sign, sx, sy, cx, cy, counter):  # pragma: no cover - compiled
    """The chain vertex maximizing sign·g (g: the signed distance to the chord, unscaled), by binary search.

    Along a convex chain that turns less than half a circle, the steps of a
    linear function change sign at most once: a peak inside, or the maximum
    at an end.
    """
    if count == 1:
        return chain[level, start]
    first = _signed(xs, ys, chain[level, start], sign, sx, sy, cx, cy, counter)
    second = _signed(xs, ys, chain[level, start + 1], sign, sx, sy, cx, cy, counter)
    before_last = _signed(xs, ys, chain[level, start + count - 2], sign, sx, sy, cx, cy, counter)
    last = _signed(xs, ys, chain[level, start + count - 1], sign, sx, sy, cx, cy, counter)
    if not (second > first and last <= before_last):
        return chain[level, start] if first >= last else chain[level, start + count - 1]
    rising, falling = 0, count - 2  # step k goes from vertex k to k + 1: step 0 rises, step count-2 does not
    while falling - rising > 1:
        middle = (rising + falling) // 2
        here = _signed(xs, ys, chain[level, start + middle], sign, sx, sy, cx, cy, counter)
        after = _signed(xs, ys, chain[level, start + middle + 1], sign, sx, sy, cx, cy, counter)
        if after > here:
            rising = middle
        else:
            falling = middle
    return chain[level, start + falling]  # every step before it rises, it does not: the peak


@numba.njit(cache=True, nogil=True)
def _node_max(tree, level, node, leaf, xs, ys, sx, sy, cx, cy, length, counter):  # pragma: no cover - compiled
    """(largest distance in the block, a point that has it), from its hull's four extreme vertices."""
    upper, lower, upper_len, lower_len = tree
    start = node * (leaf << level)
    best_value = -1.0
    best_index = -1
    for chain_id in range(2):
        chain = upper if chain_id == 0 else lower
        count = upper_len[level, node] if chain_id == 0 else lower_len[level, node]
        for sign in (1.0, -1.0):
            index = _chain_max(chain, level, start, count, xs, ys, sign, sx, sy, cx, cy, counter)
            value = _distance(xs, ys, index, sx, sy, cx, cy, length)
            if value > best_value or (value == best_value and index < best_index):
                best_value, best_index = value, index
    return best_value, best_index


@numba.njit(cache=True, nogil=True)
def _scan(xs, ys, low, high, sx, sy, cx, cy, length, counter):  # pragma: no cover - compiled
    """(largest distance among points low..high, the first point that has it)."""
    best_value = -1.0
    best_index = -1
    for i in range(low, high + 1):
        value = _distance(xs, ys, i, sx, sy, cx, cy, length)
        if value > best_value:
            best_value, best_index = value, i
    counter[0] += max(0, high - low + 1)
    return best_value, best_index


@numba.njit(cache=True, nogil=True)
def _farthest(tree, leaf, xs, ys, low, high, sx, sy, cx, cy, use_tree, counter):  # pragma: no cover - compiled
    """(distance, index) of the first farthest point among low..high from the chord (sx, sy) + t·(cx, cy)."""
    length = np.hypot(cx, cy)
    left_block, right_block = low // leaf, high // leaf
    if not use_tree or length == 0.0 or right_block - left_block <= 1:
        return _scan(xs, ys, low, high, sx, sy, cx, cy, length, counter)
    # Pieces in index order: the partial first block, whole aligned blocks, the partial last block.
    levels = np.empty(64, np.int64)
    nodes = np.empty(64, np.int64)
    count = 0
    right_levels = np.empty(32, np.int64)
    right_nodes = np.empty(32, np.int64)
    right_count = 0
    lo, hi, level = left_block + 1, right_block, 0
    while lo < hi:
        if lo & 1:
            levels[count], nodes[count] = level, lo
            count += 1
            lo += 1
        if hi & 1:
            hi -= 1
            right_levels[right_count], right_nodes[right_count] = level, hi
            right_count += 1
        lo >>= 1
        hi >>= 1
        level += 1
    for k in range(right_count - 1, -1, -1):
        levels[count], nodes[count] = right_levels[k], right_nodes[k]
        count += 1
    head_value, head_index = _scan(xs, ys, low, (left_block + 1) * leaf - 1, sx, sy, cx, cy, length, counter)
    tail_value, tail_index = _scan(xs, ys, right_block * leaf, high, sx, sy, cx, cy, length, counter)
    values = np.empty(count, np.float64)
    best = max(head_value, tail_value)
    for k in range(count):
        values[k], _ = _node_max(tree, levels[k], nodes[k], leaf, xs, ys, sx, sy, cx, cy, length, counter)
        best = max(best, values[k])
    if head_value == best:
        return head_value, head_index
    for k in range(count):
        if values[k] == best:  # the first piece holding the maximum: descend to its first leaf that does
            level, node = levels[k], nodes[k]
            while level > 0:
                value, _ = _node_max(tree, level - 1, 2 * node, leaf, xs, ys, sx, sy, cx, cy, length, counter)
                level, node = level - 1, (2 * node if value >= best else 2 * node + 1)
            start = node * leaf
            for i in range(start, min(start + leaf, xs.shape[0])):
                counter[0] += 1
                if _distance(xs, ys, i, sx, sy, cx, cy, length) >= best:
                    return best, i
            _, index = _node_max(tree, levels[k], nodes[k], leaf, xs, ys, sx, sy, cx, cy, length, counter)
            return best, index
    return tail_value, tail_index


@numba.njit(cache=True, nogil=True)
def _interp(k, position, along, values):  # pragma: no cover - compiled
    """`np.interp(position, along, values)` for a position on raw segment k (numpy's formula, NaN fallbacks too)."""
    if position == along[k]:
        return values[k]
    slope = (values[k + 1] - values[k]) / (along[k + 1] - along[k])
    result = slope * (position - along[k]) + values[k]
    if np.isnan(result):
        result = slope * (position - along[k + 1]) + values[k + 1]
        if np.isnan(result) and values[k] == values[k + 1]:
            result = values[k]
    return result


@numba.njit(cache=True, nogil=True)
def _tied(k, first, last, sample, xs, ys, geometry, sx, sy, cx, cy, length, value):  # pragma: no cover - compiled
    """Whether raw segment k, inside first..last, runs parallel to the chord at distance `value` (within rounding)."""
    seg_first, seg_last = geometry[0], geometry[1]
    start, stop = max(seg_first[k], first + 1), min(seg_last[k], last - 1)
    if stop <= start:
        return False
    a, b = np.searchsorted(sample, start), np.searchsorted(sample, stop)
    if a >= sample.shape[0] or b >= sample.shape[0] or sample[a] != start or sample[b] != stop:
        return False
    tolerance = 1e-9 * value
    return (
        abs(_distance(xs, ys, a, sx, sy, cx, cy, length) - value) <= tolerance
        and abs(_distance(xs, ys, b, sx, sy, cx, cy, length) - value) <= tolerance
    )


@numba.njit(cache=True, nogil=True)
def _rdp(xs, ys, sample, segment, geometry, epsilon, tree_from):  # pragma: no cover - compiled
    """RDP over samples, seeing only the candidates (xs, ys at sample indices `sample`, in order).

    Returns the kept sample indices, their coordinates and the number of
    distances computed. `segment[i]` is the raw segment of candidate i (-1:
    none); `geometry` = (segment's first sample, last sample, arc length at
    each raw point, raw x, raw y, spacing, regular samples, total length).
    When the farthest candidate's segment runs parallel to the chord, every
    sample on it is equally far in exact arithmetic; its samples are then
    computed (as `np.interp` does) and the first farthest in floating point
    wins, exactly as RDP over all samples picks it.
    """
    seg_first, seg_last, along, raw_x, raw_y, spacing, regular, total = geometry
    n = xs.shape[0]
    counter = np.zeros(1, np.int64)
    kept_sample = [sample[0], sample[n - 1]]
    kept_x = [xs[0], xs[n - 1]]
    kept_y = [ys[0], ys[n - 1]]
    if n < 3:
        return np.array(kept_sample[: min(n, 2)]), np.array(kept_x[: min(n, 2)]), np.array(kept_y[: min(n, 2)]), 0
    levels = 1
    while (LEAF << (levels - 1)) < n:
        levels += 1
    use_tree = n >= tree_from
    tree = _build(xs, ys, LEAF, levels) if use_tree else _build(xs[:0], ys[:0], LEAF, 1)
    pending = [(sample[0], xs[0], ys[0], sample[n - 1], xs[n - 1], ys[n - 1])]
    while pending:
        first, sx, sy, last, ex, ey = pending.pop()
        low = np.searchsorted(sample, first, side="right")  # candidates strictly inside
        high = np.searchsorted(sample, last, side="left") - 1
        if low > high:
            continue
        cx, cy = ex - sx, ey - sy
        value, index = _farthest(tree, LEAF, xs, ys, low, high, sx, sy, cx, cy, use_tree, counter)
        best_sample, bx, by = sample[index], xs[index], ys[index]
        k = segment[index]
        if k >= 0 and value > 0.0:
            length = np.hypot(cx, cy)
            low_k = high_k = k
            if _tied(low_k, first, last, sample, xs, ys, geometry, sx, sy, cx, cy, length, value):
                # Collinear neighbours tie too: the farthest sample may be on any of them.
                while low_k > 0 and _tied(
                    low_k - 1, first, last, sample, xs, ys, geometry, sx, sy, cx, cy, length, value
                ):
                    low_k -= 1
                while high_k + 1 < seg_first.shape[0] and _tied(
                    high_k + 1, first, last, sample, xs, ys, geometry, sx, sy, cx, cy, length, value
                ):
                    high_k += 1
                for j in range(max(seg_first[low_k], first + 1), min(seg_last[high_k], last - 1) + 1):
                    on = low_k
                    while seg_last[on] < j:
                        on += 1
                    position = j * spacing if j < regular else total
                    px, py = _interp(on, position, along, raw_x), _interp(on, position, along, raw_y)
                    counter[0] += 1
                    if length == 0.0:
                        d = np.hypot(px - sx, py - sy)
                    else:
                        d = abs(cx * (py - sy) - cy * (px - sx)) / length
                    if d > value or (d == value and j < best_sample):
                        value, best_sample, bx, by = d, j, px, py
        if value > epsilon:
            kept_sample.append(best_sample)
            kept_x.append(bx)
            kept_y.append(by)
            pending.append((first, sx, sy, best_sample, bx, by))
            pending.append((best_sample, bx, by, last, ex, ey))
    order = np.argsort(np.array(kept_sample), kind="mergesort")
    return np.array(kept_sample)[order], np.array(kept_x)[order], np.array(kept_y)[order], counter[0]
