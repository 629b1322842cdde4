"""The contract between stages: every artifact a stage reads or writes, named once.

As in Kedro's data catalog, each file or folder that passes between stages
has one name here, derived from `params.yaml`'s `paths.*`; stages look
artifacts up on a `Catalog` and never spell a file name themselves. The
structured ones (manifest, split summary, scaling, labels, tuning result,
history, metrics) have typed read and write functions, so a reader fails
with a `DataError` naming the file and the stage that should have made it.

The paint flow is a pipeline of its own (`PAINT_PIPELINE`: its own
`dvc.yaml`, `params.yaml` and DVC project in that folder, so the doodle
pipeline's `dvc repro` and `dvc status` never see it); `PaintCatalog` names
its artifacts, relative to that folder.

`PIPELINES` says, per pipeline, which artifacts each stage writes and how DVC
keeps them (`outs`, `metrics` or `plots`; in the DVC cache or in git);
`tests/unit/test_contract.py` holds each pipeline's `dvc.yaml` and `.gitignore`
to it. DVC's convention decides between the two: small reports whose size does
not grow with the data (metrics, per-epoch logs, per-class table, tuning
summary) are committed to git with `dvc.lock`, so `dvc metrics diff`,
`dvc plots diff` and `dvc exp show` read them at any commit; data, models and
whatever grows with the data or is binary (predictions, images) live in the
DVC cache and its remote.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from quickdraw_dag.errors import DataError
from quickdraw_dag.runtime.atomic import write_bytes_atomic, write_json_atomic

SPLITS: tuple[str, ...] = ("train", "val", "test")
Split = Literal["train", "val", "test"]
ShardKind = Literal["strokes", "bitmaps", "key_ids"]
_SHARD_SUFFIX: dict[str, str] = {"strokes": ".bin", "bitmaps": ".npy", "key_ids": ".key_id.npy"}


@dataclass(frozen=True)
class Catalog:
    """Paths of every stage's artifacts, from the five roots in `paths.*`."""

    raw: Path
    interim: Path
    processed: Path
    models: Path
    reports: Path

    @classmethod
    def from_paths(cls, paths: Any) -> Catalog:
        """From `Params.paths` (or anything with the same five attributes)."""
        return cls(*(Path(getattr(paths, root)) for root in ("raw", "interim", "processed", "models", "reports")))

    @classmethod
    def under(cls, root: Path) -> Catalog:
        """The default layout (`data/raw`, ..., `models`, `reports`) below `root`."""
        root = Path(root)
        return cls(root / "data/raw", root / "data/interim", root / "data/processed", root / "models", root / "reports")

    # fetch
    @property
    def manifest(self) -> Path:
        return self.raw / "manifest.json"

    def raw_file(self, file_name: str) -> Path:
        """A fetched category file (its name comes from `formats.raw_file_name`)."""
        return self.raw / file_name

    # split
    @property
    def split_summary(self) -> Path:
        return self.interim / "split.json"

    def shard(self, split: str, category: str, kind: ShardKind, root: Path | None = None) -> Path:
        """One category's drawings in one split: strokes (`.bin`), bitmaps (`.npy`) or their key_ids."""
        return Path(root or self.interim) / split / f"{category}{_SHARD_SUFFIX[kind]}"

    # preprocess
    def images(self, split: str, root: Path | None = None) -> Path:
        return Path(root or self.processed) / f"{split}_images.npy"

    def labels(self, split: str, root: Path | None = None) -> Path:
        return Path(root or self.processed) / f"{split}_labels.npy"

    @property
    def label_names(self) -> Path:
        return self.processed / "labels.json"

    @property
    def scaling(self) -> Path:
        return self.processed / "scaling.json"

    @property
    def preprocess_summary(self) -> Path:
        return self.processed / "summary.json"

    # tune
    @property
    def best_hparams(self) -> Path:
        return self.models / "best_hparams.json"

    @property
    def tuning_report(self) -> Path:
        return self.reports / "tuning.json"

    @property
    def tuner_dir(self) -> Path:
        """KerasTuner projects (working state, not a DVC output)."""
        return self.models / "tuner"

    # train
    @property
    def model(self) -> Path:
        return self.models / "model.keras"

    @property
    def checkpoints(self) -> Path:
        """BackupAndRestore state and the best epoch so far (working state, not a DVC output)."""
        return self.models / "checkpoints"

    @property
    def history(self) -> Path:
        return self.reports / "history.json"

    @property
    def training_log(self) -> Path:
        return self.reports / "training_log.csv"

    # evaluate
    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def per_class(self) -> Path:
        return self.reports / "per_class.csv"

    @property
    def predictions(self) -> Path:
        return self.reports / "predictions.csv"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    def plot(self, name: str) -> Path:
        return self.plots / f"{name}.png"

    # what a folder output holds
    def owns(self, artifact: Literal["interim", "processed"]) -> Callable[[str], bool]:
        """Whether a path inside a folder output (POSIX, relative to it) is one its stage writes there.

        `atomic_directory` replaces a folder only when every entry passes, so a
        stage never deletes a file it did not write (`*` matches within one name).
        """
        here = Path()
        if artifact == "interim":
            shard_names = {f"*{suffix}" for suffix in _SHARD_SUFFIX.values()}
            return owned_by([self.split_summary.name, *SPLITS, *(f"{s}/{n}" for s in SPLITS for n in shard_names)])
        return owned_by(
            [
                self.images("*", here).name,
                self.labels("*", here).name,
                self.label_names.name,
                self.scaling.name,
                self.preprocess_summary.name,
            ]
        )


