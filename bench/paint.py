"""Paint quality and time: the plain MLP against Fourier features, on matplotlib's samples.

    python -m bench.paint [--epochs 100] [--longest-side 100]

Runs the paint stage's own function with paint/params.yaml's defaults (10×100
ReLU MLP, Adam 1e-3, batch 32, seed 0), once per row, in this process, and
prints a markdown table: PSNR, MSE, training seconds, and the gain of the
encoding over the plain MLP on the same image.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from quickdraw_dag.artifacts import PaintCatalog
from quickdraw_dag.config.paint import PaintParams
from tasks.paint import paint

ROWS = (
    ("matplotlib:grace_hopper.jpg", False),
    ("matplotlib:grace_hopper.jpg", True),
    ("matplotlib:logo2.png", False),
    ("matplotlib:logo2.png", True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--longest-side", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("| image | encoding | pixels | PSNR (dB) | gain (dB) | MSE | train s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    plain: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for image, fourier in ROWS:
            params = PaintParams(
                image=image, epochs=args.epochs, longest_side=args.longest_side, fourier={"enabled": fourier}
            )
            metrics = paint(params, PaintCatalog.under(Path(scratch)))["metrics"]
            name = image.removeprefix("matplotlib:")
            if not fourier:
                plain[name] = metrics["psnr_db"]
            gain = f"{metrics['psnr_db'] - plain[name]:+.2f}" if fourier and name in plain else ""
            encoding = f"Fourier {params.fourier.size}@{params.fourier.scale:g}" if fourier else "(x, y)"
            print(
                f"| {name} | {encoding} | {metrics['width']}×{metrics['height']} | {metrics['psnr_db']:.2f} | "
                f"{gain} | {metrics['mse']:.5f} | {metrics['train_seconds']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
