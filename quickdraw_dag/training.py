"""Training helpers shared by tune and train: callbacks, seeding, data fingerprints."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import keras

from quickdraw_dag.model import Augmentation, Scaling


class TimeBudget(keras.callbacks.Callback):
    """Stop before an epoch that would end past `max_seconds` (predicted from the slowest epoch)."""

    def __init__(self, max_seconds: float | None, started: float | None = None) -> None:
        super().__init__()
        self.max_seconds = max_seconds
        self.started = started
        self.slowest = 0.0
        self.epoch_started = 0.0
        self.stopped_for_time = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        self.slowest = max(self.slowest, now - self.epoch_started)
        if self.max_seconds is not None and now - self.started + self.slowest > self.max_seconds:
            self.stopped_for_time = True
            self.model.stop_training = True


class TargetAccuracy(keras.callbacks.Callback):
    """Stop once validation accuracy reaches `target` (the seed's 0.99 stop, configurable)."""

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target
        self.reached_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and logs.get("val_accuracy", 0.0) >= self.target:
            self.reached_at = epoch
            self.model.stop_training = True


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (config + data identity)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def data_identity(processed_dir: Path) -> dict[str, Any]:
    """What identifies the processed data without hashing the arrays."""
    processed_dir = Path(processed_dir)
    return {
        name: json.loads((processed_dir / name).read_text())
        for name in ("labels.json", "scaling.json", "summary.json")
    }


def load_scaling(processed_dir: Path) -> Scaling:
    return Scaling.from_json(json.loads((Path(processed_dir) / "scaling.json").read_text()))


def load_categories(processed_dir: Path) -> list[str]:
    return list(json.loads((Path(processed_dir) / "labels.json").read_text())["categories"])


def augmentation_from(params: Any) -> Augmentation:
    return Augmentation(rotation=params.rotation, zoom=params.zoom, translation=params.translation)
