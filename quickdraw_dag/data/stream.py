"""Streaming batches from memory-mapped uint8 arrays.

`MemmapBatches` is a `keras.utils.PyDataset`: it never loads a whole split,
reshuffles its order every epoch (seeded), and returns NumPy arrays, so the
same input path feeds the TensorFlow, JAX and torch backends.

Rows of a `.npy` file are read with `pread`, not through the memory map:
a random row touched through a map faults in its neighbours too (the
kernel's fault-around), so over an epoch the process would map most of the
file and its resident memory would grow with the data. `pread` copies just
the batch; the file stays in the page cache, which the kernel can reclaim.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import keras
import numpy as np

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.errors import DataError


def open_split(catalog: Catalog, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (images, labels) of a split; no pickles ever."""
    try:
        images = np.load(catalog.images(split), mmap_mode="r", allow_pickle=False)
        labels = np.load(catalog.labels(split), mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as error:
        raise DataError("missing: run the preprocess stage first", path=error.filename) from None
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


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`array[rows]` (rows sorted); for a file-backed array, by `pread` of each run of adjacent rows."""
    filename = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or filename is None or not array.flags.c_contiguous:
        return np.asarray(array[rows])
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
    out = np.empty((rows.size, *array.shape[1:]), array.dtype)
    if rows.size == 0:
        return out
    # Split into runs of consecutive rows: one read per run (one per batch when reading in order).
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [rows.size]))
    view = out.reshape(rows.size, -1).view(np.uint8)
    descriptor = os.open(filename, os.O_RDONLY)
    try:
        for begin, end in zip(starts.tolist(), ends.tolist()):
            wanted = (end - begin) * row_bytes
            offset = array.offset + int(rows[begin]) * row_bytes
            data = os.pread(descriptor, wanted, offset)
            if len(data) != wanted:
                raise OSError(f"{filename}: short read at byte {offset}")
            view[begin:end] = np.frombuffer(data, np.uint8).reshape(end - begin, row_bytes)
    finally:
        os.close(descriptor)
    return out


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
        multiple_of: int = 1,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.indices = np.asarray(indices if indices is not None else np.arange(labels.shape[0]), np.int64)
        # Data parallel on JAX shards a batch into equal parts: the last, short batch is cut to a multiple of
        # the device count (the rows left out differ every epoch, since the order is reshuffled).
        self.epoch_size = self.indices.size - (self.indices.size % self.batch_size) % max(1, int(multiple_of))
        self.epoch = 0
        self.order = self._order_for(0)

    def _order_for(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return np.random.default_rng([self.seed, epoch]).permutation(self.indices)

    def __len__(self) -> int:
        return math.ceil(self.epoch_size / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : min((index + 1) * self.batch_size, self.epoch_size)]
        if self.shuffle:
            rows = np.sort(rows)  # same batch, read in file order
        return read_rows(self.images, rows), np.asarray(self.labels[rows], dtype=np.int32)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Serve epoch `epoch`'s order (a run resumed at epoch k reads what an uninterrupted run would)."""
        self.epoch = int(epoch)
        self.order = self._order_for(self.epoch)

    @property
    def num_samples(self) -> int:
        return int(self.indices.size)