def owned_by(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A test of relative POSIX paths against glob `patterns`, segment by segment (`*` stays within a name)."""
    split_patterns = [pattern.split("/") for pattern in patterns]

    def owned(relative: str) -> bool:
        parts = relative.split("/")
        return any(
            len(parts) == len(pattern) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern))
            for pattern in split_patterns
        )

    return owned


# The paint pipeline's folder, relative to the project root: its dvc.yaml, params.yaml and .dvc/ live there,
# and its commands run there (DVC runs a stage in its dvc.yaml's folder).
PAINT_PIPELINE = Path("paint")


@dataclass(frozen=True)
class PaintCatalog:
    """Paths of the paint stage's artifacts, from `paths.reports` of `paint/params.yaml`."""

    reports: Path

    @classmethod
    def from_paths(cls, paths: Any) -> PaintCatalog:
        return cls(Path(paths.reports))

    @classmethod
    def under(cls, root: Path) -> PaintCatalog:
        """The default layout (`reports`) below `root`."""
        return cls(Path(root) / "reports")

    @property
    def paint_dir(self) -> Path:
        """painting.png, comparison.png, loss.png, loss.csv."""
        return self.reports / "paint"

    @property
    def paint_metrics(self) -> Path:
        return self.reports / "paint_metrics.json"

    # what the paint folder holds
    def owns(self, artifact: Literal["paint_dir"]) -> Callable[[str], bool]:
        """Whether a path inside `paint_dir` (POSIX, relative to it) is one the paint stage writes there."""
        return owned_by(["*.png", "*.csv"])  # the paint stage's images and loss table


@dataclass(frozen=True)
class Output:
    """One declared output of a stage, as `dvc.yaml` must list it."""

    artifact: str  # a Catalog attribute
    kind: Literal["outs", "metrics", "plots"] = "outs"
    cache: bool = True  # in the DVC cache (and remote), git-ignored; False: committed to git beside dvc.lock
    persist: bool = False


STAGE_OUTPUTS: dict[str, tuple[Output, ...]] = {
    # persist: a rerun keeps completed downloads instead of fetching again
    "fetch": (Output("raw", persist=True),),
    "split": (Output("interim"),),
    "preprocess": (Output("processed"),),
    "tune": (Output("best_hparams"), Output("tuning_report", cache=False)),
    "train": (Output("model"), Output("history", cache=False), Output("training_log", "plots", cache=False)),
    "evaluate": (
        Output("metrics", "metrics", cache=False),
        Output("per_class", cache=False),
        # one row per test drawing, and PNG images rewritten by every run: the DVC cache, not git
        Output("plots"),
        Output("predictions", "plots"),
    ),
}
PAINT_STAGE_OUTPUTS: dict[str, tuple[Output, ...]] = {
    "paint": (Output("paint_dir"), Output("paint_metrics", "metrics", cache=False)),
}


@dataclass(frozen=True)
class Pipeline:
    """One DVC pipeline of the project: its folder (dvc.yaml, params.yaml), catalog and stages' outputs."""

    folder: Path
    catalog: type[Catalog] | type[PaintCatalog]
    outputs: dict[str, tuple[Output, ...]]


PIPELINES: dict[str, Pipeline] = {
    "doodle": Pipeline(Path("."), Catalog, STAGE_OUTPUTS),
    "paint": Pipeline(PAINT_PIPELINE, PaintCatalog, PAINT_STAGE_OUTPUTS),
}


def stage_outputs(catalog: Catalog | PaintCatalog, stage: str) -> list[tuple[Path, Output]]:
    """The paths a stage writes, with how DVC keeps each."""
    outputs = STAGE_OUTPUTS.get(stage) or PAINT_STAGE_OUTPUTS[stage]
    return [(getattr(catalog, output.artifact), output) for output in outputs]


def git_tracked_outputs(catalog: Catalog) -> list[Path]:
    """The doodle pipeline's outputs that git keeps (`cache: false`), in stage order: what a user commits."""
    return [path for stage in STAGE_OUTPUTS for path, output in stage_outputs(catalog, stage) if not output.cache]


# ----- structured artifacts: typed shapes and their readers and writers -----


def _read_json(path: Path, made_by: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"missing: run the {made_by} stage first", path=path) from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"not valid JSON ({error.msg}); rerun the {made_by} stage", path=path, line=error.lineno
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"not UTF-8 text; rerun the {made_by} stage", path=path) from None


