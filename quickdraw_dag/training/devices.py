"""Data-parallel training with the backend's own distribution API: `train.devices`.

Each device holds a copy of the model and trains on its share of every
global batch (`train.batch_size`); the gradients are summed across devices
before each update, so the run is the one-device run with the sums taken in
another order. JAX uses Keras's distribution API
(`keras.distribution.DataParallel`), TensorFlow its `MirroredStrategy`; the
model is built and compiled inside the chosen scope and trains with the same
`fit` call. `auto` takes every visible accelerator (GPU or TPU), or one
device when there is none, so a CPU-only machine trains as it always did.

JAX shards a batch only into equal parts: the global batch must divide by
the device count, and the last, short batch of an epoch is cut to a
multiple of it (`MemmapBatches(multiple_of=...)`): at most count-1 drawings
sit out an epoch, different ones each epoch since the order is reshuffled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import keras

from quickdraw_dag.errors import ConfigError

log = logging.getLogger(__name__)
ACCELERATORS = ("gpu", "tpu")


@dataclass(frozen=True)
class Placement:
    """The devices a training run uses, as the backend names them."""

    backend: str
    devices: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def on_cpu(self) -> bool:
        """Whether every device is a CPU (TensorFlow names them `/device:CPU:0`, JAX `cpu:0`)."""
        return all("cpu" in name.lower() for name in self.devices)

    @property
    def batch_multiple(self) -> int:
        """Every batch's size must be a multiple of this (JAX shards only into equal parts)."""
        return self.count if self.backend == "jax" else 1

    def scope(self) -> Any:
        """Build, compile and train inside this: the model's variables are placed on every device."""
        if self.count == 1:
            return nullcontext()
        if self.backend == "jax":
            return keras.distribution.DataParallel(devices=list(self.devices)).scope()
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=list(self.devices)).scope()


def visible_devices(backend: str) -> dict[str, list[str]]:
    """The devices the backend sees, by kind (`cpu`, `gpu`, `tpu`), in the backend's own names."""
    found: dict[str, list[str]] = {}
    if backend == "jax":
        import jax

        for device in jax.devices():
            found.setdefault(device.platform, []).append(f"{device.platform}:{device.id}")
        found.setdefault("cpu", [f"cpu:{device.id}" for device in jax.devices("cpu")])
    elif backend == "tensorflow":
        import tensorflow as tf

        for device in tf.config.list_logical_devices():
            found.setdefault(device.device_type.lower(), []).append(device.name)
    else:  # torch: one device here (data parallel is not wired for it)
        found["cpu"] = ["cpu"]
    return found


def place(requested: Literal["auto"] | int, backend: str | None = None) -> Placement:
    """The devices for `train.devices`: every accelerator for `auto` (one CPU without any), or the first N.

    N counts accelerators when there are any, CPU devices otherwise (JAX shows several only when asked to:
    `XLA_FLAGS=--xla_force_host_platform_device_count=N`). Fewer than N visible is a config error.
    """
    backend = backend or keras.backend.backend()
    found = visible_devices(backend)
    accelerators = [name for kind in ACCELERATORS for name in found.get(kind, [])]
    pool = accelerators or found.get("cpu", [])
    if requested == "auto":
        chosen = accelerators or pool[:1]
    else:
        if requested > 1 and backend not in ("jax", "tensorflow"):
            raise ConfigError(
                f"train.devices={requested}: data-parallel training runs on the jax and tensorflow backends, "
                f"not {backend}; set KERAS_BACKEND=jax (or tensorflow), or train.devices=1"
            )
        if requested > len(pool):
            kind = "accelerator" if accelerators else "CPU"
            raise ConfigError(
                f"train.devices={requested}: {backend} sees {len(pool)} {kind} device(s) "
                f"({', '.join(pool) or 'none'}); use auto or at most that many"
            )
        chosen = pool[:requested]
    return Placement(backend, tuple(chosen))


def check_batch(placement: Placement, batch_size: int, key: str = "train.batch_size") -> None:
    """The global batch must split evenly between the devices."""
    if batch_size % placement.batch_multiple:
        raise ConfigError(
            f"{key}={batch_size}: the global batch is split between train.devices ({placement.count} on "
            f"{placement.backend}), so it must be a multiple of {placement.count}"
        )


@contextmanager
def training_on(placement: Placement) -> Iterator[Placement]:
    """Everything built and trained inside runs on `placement`'s devices (one device: nothing changes)."""
    if placement.count > 1:
        log.info("train: data parallel over %d devices (%s): %s", placement.count, placement.backend, placement.devices)
    with placement.scope():
        yield placement
