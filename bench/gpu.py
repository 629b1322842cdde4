"""Training throughput of the default model on an accelerator (or the CPU), with the JAX backend.

    KERAS_BACKEND=jax python -m bench.gpu [--filters 64] [--batch-size 1024] [--mixed-precision] [--steps 200]

Trains the default CNN (augmentation off, as in a throughput test) on
memory-mapped 28×28 drawings streamed by the train stage's own
`MemmapBatches`, and reports: images per second, step time, whether the step
is input-bound (the time to serve a batch against the step time), and the
fraction of the device's peak FLOP/s reached (model FLOPs counted from its
layers, ×3 for forward + backward). Mixed precision (bfloat16) where it
helps: on GPUs with tensor cores. Prints one markdown row and the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

# Dense bf16 / fp32 peak FLOP/s by device name (vendor data sheets, SXM parts).
PEAKS = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12), "L4": (121e12, 30e12)}


def forward_flops(model) -> float:
    """Multiply-adds ×2 of the convolution and dense layers, per image."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            kh, kw, cin, cout = layer.kernel.shape
            total += 2.0 * height * width * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2.0 * cin * cout
    return total


def device_name() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {getattr(device, 'device_kind', device)}"
    return f"{keras.backend.backend()} (default device)"


def measure(
    filters: int = 64, batch_size: int = 1024, steps: int = 200, mixed_precision: bool = False, drawings: int = 100_000
) -> dict:
    import keras

    from bench.throughput import StepClock, write_split
    from quickdraw_dag.artifacts import Scaling
    from quickdraw_dag.config.schema import SearchSpace
    from quickdraw_dag.data.stream import MemmapBatches, open_split
    from quickdraw_dag.training.model import build_cnn

    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    with tempfile.TemporaryDirectory() as scratch:
        images, labels = open_split(write_split(Path(scratch), drawings), "train")
        batches = MemmapBatches(images, labels, batch_size=batch_size, shuffle=True, seed=0)
        served = min(len(batches), 100)
        started = time.perf_counter()
        for index in range(served):
            batches[index]
        serve_s = (time.perf_counter() - started) / served
        model = build_cnn(
            **{**SearchSpace().first_choices(), "filters": filters},
            image_size=28,
            num_classes=6,
            scaling=Scaling("minmax", 1 / 255, 0),
            augment=None,
            seed=0,
        )
        steps = min(steps, len(batches))
        clock = StepClock()
        model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock])  # epoch 1: compile
        step_s = clock.epoch_seconds[-1] / steps
    images_per_s = batch_size / step_s
    flops = 3 * forward_flops(model)
    name = device_name()
    peak = next((p for key, p in PEAKS.items() if key in name), None)
    achieved = flops * images_per_s
    return {
        "device": name,
        "backend": keras.backend.backend(),
        "filters": filters,
        "batch_size": batch_size,
        "mixed_precision": mixed_precision,
        "images_per_s": images_per_s,
        "step_ms": step_s * 1000,
        "batch_serve_ms": serve_s * 1000,
        "input_bound": serve_s > 0.5 * step_s,
        "train_flops_per_image": flops,
        "achieved_tflops": achieved / 1e12,
        "peak_fraction": (achieved / (peak[0] if mixed_precision else peak[1])) if peak else None,
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--drawings", type=int, default=100_000)
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "jax":
        print("note: KERAS_BACKEND is not 'jax'; the GPU figures in docs/PERFORMANCE.md use KERAS_BACKEND=jax")
    r = measure(args.filters, args.batch_size, args.steps, args.mixed_precision, args.drawings)
    fraction = f"{r['peak_fraction']:.1%}" if r["peak_fraction"] is not None else "n/a (peak unknown)"
    print(
        "| device | backend | filters | batch | precision | images/s | step ms | batch served in ms | input-bound | TFLOP/s | of peak |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---|---:|---:|")
    print(
        f"| {r['device']} | {r['backend']} | {r['filters']} | {r['batch_size']} | "
        f"{'bf16 mixed' if r['mixed_precision'] else 'fp32'} | {r['images_per_s']:,.0f} | {r['step_ms']:.2f} | "
        f"{r['batch_serve_ms']:.2f} | {'yes' if r['input_bound'] else 'no'} | {r['achieved_tflops']:.2f} | {fraction} |"
    )
    print(json.dumps(r))


if __name__ == "__main__":
    main()
