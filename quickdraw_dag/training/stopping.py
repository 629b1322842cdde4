"""Stopping a Keras loop promptly on SIGTERM or Ctrl-C, between two batches.

Its own module, so the stages that only predict (evaluate, paint) depend on it and not on the
training callbacks.
"""

from __future__ import annotations

import keras

from quickdraw_dag.runtime.interrupt import raise_if_stopping


class StopWhenSignalled(keras.callbacks.Callback):
    """Raise, after the batch, a stop (SIGTERM, Ctrl-C) deferred because it arrived in TensorFlow's code.

    Under TensorFlow the main thread spends a fit or a predict inside TensorFlow's Python, where the stop
    is not raised (`interrupt.stop_on_signals`); between two batches it is safe to raise.
    """

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stopping()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stopping()

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stopping()


def stop_when_signalled() -> list[keras.callbacks.Callback]:
    """`StopWhenSignalled` under TensorFlow; none elsewhere (JAX's loop is not TensorFlow's code, and a
    per-batch hook would turn off Keras's asynchronous dispatch there)."""
    return [StopWhenSignalled()] if keras.backend.backend() == "tensorflow" else []
