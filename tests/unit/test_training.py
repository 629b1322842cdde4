"""Training callbacks: what every epoch logs, and what a resumed run keeps."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from quickdraw_dag.artifacts import csv_bytes
from quickdraw_dag.config.schema import TrainParams
from quickdraw_dag.training.callbacks import BEST_CHECKPOINT, EPOCH_LOG, EpochLearningRate, training_callbacks


def kinds(callbacks: list) -> list[str]:
    return [type(c).__name__ for c in callbacks]


def test_the_learning_rate_is_in_the_logs_before_the_csv_logger_fixes_its_columns(tmp_path: Path) -> None:
    order = kinds(training_callbacks(TrainParams(), tmp_path).all)
    assert order.index("EpochLearningRate") < order.index("CSVLogger")
    assert order[-1] == "BackupAndRestore"  # best checkpoint and log row are written before the backup


def test_epoch_learning_rate_reads_the_optimizer() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.0025), loss="mse")
    callback = EpochLearningRate()
    callback.set_model(model)
    logs: dict = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert logs["learning_rate"] == pytest.approx(0.0025)


def test_a_resumed_run_keeps_the_best_val_accuracy_of_its_finished_epochs(tmp_path: Path) -> None:
    rows = [[1, 0.5, 0.6, 0.9], [2, 0.4, 0.9, 0.7], [3, 0.35, 0.8, 0.8]]
    (tmp_path / EPOCH_LOG).write_bytes(csv_bytes(["epoch", "loss", "val_accuracy", "val_loss"], rows))
    (tmp_path / BEST_CHECKPOINT).write_bytes(b"the checkpoint of epoch 2")
    checkpoint = next(
        c for c in training_callbacks(TrainParams(), tmp_path).all if isinstance(c, keras.callbacks.ModelCheckpoint)
    )
    assert checkpoint.best == 0.9  # so epoch 4 at 0.85 does not replace epoch 2's checkpoint


def test_a_fresh_run_starts_from_nothing(tmp_path: Path) -> None:
    checkpoint = next(
        c for c in training_callbacks(TrainParams(), tmp_path).all if isinstance(c, keras.callbacks.ModelCheckpoint)
    )
    assert checkpoint.best is None or checkpoint.best == float("-inf")  # Keras's own start: no threshold


def test_network_flops_counts_each_convolution_and_the_dense_layer_by_hand() -> None:
    """bench.throughput's FLOP count: 2 per multiply-add, worked out layer by layer for 28×28 and 32 filters."""
    from bench.throughput import network_flops
    from quickdraw_dag.artifacts import Scaling
    from quickdraw_dag.config.schema import SearchSpace
    from quickdraw_dag.training.model import build_cnn

    values = {**SearchSpace().first_choices(), "filters": 32}
    model = build_cnn(
        **values, image_size=28, num_classes=8, scaling=Scaling("minmax", 1 / 255, 0), augment=None, seed=0
    )
    conv = 9 * (28 * 28 * (1 * 32 + 32 * 32) + 14 * 14 * (32 * 64 + 64 * 64) + 7 * 7 * (64 * 128 + 128 * 128))
    dense = 3 * 3 * 128 * 8
    assert network_flops(model) == 2 * (conv + dense) == 58_272_768
