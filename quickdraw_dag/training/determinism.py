"""Same params, same data, same code, same machine and backend: the same bytes.

`seed_everything` seeds Python, NumPy and the Keras backend from one seed and,
in deterministic mode, asks the backend for deterministic kernels
(TensorFlow's op determinism; PyTorch's deterministic algorithms; XLA's
deterministic GPU ops for JAX, which must be set before JAX starts).
`save_model` writes a `.keras` file whose bytes depend only on the model:
Keras stamps the save time into the archive, which would give every run a
new DVC hash.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import keras

# A fixed timestamp for every archive member (the earliest a zip can hold).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
SHARED_OBJECT_ID = "shared_object_id"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator from `seed`; in deterministic mode, use only deterministic kernels."""
    backend = keras.backend.backend()
    if deterministic and backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:  # read when JAX first compiles for a GPU
            os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    keras.utils.set_random_seed(seed)
    if backend == "tensorflow":
        import tensorflow as tf

        if deterministic:
            tf.config.experimental.enable_op_determinism()
        else:
            tf.config.experimental.disable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(deterministic, warn_only=False)


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save(path)`, then rewrite the archive without its save time, so equal models give equal bytes."""
    path = Path(path)
    raw = path.with_name(path.name + ".raw.keras")
    model.save(raw)
    try:
        canonical_archive(raw, path)
    finally:
        raw.unlink(missing_ok=True)


def canonical_archive(source: Path, target: Path) -> None:
    """Copy a `.keras` zip with fixed member timestamps and no `date_saved` in its metadata."""
    with zipfile.ZipFile(source) as archive_in, zipfile.ZipFile(target, "w") as archive_out:
        for info in archive_in.infolist():
            data = archive_in.read(info.filename)
            if info.filename == KERAS_METADATA:
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode("utf-8")
            elif info.filename == KERAS_CONFIG:
                data = json.dumps(renumber_shared_objects(json.loads(data)), sort_keys=True).encode("utf-8")
            member = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            member.compress_type = info.compress_type
            member.external_attr = info.external_attr
            archive_out.writestr(member, data)


def renumber_shared_objects(config: Any) -> Any:
    """Keras names an object shared between layers (one regularizer, say) by its Python `id()`, which
    differs from process to process; number them 1, 2, ... in order of appearance instead."""
    numbers: dict[Any, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: numbers.setdefault(value, len(numbers) + 1) if key == SHARED_OBJECT_ID else walk(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)
