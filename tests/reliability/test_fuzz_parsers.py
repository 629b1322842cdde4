"""Parser fuzzing: random and mutated bytes in all four formats raise only DataError.

Never IndexError, struct.error, MemoryError, a JSON or numpy error, or a
hang: every input is parsed under hypothesis's deadline, and counts declared
in a header are checked against the bytes present before anything is
allocated for them.
"""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.simplify import quadratic_reference, zigzag  # the plain algorithm, kept as the reference
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.formats import validate_file
from quickdraw_dag.data.formats.binary import write_binary
from quickdraw_dag.errors import DataError

FORMATS = {"binary": ".bin", "simplified": ".ndjson", "raw": ".ndjson", "numpy_bitmap": ".npy"}
EXAMPLES = 600
COUNTS = {"inputs": 0, "data_errors": 0, "parsed": 0, "max_seconds": 0.0}


def valid_sample(fmt: str) -> bytes:
    batch = synthetic.generate("star", 3, 1)
    if fmt == "binary":
        buffer = io.BytesIO()
        write_binary(buffer, batch)
        return buffer.getvalue()
    if fmt in ("simplified", "raw"):
        lines = []
        for i in range(len(batch)):
            strokes = [
                [x.tolist(), y.tolist()] + ([list(range(len(x)))] if fmt == "raw" else []) for x, y in batch.strokes(i)
            ]
            lines.append(
                json.dumps(
                    {
                        "word": "star",
                        "countrycode": "SE",
                        "timestamp": "2017-03-01 10:00:00.00000 UTC",
                        "recognized": True,
                        "key_id": str(1000 + i),
                        "drawing": strokes,
                    }
                )
            )
        return ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 784), np.uint8), allow_pickle=False)
    return buffer.getvalue()


SAMPLES = {fmt: valid_sample(fmt) for fmt in FORMATS}


@st.composite
def mutated(draw: st.DrawFn, fmt: str) -> bytes:
    """A valid file with bytes flipped, inserted, deleted or cut, or plain random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=400))
    data = bytearray(SAMPLES[fmt])
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut", "big"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "cut":
            del data[at:]
        elif action == "big" and len(data) > at + 2:
            data[at : at + 2] = b"\xff\xff"  # a count at its maximum
    return bytes(data)


def check(tmp_path: Path, fmt: str, content: bytes) -> None:
    path = tmp_path / f"cat{FORMATS[fmt]}"
    path.write_bytes(content)
    started = time.perf_counter()
    COUNTS["inputs"] += 1
    try:
        validate_file(path, fmt, category="cat")  # type: ignore[arg-type]
        COUNTS["parsed"] += 1
    except DataError as error:
        COUNTS["data_errors"] += 1
        assert path.name in str(error)  # names the file
    finally:
        COUNTS["max_seconds"] = max(COUNTS["max_seconds"], time.perf_counter() - started)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutated_inputs_raise_only_data_errors(fmt: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(fmt)

    @settings(
        max_examples=EXAMPLES,
        deadline=2000,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(content=mutated(fmt))
    def fuzz(content: bytes) -> None:
        check(folder, fmt, content)  # anything but DataError fails the test

    fuzz()


PEAK_PROBE = """
import sys
from pathlib import Path

from quickdraw_dag.errors import DataError
from quickdraw_dag.data.formats import validate_file


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM")


validate_file(sys.argv[1], "binary")  # a valid file first: imports and compiled code are in memory
before = peak_mb()
try:
    validate_file(sys.argv[2], sys.argv[3])
except DataError as error:
    print("DataError", error)
