"""The input pipeline against the model: batches/s it can serve vs training steps/s it must feed.

    python -m bench.throughput [--filters 64] [--batch-size 128] [--steps 60]

Both on the same memory-mapped training split (real-shaped drawings at
28×28): the input side times `MemmapBatches` serving shuffled batches; the
model side times `fit` steps of the default CNN (after one warm-up epoch,
so compilation is excluded). The input must be ≥ 10× faster than training
consumes, so it is never the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from bench.corpus import seed_drawings, tiled
from quickdraw_dag.artifacts import Catalog, Scaling, write_label_names
from quickdraw_dag.config.schema import PreprocessParams, SearchSpace
from quickdraw_dag.data.raster import rasterize
from quickdraw_dag.data.stream import MemmapBatches, open_split
from quickdraw_dag.training.model import build_cnn


class StepClock(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self.started)


def write_split(root: Path, count: int, image_size: int = 28) -> Catalog:
    """A training split of `count` rendered drawings in six classes, in the project's layout below `root`."""
    seed, _ = seed_drawings()
    catalog = Catalog.under(root)
    catalog.processed.mkdir(parents=True)
    images = rasterize(tiled(seed, count), image_size)
    np.save(catalog.images("train"), images, allow_pickle=False)
    np.save(catalog.labels("train"), (np.arange(count) % 6).astype(np.int16), allow_pickle=False)
    write_label_names(catalog.label_names, [f"c{i}" for i in range(6)], image_size, PreprocessParams().line_width)
    return catalog


def measure(
    filters: int = 64, batch_size: int = 128, steps: int = 60, image_size: int = 28, drawings: int = 50_000
) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        images, labels = open_split(write_split(Path(scratch), drawings, image_size), "train")
        batches = MemmapBatches(images, labels, batch_size=batch_size, shuffle=True, seed=0)
        served = min(len(batches), 300)
        started = time.perf_counter()
        for index in range(served):
            batches[index]
        input_rate = served / (time.perf_counter() - started)

        model = build_cnn(
            **{**SearchSpace().first_choices(), "filters": filters},
            image_size=image_size,
            num_classes=6,
            scaling=Scaling("minmax", 1 / 255, 0),
            augment=None,
            seed=0,
        )
        clock = StepClock()
        model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock])
        step_s = clock.epoch_seconds[-1] / steps
    return {
        "filters": filters,
        "batch_size": batch_size,
        "image_size": image_size,
        "input_batches_per_s": input_rate,
        "train_steps_per_s": 1 / step_s,
        "step_ms": step_s * 1000,
        "images_per_s": batch_size / step_s,
        "ratio": input_rate * step_s,
        "backend": keras.backend.backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    r = measure(args.filters, args.batch_size, args.steps)
    if args.json:
        print(json.dumps(r, default=str))
        return
    print(
        f"input: {r['input_batches_per_s']:,.0f} batches/s; training ({r['backend']}, {args.filters} filters): "
        f"{r['train_steps_per_s']:,.1f} steps/s = {r['images_per_s']:,.0f} images/s; "
        f"input/training ratio {r['ratio']:,.0f}x"
    )


if __name__ == "__main__":
    main()
