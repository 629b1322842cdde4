"""`train.devices`: which devices a run takes, the batch rule, and the config's bounds (this CPU, TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from quickdraw_dag.config.schema import TrainParams
from quickdraw_dag.data.stream import MemmapBatches
from quickdraw_dag.errors import ConfigError
from quickdraw_dag.training.devices import Placement, check_batch, place


def test_auto_takes_one_device_without_accelerators_and_more_than_visible_is_a_config_error() -> None:
    auto = place("auto", backend="tensorflow")
    assert auto.count == 1 and "CPU" in auto.devices[0]
    assert place(1, backend="tensorflow").devices == auto.devices
    with pytest.raises(ConfigError, match=r"train.devices=3: tensorflow sees 1 CPU device"):
        place(3, backend="tensorflow")
    with pytest.raises(ConfigError, match="jax and tensorflow backends, not torch"):
        place(2, backend="torch")


@pytest.mark.parametrize("value", [0, -1, 2000, "all"])
def test_devices_must_be_auto_or_a_count(value: object) -> None:
    with pytest.raises(ValidationError, match="devices"):
        TrainParams(devices=value)


def test_the_global_batch_must_split_evenly_between_jax_devices_only() -> None:
    two_jax = Placement("jax", ("cpu:0", "cpu:1"))
    check_batch(two_jax, 128)
    with pytest.raises(ConfigError, match="train.batch_size=127: .* multiple of 2"):
        check_batch(two_jax, 127)
    check_batch(Placement("tensorflow", ("/gpu:0", "/gpu:1")), 127)  # MirroredStrategy splits unevenly


@pytest.mark.parametrize(("rows", "multiple", "served"), [(277, 2, 276), (277, 1, 277), (256, 2, 256), (261, 4, 260)])
def test_the_last_short_batch_is_cut_to_a_multiple_of_the_devices(rows: int, multiple: int, served: int) -> None:
    images, labels = np.zeros((rows, 2, 2), np.uint8), np.arange(rows) % 3
    batches = MemmapBatches(images, labels, batch_size=32, shuffle=True, multiple_of=multiple)
    sizes = [batches[i][1].shape[0] for i in range(len(batches))]
    assert sum(sizes) == served and all(size % multiple == 0 for size in sizes)