print("grown_mb", peak_mb() - before)
"""


def peak_growth(tmp_path: Path, path: Path, fmt: str) -> tuple[str, float]:
    """Validate `path` in a fresh process; how much its peak resident memory grew doing so (VmHWM)."""
    import subprocess
    import sys

    from tests.helpers import REPO

    valid = tmp_path / "valid.bin"
    with open(valid, "wb") as handle:
        write_binary(handle, synthetic.generate("circle", 5, seed=0))
    done = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(valid), str(path), fmt],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown = float(done.stdout.split("grown_mb")[-1])
    return done.stdout, grown


def test_declared_counts_are_not_trusted(tmp_path: Path, record) -> None:
    """65,535 strokes of 65,535 points declared in a 100-byte file: an error, no allocation."""
    header = struct.pack("<Q2sBI", 1, b"SE", 1, 0) + struct.pack("<HH", 65535, 65535)
    path = tmp_path / "cat.bin"
    path.write_bytes((header + b"\x01" * 100)[:100])
    output, grown_mb = peak_growth(tmp_path, path, "binary")
    assert "DataError" in output and "byte offset" in output
    assert grown_mb < 50  # in a fresh process: 65,535² points would be 8 GB

    npy = tmp_path / "cat.npy"
    npy_header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000, 784), }"
    npy.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + npy_header.ljust(117) + b"\n" + b"\0" * 100)
    output, grown_mb = peak_growth(tmp_path, npy, "numpy_bitmap")
    assert "DataError" in output and grown_mb < 50

    # This test runs after the fuzzing above in file order; it reports the totals.
    record(
        "parser fuzzing",
        inputs_fuzzed=COUNTS["inputs"],
        data_errors=COUNTS["data_errors"],
        parsed_ok=COUNTS["parsed"],
        crashes=0,
        slowest_input_s=round(COUNTS["max_seconds"], 3),
    )


# ----- cost bounded by size: raw simplification and line length -----


def n_log2_n_bound(raw_points: int) -> float:
    """What O(n log² n) allows for n raw points: m = 2n+2 candidate samples, a few distances per tree and hull
    level; plus the plain scan of strokes too small for the tree (at most TREE_FROM²/2 distances, milliseconds)."""
    from quickdraw_dag.data.formats.simplify import TREE_FROM

    candidates = 2 * raw_points + 2
    return TREE_FROM**2 / 2 + 2.0 * candidates * np.log2(candidates) ** 2


def test_raw_simplification_costs_n_log_n_not_the_square_of_the_ink(record) -> None:
    from quickdraw_dag.data.formats.simplify import resample_and_simplify

    # The bound holds for zigzags of every size, which the quadratic algorithm blows through already at 1,000 points.
    _, reference_cost = quadratic_reference(zigzag(1000))
    assert reference_cost > 20 * n_log2_n_bound(1000)
    costs = {}
    for points in (1000, 4000, 16000, 64000):
        stats: dict[str, int] = {}
        kept = resample_and_simplify(zigzag(points), stats=stats)
        assert len(kept) > 0.9 * points  # every corner is farther than 2 px from its neighbours' chord
        assert stats["evaluations"] <= n_log2_n_bound(points), (points, stats)
        costs[points] = stats["evaluations"]
    record(
        "simplification cost",
        inputs=len(costs),
        detail=(
            f"zigzags of 1,000 to 64,000 raw points ({stats['samples']:,} samples at the largest): "
            f"{costs[1000]:,} to {costs[64000]:,} distances, each under 2·m·log²m (m = 2n+2) + 2048²/2; "
            f"the quadratic algorithm: {reference_cost:,} already at 1,000 points"
        ),
    )


def test_fast_simplification_keeps_exactly_the_points_of_the_quadratic_one() -> None:
    from quickdraw_dag.data.formats.simplify import resample_and_simplify

    rng = np.random.default_rng(12)
    for case in range(300):
        points = int(rng.integers(2, 400 if case % 10 else 3000))  # every tenth large enough for the hull tree
        walk = np.cumsum(rng.normal(0.0, rng.choice([0.5, 5.0, 40.0]), (points, 2)), axis=0)
        walk = (walk - walk.min(axis=0)) * 255.0 / max(np.ptp(walk, axis=0).max(), 1e-9)
        expected, _ = quadratic_reference(walk)
        assert np.array_equal(resample_and_simplify(walk), expected), case


def test_a_line_longer_than_the_cap_is_refused_without_reading_it_whole(tmp_path: Path, record) -> None:
    from quickdraw_dag.data.formats.ndjson import MAX_LINE_BYTES

    path = tmp_path / "cat.ndjson"
    head = b'{"word": "cat", "countrycode": "SE", "recognized": true, "key_id": "1", "drawing": [[['
    with open(path, "wb") as handle:
        handle.write(head)
        for _ in range(40):
            handle.write(b"1.5, " * 200_000)  # 40 MB of x coordinates on one line
        handle.write(b"1]]]}\n")
    output, grown_mb = peak_growth(tmp_path, path, "raw")
    assert "DataError" in output and f"longer than {MAX_LINE_BYTES} bytes" in output and "line 1" in output
    assert grown_mb < 20  # a 500 MB line took 1.1 GB
    record(
        "simplification cost",
        inputs=1,
        detail=f"a 40 MB ndjson line: DataError, peak memory +{grown_mb:.0f} MB (the cap: {MAX_LINE_BYTES >> 20} MiB)",
    )
