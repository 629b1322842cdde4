"""Streaming batches from memory-mapped uint8 arrays.

`MemmapBatches` is a `keras.utils.PyDataset`: it never loads a whole split,
reshuffles its order every epoch (seeded), and returns NumPy arrays, so the
same input path feeds the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import keras
import numpy as np


def open_split(processed_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (images, labels) of a split; no pickles ever."""
    images = np.load(Path(processed_dir) / f"{split}_images.npy", mmap_mode="r", allow_pickle=False)
    labels = np.load(Path(processed_dir) / f"{split}_labels.npy", mmap_mode="r", allow_pickle=False)
    return images, labels


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of `fraction` of each class (at least one per class)."""
    if fraction >= 1:
        return np.arange(labels.shape[0])
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, int(round(fraction * members.size)))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


class MemmapBatches(keras.utils.PyDataset):
    """Batches of (uint8 images, int labels) read from memory-mapped arrays."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        indices: Sequence[int] | np.ndarray | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.indices = np.asarray(indices if indices is not None else np.arange(labels.shape[0]), np.int64)
        self.epoch = 0
        self.order = self._order_for(0)

    def _order_for(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return np.random.default_rng([self.seed, epoch]).permutation(self.indices)

    def __len__(self) -> int:
        return math.ceil(self.indices.size / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            rows = np.sort(rows)  # same batch, read in file order from the memory map
        return np.asarray(self.images[rows]), np.asarray(self.labels[rows], dtype=np.int32)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order_for(self.epoch)

    @property
    def num_samples(self) -> int:
        return int(self.indices.size)
