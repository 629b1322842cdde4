"""How far a test split lets any model go: several models' agreement, their ensemble, what all of them miss.

    python -m bench.ceiling PROJECT PROBABILITIES.npy [...] [--grid errors.png]

PROJECT is the processed project the probabilities were scored on (its test
split's labels and drawings); each PROBABILITIES file holds one model's test
probabilities, rows in test-split order (`bench.candidates --save DIR`).
Prints each model's test accuracy, the ensemble's (mean probability), the
share that at least one model gets right, and the drawings every model gets
wrong, by true and predicted class; `--grid` draws those drawings, numbered,
with their label and the ensemble's guess, to be looked at: a drawing nobody
could name is a limit of the set, not of the network.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from quickdraw_dag.artifacts import Catalog, read_categories
from quickdraw_dag.data.stream import open_split
from quickdraw_dag.errors import DataError
from quickdraw_dag.training.plots import image_grid


def agreement(probabilities: list[np.ndarray], labels: np.ndarray) -> dict[str, object]:
    """Each model's accuracy, the ensemble's, the share some model gets right, and the indices all miss."""
    for number, table in enumerate(probabilities):
        if table.shape[0] != labels.shape[0]:
            raise DataError(f"{table.shape[0]} rows for {labels.shape[0]} test drawings", path=f"model {number}")
    predictions = np.stack([table.argmax(1) for table in probabilities])
    wrong = predictions != labels[None, :]
    ensemble = np.mean(probabilities, axis=0)
    return {
        "each": [float(np.mean(~row)) for row in wrong],
        "ensemble": float(np.mean(ensemble.argmax(1) == labels)),
        "any_right": float(np.mean(~wrong.all(0))),
        "all_wrong": np.flatnonzero(wrong.all(0)),
        "ensemble_guess": ensemble.argmax(1),
        "ensemble_confidence": ensemble.max(1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="the processed project the probabilities were scored on")
    parser.add_argument("probabilities", nargs="+", type=Path, help=".npy files of test probabilities")
    parser.add_argument("--grid", type=Path, help="draw the drawings every model misses into this PNG")
    parser.add_argument("--columns", type=int, default=12)
    args = parser.parse_args()
    catalog = Catalog.under(args.project)
    names = read_categories(catalog)
    images, labels = open_split(catalog, "test")
    labels = np.asarray(labels, np.int64)
    result = agreement([np.load(path, allow_pickle=False) for path in args.probabilities], labels)
    count = len(labels)
    for path, accuracy in zip(args.probabilities, result["each"], strict=True):
        print(f"{path.name}: {100 * accuracy:.2f}% ({round((1 - accuracy) * count)} wrong)")
    missed = result["all_wrong"]
    print(f"ensemble (mean probability): {100 * result['ensemble']:.2f}%")
    print(f"some model right: {100 * result['any_right']:.2f}%")
    print(f"every model wrong: {len(missed)} of {count} ({100 * len(missed) / count:.2f}%)")
    pairs = Counter((names[labels[i]], names[result["ensemble_guess"][i]]) for i in missed)
    for (truth, guess), times in pairs.most_common():
        print(f"  {truth} -> {guess}: {times}")
    if args.grid is not None:
        titles = [
            f"{number}: {names[labels[i]]}\n→ {names[result['ensemble_guess'][i]]} "
            f"{100 * result['ensemble_confidence'][i]:.0f}%"
            for number, i in enumerate(missed)
        ]
        image_grid(
            np.asarray(images[missed]),
            titles,
            args.grid,
            args.columns,
            f"The {len(missed)} test drawings every model misses (label → ensemble's guess)",
        )
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
