"""Compile the numba kernels (stroke simplification, `.bin` codec, rasterizer) into numba's on-disk cache.

The kernels compile on first call, per argument types, and keep the machine
code in `__pycache__` beside their sources (`cache=True`). Compiling all of
them costs 10-12 CPU s on this project's 2-core machine (11.5 s alone, 9.7 s
in a CI install, 2026-12-04), paid by whichever process calls them first:
the fetch or preprocess stage, or the evaluate stage when MLflow checks the
logged model against its stroke input example.
`make install` runs this once, so no run pays it; later processes load the
cached code in a fraction of a second.

    python -m quickdraw_dag.data.compiled
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# One drawing in Google's raw ndjson form (screen coordinates, with times) and one in simplified form (0-255).
RAW_LINE = (
    b'{"key_id":"1","word":"warm up","countrycode":"XX","timestamp":"2017-01-01 00:00:00.0 UTC",'
    b'"recognized":true,"drawing":[[[40,40,200,200,40],[260,120,120,260,260],[0,180,360,540,720]],'
    b"[[30,120,210],[130,40,130],[1100,1300,1500]]]}\n"
)
SIMPLIFIED_LINE = (
    b'{"key_id":"2","word":"warm up","countrycode":"XX","timestamp":"2017-01-01 00:00:00.0 UTC",'
    b'"recognized":true,"drawing":[[[0,90,255],[10,200,30]],[[5,5],[0,255]]]}\n'
)


def warm_up() -> None:
    """Call every kernel with the argument types the pipeline and the servers use."""
    from quickdraw_dag.data.formats.batch import DrawingBatch
    from quickdraw_dag.data.formats.binary import encode_binary, iter_binary
    from quickdraw_dag.data.formats.ndjson import iter_ndjson
    from quickdraw_dag.data.formats.simplify import ramer_douglas_peucker, simplify_drawing
    from quickdraw_dag.data.raster import rasterize

    batches = []
    with tempfile.TemporaryDirectory() as folder:
        for kind, line in (("raw", RAW_LINE), ("simplified", SIMPLIFIED_LINE)):
            path = Path(folder) / f"{kind}.ndjson"
            path.write_bytes(line)
            batches.extend(iter_ndjson(path, kind))  # raw lines are simplified on the way in
        batch = DrawingBatch.concat(batches)
        path = Path(folder) / "drawings.bin"
        path.write_bytes(encode_binary(batch))
        decoded = DrawingBatch.concat(iter_binary(path))  # one signature: skip_bad is a bool either way
    rasterize(decoded)
    # the drawing page and the logged model simplify float screen coordinates (serving.strokes)
    simplify_drawing([(np.array([40.0, 200.0, 90.0]), np.array([260.0, 120.0, 30.0]))])
    ramer_douglas_peucker(np.array([[0.0, 0.0], [1.0, 0.1], [2.0, 0.0]]), 0.5)


def main() -> int:
    started = time.process_time()
    warm_up()
    print(f"numba kernels compiled into their cache ({time.process_time() - started:.1f} CPU s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
