"""What one neuron can paint: the second tutorial's perceptron beside the deep MLP, in classification mode.

    python -m bench.perceptron [--image PATH] [--out docs/perceptron.png]

Trains the paint stage's own function twice on the tutorial's two colour
classes ("blue" when r + g + b ≤ 600, else "grey"): `hidden_layers: 0` (one
neuron with a leaky ReLU, slope 0.1) and the default 10×100 MLP. Prints each
one's pixel accuracy and writes the source and both paintings side by side.
The default image is drawn here like the tutorial's logo: a blue shape (hills
under a wavy skyline) on a light background, 100×60 pixels.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from quickdraw_dag.artifacts import PaintCatalog
from quickdraw_dag.config.paint import PaintParams
from tasks.paint import paint


def hills(path: Path) -> Path:
    """A blue shape under a wavy skyline on a light background: no straight line separates it exactly."""
    import numpy as np
    from PIL import Image

    ys, xs = np.mgrid[0:60, 0:100] / np.array([60.0, 100.0])[:, None, None]
    blue = ys > 0.55 + 0.18 * np.sin(2 * np.pi * 1.5 * xs) - 0.25 * xs
    image = np.where(blue[..., None], [29, 100, 181], [235, 238, 242]).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=None, help="any image Pillow reads (default: a drawn two-colour picture)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("docs/perceptron.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        image = args.image or str(hills(Path(scratch) / "hills.png"))
        for name, hidden in (("perceptron (0 hidden layers, 1 neuron)", 0), ("deep MLP (10 × 100)", 10)):
            params = PaintParams(image=image, mode="classification", hidden_layers=hidden, epochs=args.epochs)
            result = paint(params, PaintCatalog.under(Path(scratch) / str(hidden)))
            rows.append((name, result))
    print("| model | pixel accuracy | train s |")
    print("|---|---:|---:|")
    for name, result in rows:
        print(f"| {name} | {result['metrics']['pixel_accuracy']:.4f} | {result['metrics']['train_seconds']:.1f} |")
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    panels = [("source", rows[0][1]["source"])] + [
        (f"{name}\npixel accuracy {result['metrics']['pixel_accuracy']:.3f}", result["painting"])
        for name, result in rows
    ]
    for axis, (title, image) in zip(axes, panels):
        axis.imshow(image)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
