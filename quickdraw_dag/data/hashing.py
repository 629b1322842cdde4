"""Hashing: vectorized 64-bit ids for stable, order-free assignment of drawings, and file digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a fast, well-mixed bijection on uint64."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def text_seed(text: str) -> np.uint64:
    """A uint64 derived from a string (stable across runs and machines)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def unit_interval(values: np.ndarray, salt: int = 0) -> np.ndarray:
    """Map uint64 ids to floats in [0, 1), uniformly, keyed by `salt`."""
    mixed = splitmix64(values.astype(np.uint64) ^ splitmix64(np.array([salt], np.uint64))[0])
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (files may be larger than memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
