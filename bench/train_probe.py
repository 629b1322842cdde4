"""The train stage's input path and model on a processed directory, for a fixed number of steps.

    python -m bench.train_probe <project_root> [--steps 100] [--filters 64] [--batch-size 128]

Streams shuffled batches over the whole training split with `MemmapBatches`
(a new permutation of every index each epoch, as the train stage does) into
the default CNN, so its peak memory is the stage's at that data size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from quickdraw_dag.artifacts import Catalog, Scaling, read_categories
from quickdraw_dag.config.schema import SearchSpace
from quickdraw_dag.data.stream import MemmapBatches, open_split
from quickdraw_dag.training.model import build_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a project layout holding data/processed")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    catalog = Catalog.under(args.root)
    images, labels = open_split(catalog, "train")
    classes = read_categories(catalog)
    batches = MemmapBatches(images, labels, batch_size=args.batch_size, shuffle=True, seed=0)
    model = build_cnn(
        **{**SearchSpace().first_choices(), "filters": args.filters},
        image_size=images.shape[1],
        num_classes=len(classes),
        scaling=Scaling("minmax", 1 / 255, 0.0),
        augment=None,
        seed=0,
    )
    started = time.perf_counter()
    model.fit(batches, epochs=1, steps_per_epoch=args.steps, verbose=0)
    print(
        json.dumps(
            {"images": int(images.shape[0]), "steps": args.steps, "seconds": round(time.perf_counter() - started, 2)}
        )
    )


if __name__ == "__main__":
    main()
