"""Training and prediction speed against the input pipeline and against the machine's own limit.

    python -m bench.throughput [--filters N] [--batch-size 128] [--steps 60] [--matmul 2048]
                               [--precision float32 mixed_bfloat16]

On the same memory-mapped training split (real-shaped drawings at 28×28):

- the input side times `MemmapBatches` serving shuffled batches; the model
  side times `fit` steps of the default CNN (params.yaml's first choice of
  each hyperparameter, `SearchSpace().first_choices()`), after one warm-up
  epoch so compilation is excluded. The input must be ≥ 10× faster than
  training consumes, so it is never the bottleneck.
- achieved FLOP/s: the network's floating-point operations per image
  (`network_flops`: the multiply-adds of its convolutions and dense layer,
  2 FLOPs each; batch norm, activations and pooling are left out, under 2%
  here) times images/s. A training step costs 3× the forward pass (forward,
  then the gradients of the activations and of the weights); prediction is
  the forward pass, timed with `predict` on in-memory images at the evaluate
  stage's batch size.
- the machine's float32 peak, measured in the same run: the best of several
  large square matmuls (`--matmul` N×N, 2N³ FLOPs each) through the same
  backend and thread pool. Each ratio is achieved / peak.
- `--precision`: the arithmetic of training and prediction
  (`train.precision`); with several, each is measured in turn in the same
  run, against the peak of its own type (a bfloat16 matmul for
  `mixed_bfloat16`), and the training speed-up over the first is printed.
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
from quickdraw_dag.config.schema import PRECISIONS, Precision, PreprocessParams, SearchSpace
from quickdraw_dag.data.raster import rasterize
from quickdraw_dag.data.stream import MemmapBatches, open_split
from quickdraw_dag.training.model import build_cnn
from quickdraw_dag.training.precision import dtype_policy


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


def network_flops(model: keras.Model) -> int:
    """Forward FLOPs per image: 2 per multiply-add of each convolution and dense layer."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            total += 2 * height * width * kernel_h * kernel_w * channels_in * channels_out
        elif isinstance(layer, keras.layers.Dense):
            inputs, outputs = layer.kernel.shape
            total += 2 * inputs * outputs
    return int(total)


def matmul_peak(size: int = 2048, repeats: int = 8, dtype: str = "float32") -> float:
    """The backend's matmul rate in FLOP/s (of `dtype`): the best of `repeats` N×N products (after a warm-up)."""
    rng = np.random.default_rng(0)
    a = keras.ops.cast(rng.standard_normal((size, size), dtype=np.float32), dtype)
    b = keras.ops.cast(rng.standard_normal((size, size), dtype=np.float32), dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b))  # to NumPy: waits for the result on any backend
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def prediction_rate(model: keras.Model, images: np.ndarray, batch_size: int = 512) -> float:
    """Images/s of `predict` over in-memory `images` (the evaluate stage's batch size), after a warm-up pass."""
    images = np.ascontiguousarray(images)
    model.predict(images, batch_size=batch_size, verbose=0)
    started = time.perf_counter()
    model.predict(images, batch_size=batch_size, verbose=0)
    return images.shape[0] / (time.perf_counter() - started)


def measure(
    filters: int | None = None,
    batch_size: int = 128,
    steps: int = 60,
    image_size: int = 28,
    drawings: int = 50_000,
    matmul: int = 2048,
    precision: Precision = "float32",
) -> dict:
    peak_type = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    peak_before = matmul_peak(matmul, dtype=peak_type)
    with tempfile.TemporaryDirectory() as scratch:
        images, labels = open_split(write_split(Path(scratch), drawings, image_size), "train")
        batches = MemmapBatches(images, labels, batch_size=batch_size, shuffle=True, seed=0)
        served = min(len(batches), 300)
        started = time.perf_counter()
        for index in range(served):
            batches[index]
        input_rate = served / (time.perf_counter() - started)

        network = SearchSpace().first_choices()
        if filters is not None:
            network["filters"] = filters
        with dtype_policy(precision):
            model = build_cnn(
                **network,
                image_size=image_size,
                num_classes=6,
                scaling=Scaling("minmax", 1 / 255, 0),
                augment=None,
                seed=0,
            )
        clock = StepClock()
        model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock], shuffle=False)
        step_s = clock.epoch_seconds[-1] / steps
        predicted = min(drawings, 10_240)
        predict_rate = prediction_rate(model, images[:predicted])
    # Before and after the model, the better of the two: a neighbour's burst of work lowers one, not both.
    peak = max(peak_before, matmul_peak(matmul, dtype=peak_type))
    forward = network_flops(model)
    train_flops = 3 * forward * batch_size / step_s
    predict_flops = forward * predict_rate
    return {
        "network": {k: v for k, v in network.items()},
        "filters": network["filters"],
        "batch_norm": network["batch_norm"],
        "forward_mflops_per_image": forward / 1e6,
        "train_gflops": train_flops / 1e9,
        "predict_gflops": predict_flops / 1e9,
        "predict_images_per_s": predict_rate,
        "matmul_size": matmul,
        "precision": precision,
        "peak_type": peak_type,
        "peak_gflops": peak / 1e9,
        "train_of_peak": train_flops / peak,
        "predict_of_peak": predict_flops / peak,
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
    parser.add_argument("--filters", type=int, default=None, help="default: the default network's (params.yaml)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--matmul", type=int, default=2048, help="N of the N×N matmul timed for the peak")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=PRECISIONS, help="one or several")
    args = parser.parse_args()
    results = [
        measure(args.filters, args.batch_size, args.steps, matmul=args.matmul, precision=p) for p in args.precision
    ]
    for r in results:
        report(r, args.json)
    for r in results[1:]:
        speedup = r["images_per_s"] / results[0]["images_per_s"]
        print(f"training in {r['precision']}: {speedup:.2f}x the images/s of {results[0]['precision']} (same run)")


def report(r: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(r, default=str))
        return
    print(f"precision: {r['precision']}")
    print(
        f"input: {r['input_batches_per_s']:,.0f} batches/s; training ({r['backend']}, {r['filters']} filters, "
        f"batch norm {r['batch_norm']}, batch {r['batch_size']}): {r['train_steps_per_s']:,.1f} steps/s = "
        f"{r['images_per_s']:,.0f} images/s; input/training ratio {r['ratio']:,.0f}x\n"
        f"network: {r['forward_mflops_per_image']:.1f} MFLOP per image forward (convolutions and dense)\n"
        f"{r['peak_type']} matmul peak ({r['matmul_size']}x{r['matmul_size']}): {r['peak_gflops']:.1f} GFLOP/s\n"
        f"training:   {r['train_gflops']:.1f} GFLOP/s = {r['train_of_peak']:.0%} of peak\n"
        f"prediction: {r['predict_gflops']:.1f} GFLOP/s = {r['predict_of_peak']:.0%} of peak "
        f"({r['predict_images_per_s']:,.0f} images/s, batch 512)"
    )


if __name__ == "__main__":
    main()
