"""Side-by-side figure of renderings: `python -m bench.rendering` → docs/rendering.png.

Rows: our rasterizer; a 16× supersampled rendering of the same numpy_bitmap
convention (Google's vector_to_raster: 256 box centred, padding 16, line 16,
anti-aliased); and the quickdraw package's image path (255×255 PIL drawing,
grayscale, resize, inverted to white-on-black for comparison).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.corpus import seed_drawings
from bench.raster import quickdraw_objects, quickdraw_path, reference
from quickdraw_dag.data.raster import rasterize

OUTPUT = Path("docs/rendering.png")


def main(count: int = 8) -> None:
    seed, origin = seed_drawings()
    picks = seed.take(np.linspace(0, len(seed) - 1, count).astype(int))
    rows = {
        "quickdraw_dag rasterize": rasterize(picks, 28),
        "16x supersampled reference": np.stack([reference(picks, i, 28) for i in range(count)]),
        "quickdraw .image → L → resize (inverted)": 255 - quickdraw_path(quickdraw_objects(picks), 28),
    }
    figure = Figure(figsize=(count * 1.4, len(rows) * 1.6))
    for r, (name, images) in enumerate(rows.items()):
        for c in range(count):
            axis = figure.add_subplot(len(rows), count, r * count + c + 1)
            axis.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    figure.suptitle(f"28×28 renderings of the same drawings ({origin})", fontsize=9)
    OUTPUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUTPUT, dpi=120, bbox_inches="tight")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
