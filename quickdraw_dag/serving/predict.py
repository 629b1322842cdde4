"""predict: classify drawings from files with the registered champion (or any model).

    python -m quickdraw_dag.serving.predict FILE... [--model URI] [--top-k 3] [--json] [--format auto]

Reads Google's raw or simplified `.ndjson`, `.bin`, numpy_bitmap `.npy`,
pictures (PNG, JPEG, ...) and `.json` strokes, and prints the top-k labels
of every drawing: a table, or with `--json` one JSON object per line with
`file`, `drawing` (its line, byte offset, row or index), `label`,
`probability` and `top_k` (the same fields `mlflow models serve` answers).
Bad input exits with code 2 naming the file and the line or offset.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
import orjson

from quickdraw_dag.errors import DataError, QuickDrawDagError
from quickdraw_dag.runtime.progress import progress_bar
from quickdraw_dag.serving.classifier import TOP_K, Classifier
from quickdraw_dag.serving.images import ImageError
from quickdraw_dag.serving.readers import Chunk, check_input, iter_chunks
from quickdraw_dag.serving.registry import DEFAULT_MODEL_URI, load_served_model
from quickdraw_dag.serving.strokes import STROKE_FORMATS, StrokeFormat

T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m quickdraw_dag.serving.predict"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".ndjson, .bin, .npy, .json or a picture")
    parser.add_argument("--model", default=None, help=f"an MLflow model URI or path (default: {DEFAULT_MODEL_URI})")
    parser.add_argument("--top-k", type=int, default=TOP_K, help=f"labels per drawing (default: {TOP_K})")
    parser.add_argument("--json", action="store_true", help="one JSON object per drawing instead of a table")
    parser.add_argument(
        "--format",
        choices=STROKE_FORMATS,
        default="auto",
        help="strokes in .json files: raw (screen coordinates), simplified (0-255), or auto (detect)",
    )
    return parser


def chunk_images(classifier: Classifier, chunk: Chunk) -> np.ndarray:
    """The chunk's drawings through the one input path: the model's input images."""
    if chunk.batch is not None:
        return classifier.images_from_batch(chunk.batch)
    try:
        return classifier.images_from_pixels(chunk.pictures)
    except ImageError as error:
        raise DataError(str(error), path=chunk.path) from None


def predict_files(
    classifier: Classifier, files: Sequence[Path], k: int = TOP_K, fmt: StrokeFormat = "auto"
) -> Iterator[dict[str, Any]]:
    """One result per drawing, in file order: `file`, `drawing`, `label`, `probability`, `top_k`."""
    prepared = ((chunk, chunk_images(classifier, chunk)) for path in files for chunk in iter_chunks(path, fmt))
    for chunk, images in read_ahead(prepared):
        for where, result in zip(chunk.where, classifier.classify(images, k)):
            yield {"file": str(chunk.path), "drawing": where, **result}


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a thread up to `depth` ahead: files are parsed and rasterized while the model runs.

    Parsing and the rasterizer's compiled loop release the GIL or interleave with
    the model's calls, which release it too, so two cores work at once. Errors
    reach the consumer in order, after the items before them.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(("done", None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            slots.put(("error", error))

    worker = threading.Thread(target=produce, name="predict-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()  # the consumer stopped early (an error, or it had enough): let the thread end


class TablePrinter:
    """Rows of `file  drawing  1st label  p  2nd label  p ...`, aligned for a terminal."""

    def __init__(self, out: TextIO, k: int, files: Sequence[Path]) -> None:
        self.out = out
        self.name_width = max(len(str(p)) for p in files)
        ranks = "".join(f"  {self._ordinal(i):<22}" for i in range(1, k + 1))
        out.write(f"{'file':<{self.name_width}}  {'drawing':<16}{ranks}".rstrip() + "\n")

    @staticmethod
    def _ordinal(n: int) -> str:
        return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"

    def write(self, result: dict[str, Any]) -> None:
        guesses = "".join(f"  {g['label'][:15]:<15} {g['probability']:6.1%}" for g in result["top_k"])
        self.out.write(f"{result['file']:<{self.name_width}}  {result['drawing']:<16}{guesses}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        print("error: --top-k: must be at least 1", file=sys.stderr)
        return 2
    try:
        for path in args.files:
            check_input(path)  # every file's type and presence before any output
        served = load_served_model(args.model)
        k = min(args.top_k, len(served.classifier.card.categories))
        started, count = time.monotonic(), 0
        printer = None if args.json else TablePrinter(sys.stdout, k, args.files)
        with progress_bar(desc="predict", unit="drawing") as bar:
            for result in predict_files(served.classifier, args.files, k, args.format):
                if printer is None:
                    sys.stdout.write(orjson.dumps(result).decode() + "\n")
                else:
                    printer.write(result)
                count += 1
                bar.update(1)
    except QuickDrawDagError as error:
        sys.stdout.flush()
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    seconds = time.monotonic() - started
    version = f" (version {served.version})" if served.version else ""
    print(
        f"{count} drawing(s) from {len(args.files)} file(s) in {seconds:.2f}s with {served.uri}{version}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