class ManifestEntry(TypedDict):
    category: str
    file: str
    format: str
    drawings: int
    bad_records: int
    bytes: int
    sha256: str
    origin: str


class Manifest(TypedDict):
    source: str
    source_kind: str
    categories: dict[str, ManifestEntry]
    drawings: int


def read_manifest(catalog: Catalog) -> Manifest:
    return _read_json(catalog.manifest, "fetch")


def write_manifest(catalog: Catalog, manifest: Manifest) -> None:
    write_json_atomic(catalog.manifest, manifest)


class ClassSplit(TypedDict):
    counts: dict[str, int]
    dropped: dict[str, int]
    format: str


class SplitSummary(TypedDict):
    fractions: dict[str, float]
    seed: int
    recognized_only: bool
    max_per_class: int | None
    categories: list[str]
    classes: dict[str, ClassSplit]
    totals: dict[str, int]


def read_split_summary(catalog: Catalog) -> SplitSummary:
    return _read_json(catalog.split_summary, "split")


def write_split_summary(path: Path, summary: SplitSummary) -> None:
    """`path`: the summary's place in the interim folder being built (swapped in as a whole)."""
    write_json_atomic(path, summary)


@dataclass(frozen=True)
class Scaling:
    """model input = pixel * scale + offset (statistics of the training split only)."""

    method: str
    scale: float
    offset: float

    @staticmethod
    def from_json(data: dict[str, Any]) -> Scaling:
        return Scaling(method=str(data["method"]), scale=float(data["scale"]), offset=float(data["offset"]))


def read_scaling(catalog: Catalog) -> Scaling:
    return Scaling.from_json(_read_json(catalog.scaling, "preprocess"))


class LabelNames(TypedDict, total=False):
    """`labels.json`: the label set and how its images were drawn (what serving must repeat)."""

    categories: list[str]
    image_size: int
    line_width: float  # absent in files written before serving needed it


def write_label_names(path: Path, categories: Sequence[str], image_size: int, line_width: float) -> None:
    """`path`: the label names' place in the processed folder being built (or `Catalog.label_names`)."""
    write_json_atomic(
        path, {"categories": list(categories), "image_size": int(image_size), "line_width": float(line_width)}
    )


def read_label_names(catalog: Catalog) -> LabelNames:
    return _read_json(catalog.label_names, "preprocess")


