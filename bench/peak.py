"""Run a module as `python -m` would, then report its peak resident memory.

    python -m bench.peak <module> [args...]

Prints `peak_rss_mb=<n>` on stderr when the module finishes, whatever its
exit: the kernel's high-water mark of this process's memory (VmHWM). Not
ru_maxrss: Linux carries that over from the parent at fork, so a child of a
big process would report the parent's size.
"""

from __future__ import annotations

import resource
import runpy
import sys


def high_water_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def main() -> None:
    module, sys.argv = sys.argv[1], sys.argv[1:]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        peak_mb = high_water_mb()
        print(f"peak_rss_mb={peak_mb:.1f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
