"""Resuming after a kill in the middle of a write: torn working files are detected and set aside.

Keras writes its BackupAndRestore state, the best-epoch checkpoint and the
CSV log in place, and KerasTuner its trial and oracle files, so a kill
during one of those writes leaves a torn file (a 96-byte `latest.weights.h5`)
that makes every later run fail until someone deletes the folder. Before
training resumes, `recover_training` checks each working file of the run
and falls back: to the previous backup when Keras kept one (its
`double_checkpoint`), else to a fresh start of the stage; a torn best
checkpoint is dropped, a torn last log line cut. Before a search resumes,
`recover_search` drops a tuner project holding a torn file (the search then
starts afresh). Every fallback says so in the log.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

from quickdraw_dag.training.callbacks import BACKUP_DIR, BEST_CHECKPOINT, EPOCH_LOG

log = logging.getLogger(__name__)

# keras.callbacks.BackupAndRestore's file names inside its backup_dir (Keras 3), and its previous-state suffix.
WEIGHTS = "latest.weights.h5"
METADATA = "training_metadata.json"
PREVIOUS = ".bkp"


def readable_h5(path: Path) -> bool:
    """An HDF5 file that opens and whose every dataset reads back in full."""
    import h5py

    def read(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(read)
    except Exception:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError... for torn files: all mean torn
        return False
    return True


def readable_json(path: Path, key: str | None = None) -> bool:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return key is None or (isinstance(data, dict) and isinstance(data.get(key), int))


def readable_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _state_ok(weights: Path, metadata: Path) -> bool:
    return weights.is_file() and readable_h5(weights) and (not metadata.exists() or readable_json(metadata, "epoch"))


def _epoch(metadata: Path) -> int | None:
    return json.loads(metadata.read_text())["epoch"] if readable_json(metadata, "epoch") else None


def recover_training(work_dir: Path) -> str | None:
    """Check a training run's working folder before it resumes; returns what was repaired (None: nothing)."""
    work_dir = Path(work_dir)
    backup, best, epochs = work_dir / BACKUP_DIR, work_dir / BEST_CHECKPOINT, work_dir / EPOCH_LOG
    notes = []
    weights, metadata = backup / WEIGHTS, backup / METADATA
    previous_weights, previous_metadata = backup / (WEIGHTS + PREVIOUS), backup / (METADATA + PREVIOUS)
    if (weights.exists() or metadata.exists()) and not _state_ok(weights, metadata):
        if _state_ok(previous_weights, previous_metadata):
            shutil.copyfile(previous_weights, weights)
            if previous_metadata.exists():
                shutil.copyfile(previous_metadata, metadata)
            else:
                metadata.unlink(missing_ok=True)
            notes.append(
                f"the last backup in {backup} is torn; resuming from the one before (epoch {_epoch(metadata)})"
            )
        else:
            shutil.rmtree(backup, ignore_errors=True)
            best.unlink(missing_ok=True)
            epochs.unlink(missing_ok=True)
            notes.append(f"the backup in {backup} is torn and there is no earlier one; training restarts at epoch 1")
    if best.exists() and not readable_zip(best):
        best.unlink()
        notes.append(f"the best-epoch checkpoint {best.name} is torn; dropped (the next best epoch replaces it)")
    if epochs.exists():
        cut = _cut_torn_last_line(epochs)
        if cut:
            notes.append(f"the last line of {epochs.name} was cut short by the kill; removed")
    for note in notes:
        log.warning("train: %s", note)
    return "; ".join(notes) or None


def _cut_torn_last_line(path: Path) -> bool:
    """Drop a last line that lacks its newline or has fewer fields than the header (a write cut by a kill)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        return False
    fields = lines[0].count(",")
    last = lines[-1]
    if last.endswith("\n") and last.count(",") == fields:
        return False
    path.write_text("".join(lines[:-1]), encoding="utf-8")
    return True


def recover_search(project_dir: Path) -> str | None:
    """Drop a KerasTuner project holding a torn JSON or weights file; returns why (None: it is whole)."""
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        return None
    for path in sorted(project_dir.rglob("*")):
        torn = (path.suffix == ".json" and not readable_json(path)) or (path.suffix == ".h5" and not readable_h5(path))
        if path.is_file() and torn:
            shutil.rmtree(project_dir, ignore_errors=True)
            torn_file = path.relative_to(project_dir)
            note = f"{torn_file} in {project_dir} is torn (a kill during its write); the search starts afresh"
            log.warning("tune: %s", note)
            return note
    return None
