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


def chance_verdicts(batch_norm: bool, planned: int, epochs: list[dict]) -> tuple[list[bool], int]:
    """Feed `epochs` (their logs) to a ChanceStop on a tiny model; whether training was stopped after each."""
    import keras

    from quickdraw_dag.training.callbacks import ChanceStop

    layers = [keras.Input((4,)), keras.layers.Dense(3)]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    model = keras.Sequential(layers)
    stop = ChanceStop(num_classes=3)
    stop.set_model(model)
    stop.set_params({"epochs": planned})
    stop.on_train_begin()
    stopped = []
    for epoch, logs in enumerate(epochs):
        model.stop_training = False
        stop.on_epoch_end(epoch, logs)
        stopped.append(bool(model.stop_training))
    return stopped, stop.stopped_trials


AT_CHANCE = {"accuracy": 0.34, "val_accuracy": 0.35}  # 3 classes: chance 0.3333, limit 0.3667
LEARNING_BUT_VAL_LAGS = {"accuracy": 0.62, "val_accuracy": 0.3333}  # batch norm's moving statistics lag


@pytest.mark.parametrize(
    "batch_norm,planned,epochs,expected",
    [
        (False, 3, [AT_CHANCE, AT_CHANCE], [True, False]),  # diverged: judged after one epoch
        (False, 3, [LEARNING_BUT_VAL_LAGS, AT_CHANCE], [False, False]),  # training learns: not judged at chance
        (True, 3, [AT_CHANCE, AT_CHANCE, AT_CHANCE], [False, True, False]),  # batch norm: judged after two
        (True, 3, [AT_CHANCE, {"accuracy": 0.5, "val_accuracy": 0.6}, AT_CHANCE], [False, False, False]),
        (False, 1, [AT_CHANCE], [False]),  # a one-epoch trial: stopping at its last epoch saves nothing
        (True, 2, [AT_CHANCE, AT_CHANCE], [False, False]),  # nor at a batch-norm trial's last
        (False, 3, [{"accuracy": 0.3}], [False]),  # no validation accuracy: nothing to judge
        (False, 3, [{"val_accuracy": 0.2}], [True]),  # no training accuracy logged: validation decides
        (False, 3, [{"accuracy": 0.3666, "val_accuracy": 0.3666}], [True]),  # just under the limit (0.36667)
        (False, 3, [{"accuracy": 0.3668, "val_accuracy": 0.3668}], [False]),  # just over it
        (False, 3, [{"accuracy": 0.9, "val_accuracy": 0.9}], [False]),
    ],
)
def test_a_trial_is_stopped_at_chance_only_when_it_learned_nothing_and_could_have(
    batch_norm: bool, planned: int, epochs: list[dict], expected: list[bool]
) -> None:
    stopped, count = chance_verdicts(batch_norm, planned, epochs)
    assert stopped == expected and count == sum(expected)


@pytest.mark.parametrize(
    "scores,classes,decided_by,tied,at_chance",
    [
        ([0.9, 0.8, 0.5], 3, "score", [], 0),
        ([0.3333, 0.3333], 3, "tie-break", ["0000", "0001"], 2),  # the case: all stopped at chance
        ([0.8, 0.8, 0.2], 3, "tie-break", ["0000", "0001"], 1),
        ([0.5], 3, "single trial", [], 0),
        ([0.1, 0.1000000001], 10, "tie-break", ["0000", "0001"], 2),  # within the tolerance: equal
    ],
)
def test_a_search_that_cannot_rank_its_trials_says_so(
    scores: list[float], classes: int, decided_by: str, tied: list[str], at_chance: int
) -> None:
    from quickdraw_dag.training.tuner import ranking_note

    candidates = [
        {"trial_id": f"{i:04d}", "val_accuracy": score, "hyperparameters": {}} for i, score in enumerate(scores)
    ]
    note = ranking_note(candidates, classes)
    assert (note["decided_by"], note["tied_trials"], note["at_chance"]) == (decided_by, tied, at_chance)
    if decided_by == "tie-break":
        assert "could not rank them" in note["note"] and "trial 0000 won the tie-break" in note["note"]
        assert ("chance is" in note["note"]) == (at_chance >= len(tied))
        assert note["note"].startswith("all ") == (len(tied) == len(scores))
    else:
        assert "note" not in note


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
