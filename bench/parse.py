"""Binary parsing: our reader against quickdraw.QuickDrawDataGroup, one file.

    python -m bench.parse [--drawings 200000]

Builds a `.bin` file of realistic drawings, then times, on that same file in
the same run, the `quickdraw` package loading every drawing
(max_drawings=None) and our streaming reader. Prints both rates and the ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from quickdraw import QuickDrawDataGroup

from bench.corpus import seed_drawings, tiled
from quickdraw_dag.data.formats.binary import iter_binary, write_binary


def best_of(repeats: int, work) -> tuple[float, int]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = work()
        timings.append(time.perf_counter() - start)
    return min(timings), count


def measure(drawings: int = 200_000, repeats: int = 3) -> dict:
    """Both readers on one file of `drawings` drawings: rates, ratio, counts."""
    seed, origin = seed_drawings()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "apple.bin"  # a name the quickdraw package accepts
        with open(path, "wb") as handle:
            write_binary(handle, tiled(seed, drawings))
        size_mb = path.stat().st_size / 1e6
        sum(len(b) for b in iter_binary(path))  # compile (cached after the first run)

        ours_s, ours_n = best_of(repeats, lambda: sum(len(b) for b in iter_binary(path)))
        theirs_s, theirs_n = best_of(
            1,
            lambda: QuickDrawDataGroup("apple", max_drawings=None, cache_dir=tmp, print_messages=False).drawing_count,
        )
    return {
        "drawings": drawings,
        "size_mb": size_mb,
        "origin": origin,
        "ours_n": ours_n,
        "ours_s": ours_s,
        "theirs_n": theirs_n,
        "theirs_s": theirs_s,
        "ours_rate": ours_n / ours_s,
        "theirs_rate": theirs_n / theirs_s,
        "ratio": (ours_n / ours_s) / (theirs_n / theirs_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--drawings", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.drawings, args.repeats)
    if args.json:
        print(json.dumps(r, default=str))
        return
    print(f"file: {args.drawings:,} drawings, {r['size_mb']:.1f} MB ({r['origin']})")
    print("| reader | drawings | seconds | drawings/s |")
    print("|---|---:|---:|---:|")
    print(f"| quickdraw.QuickDrawDataGroup | {r['theirs_n']:,} | {r['theirs_s']:.3f} | {r['theirs_rate']:,.0f} |")
    print(f"| quickdraw_dag iter_binary | {r['ours_n']:,} | {r['ours_s']:.3f} | {r['ours_rate']:,.0f} |")
    print(f"ratio (ours / quickdraw): {r['ratio']:.1f}x")
    if r["ours_n"] != r["theirs_n"]:
        raise SystemExit(f"drawing counts differ: ours {r['ours_n']}, quickdraw {r['theirs_n']}")


if __name__ == "__main__":
    main()