def read_categories(catalog: Catalog) -> list[str]:
    """Class names in label order (label i is `categories[i]`)."""
    return list(read_label_names(catalog)["categories"])


def processed_identity(catalog: Catalog) -> dict[str, Any]:
    """What identifies the processed data without hashing the arrays (labels, scaling, counts)."""
    return {
        path.name: _read_json(path, "preprocess")
        for path in (catalog.label_names, catalog.scaling, catalog.preprocess_summary)
    }


class Candidate(TypedDict):
    trial_id: str
    val_accuracy: float | None  # None: the space's one point, taken without a trial (nothing to search)
    hyperparameters: dict[str, Any]


class TuningResult(TypedDict):
    """`best_hparams.json`: the best trial and every completed one, best first."""

    trial_id: str
    val_accuracy: float | None
    hyperparameters: dict[str, Any]
    candidates: list[Candidate]


def read_tuning_result(catalog: Catalog) -> TuningResult:
    return _read_json(catalog.best_hparams, "tune")


def write_tuning_result(catalog: Catalog, result: TuningResult) -> None:
    write_json_atomic(catalog.best_hparams, result)


def write_tuning_report(catalog: Catalog, report: dict[str, Any]) -> None:
    write_json_atomic(catalog.tuning_report, report)


def read_tuning_report(catalog: Catalog) -> dict[str, Any]:
    return _read_json(catalog.tuning_report, "tune")


class History(TypedDict, total=False):
    """`history.json`: what train did, epoch by epoch, and why it stopped."""

    hyperparameters: dict[str, Any]
    tuning_trial: str | None
    selection: str
    schedule: str
    weights: str
    planned_epochs: int
    steps_per_epoch: int
    budget: dict[str, Any] | None
    cut_by_safety_limit: bool
    deterministic: bool
    epochs_run: int
    epochs: list[dict[str, float]]
    best_val_accuracy: float
    best_epoch: int
    stopped_because: str
    seconds: float
    train_images: int
    images_per_second: float
    backend: str
    devices: list[str]  # the devices it trained on (train.devices), as the backend names them
    precision: str  # the arithmetic it trained in (train.precision, resolved): float32 | mixed_bfloat16


def read_history(catalog: Catalog) -> History:
    return _read_json(catalog.history, "train")


def write_history(catalog: Catalog, history: History) -> None:
    write_json_atomic(catalog.history, history)


class Metrics(TypedDict):
    """`metrics.json`: the test split's headline figures (for `dvc metrics`)."""

    accuracy: float
    top3_accuracy: float
    map_at_3: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    test_images: int


def read_metrics(catalog: Catalog) -> Metrics:
    return _read_json(catalog.metrics, "evaluate")


def write_metrics(catalog: Catalog, metrics: Metrics) -> None:
    write_json_atomic(catalog.metrics, metrics)


PER_CLASS_COLUMNS: tuple[str, ...] = ("category", "precision", "recall", "f1", "support")


class ClassScores(TypedDict):
    """One row of `per_class.csv`: a class's scores on the test split (recall is its accuracy)."""

    category: str
    precision: float
    recall: float
    f1: float
    support: int


def read_per_class(catalog: Catalog) -> list[ClassScores]:
    """`per_class.csv` in label order, as numbers."""
    path = catalog.per_class
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("missing: run the evaluate stage first", path=path) from None
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != PER_CLASS_COLUMNS:
        raise DataError(f"columns {reader.fieldnames} are not {list(PER_CLASS_COLUMNS)}; rerun evaluate", path=path)
    rows: list[ClassScores] = []
    for line, row in enumerate(reader, start=2):
        try:
            rows.append(
                {
                    "category": row["category"],
                    "precision": float(row["precision"]),
                    "recall": float(row["recall"]),
                    "f1": float(row["f1"]),
                    "support": int(row["support"]),
                }
            )
        except (TypeError, ValueError):
            raise DataError(f"not a row of numbers: {row}; rerun evaluate", path=path, line=line) from None
    return rows


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """The one CSV dialect of every report: comma-separated, '\\n' line ends, a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    write_bytes_atomic(path, csv_bytes(header, rows))
