"""The evaluate plots choose a readable form for the number of classes (issue 17: 344 classes)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.training import plots


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def confusion(classes: int, per_class: int = 25) -> np.ndarray:
    """Every class right except: class 5 loses 9 drawings to class 7, class 1 loses 4 to class 2 and 2 to 3."""
    matrix = np.diag(np.full(classes, per_class))
    for true, predicted, count in ((5, 7, 9), (1, 2, 4), (1, 3, 2)):
        matrix[true, true] -= count
        matrix[true, predicted] += count
    return matrix


def test_few_classes_keep_the_full_confusion_matrix(tmp_path: Path) -> None:
    labels = [f"class{i}" for i in range(8)]
    assert plots.confusion_views(confusion(8), labels, tmp_path) == ["confusion_matrix"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png"]


@pytest.mark.parametrize("classes", [plots.MANY_CLASSES + 1, 344])
def test_many_classes_get_ranked_views_of_readable_size(tmp_path: Path, classes: int) -> None:
    labels = [f"category number {i}" for i in range(classes)]
    written = plots.confusion_views(confusion(classes), labels, tmp_path)
    assert written == ["most_confused", "class_accuracy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class_accuracy.png", "most_confused.png"]
    for name in written:
        width, height = png_size(tmp_path / f"{name}.png")
        assert width <= 1600 and height <= 1200, (name, width, height)  # 344 classes: was 5,263 x 4,810


def test_the_most_confused_pairs_and_worst_classes_are_ranked_by_their_counts() -> None:
    matrix = confusion(344)
    assert plots.most_confused_pairs(matrix) == [(5, 7, 9, 0.36), (1, 2, 4, 0.16), (1, 3, 2, 0.08)]
    assert plots.most_confused_pairs(matrix, count=1) == [(5, 7, 9, 0.36)]
    accuracy = plots.per_class_accuracy(matrix)
    assert accuracy[5] == pytest.approx(16 / 25) and accuracy[1] == pytest.approx(19 / 25) and accuracy[0] == 1.0
    worst = plots.worst_classes(matrix, count=4)
    assert worst.tolist() == [5, 1, 0, 2]  # then ties in index order
    empty = np.zeros((40, 40), np.int64)  # a class with no test drawings scores 0, and nothing is confused
    assert plots.most_confused_pairs(empty) == [] and plots.per_class_accuracy(empty).max() == 0.0
