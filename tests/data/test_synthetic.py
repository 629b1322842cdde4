"""The synthetic source: seeded, varied, distinct classes, valid simplified strokes."""

from __future__ import annotations

import numpy as np

from quickdraw_dag.data import synthetic
from quickdraw_dag.config.schema import SYNTHETIC_CATEGORIES
from quickdraw_dag.data.formats.binary import encode_binary


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = encode_binary(synthetic.generate("star", 40, seed=1))
    assert a == encode_binary(synthetic.generate("star", 40, seed=1))
    assert a != encode_binary(synthetic.generate("star", 40, seed=2))


def test_every_class_is_valid_simplified_data_with_human_variation() -> None:
    assert len(SYNTHETIC_CATEGORIES) >= 6
    for category in SYNTHETIC_CATEGORIES:
        batch = synthetic.generate(category, 60, seed=0)
        assert len(batch) == 60 and len(np.unique(batch.key_id)) == 60
        # Google's simplified convention: aligned to 0, longer side reaching 255
        # (RDP may drop the extreme point itself, by at most its epsilon of 2).
        for index in range(0, 60, 7):
            xs = np.concatenate([s[0] for s in batch.strokes(index)])
            ys = np.concatenate([s[1] for s in batch.strokes(index)])
            assert xs.min() <= 2 and ys.min() <= 2 and max(xs.max(), ys.max()) >= 253
        signatures = {encode_binary(batch.take([i]))[17:] for i in range(60)}
        assert len(signatures) == 60, f"{category}: every drawing should differ"
    total = sum(int((synthetic.generate(c, 200).recognized == 0).sum()) for c in ("circle", "square"))
    assert 5 <= total <= 40  # about 5% of 400


def test_classes_differ_in_simple_statistics() -> None:
    """Points per drawing tell a line from a star: the classes are learnable."""
    points = {c: np.diff(synthetic.generate(c, 200).point_start).mean() for c in ("line", "star", "circle")}
    assert points["line"] < points["circle"] and points["line"] < points["star"]
