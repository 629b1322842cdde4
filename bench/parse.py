"""Binary parsing: our reader against quickdraw.QuickDrawDataGroup, one file.

    python -m bench.parse [--drawings 200000]

Builds a `.bin` file of realistic drawings, then times, on that same file in
the same run, the `quickdraw` package loading every drawing
(max_drawings=None) and our streaming reader. Prints both rates and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from quickdraw import QuickDrawDataGroup

from bench.corpus import seed_drawings, tiled
from quickdraw_dag.formats.binary import iter_binary, write_binary


def best_of(repeats: int, work) -> tuple[float, int]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = work()
        timings.append(time.perf_counter() - start)
    return min(timings), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    seed, origin = seed_drawings()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "apple.bin"  # a name the quickdraw package accepts
        with open(path, "wb") as handle:
            write_binary(handle, tiled(seed, args.drawings))
        size_mb = path.stat().st_size / 1e6
        sum(len(b) for b in iter_binary(path))  # compile (cached after the first run)

        ours_s, ours_n = best_of(args.repeats, lambda: sum(len(b) for b in iter_binary(path)))
        theirs_s, theirs_n = best_of(
            1,
            lambda: QuickDrawDataGroup(
                "apple", max_drawings=None, cache_dir=tmp, print_messages=False
            ).drawing_count,
        )
    ours_rate, theirs_rate = ours_n / ours_s, theirs_n / theirs_s
    print(f"file: {args.drawings:,} drawings, {size_mb:.1f} MB ({origin})")
    print(f"| reader | drawings | seconds | drawings/s |")
    print(f"|---|---:|---:|---:|")
    print(f"| quickdraw.QuickDrawDataGroup | {theirs_n:,} | {theirs_s:.3f} | {theirs_rate:,.0f} |")
    print(f"| quickdraw_dag iter_binary | {ours_n:,} | {ours_s:.3f} | {ours_rate:,.0f} |")
    print(f"ratio (ours / quickdraw): {ours_rate / theirs_rate:.1f}x")
    if ours_n != theirs_n:
        raise SystemExit(f"drawing counts differ: ours {ours_n}, quickdraw {theirs_n}")


if __name__ == "__main__":
    main()
