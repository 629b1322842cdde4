"""The params schema: one frozen, strict model per section of `params.yaml`.

Unknown keys and wrong types are errors; category names are checked against the official list.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections import Counter
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from quickdraw.names import QUICK_DRAWING_NAMES

from quickdraw_dag.config.cron import check_cron, check_timezone
from quickdraw_dag.config.redact import redact
from quickdraw_dag.config.workspace import check_output_roots, output_parts
from quickdraw_dag.errors import excerpt

DEFAULT_PARAMS_PATH = Path("params.yaml")
ParamsModel = typing.TypeVar("ParamsModel", bound=BaseModel)
# Seeds reach NumPy, TensorFlow and Keras seed generators, which take 32-bit values (Keras adds small offsets).
MAX_SEED = 2**31 - 1
# Longer than any official category name; longer input is not matched against the list ("did you mean").
MAX_CATEGORY_CHARS = 64
OFFICIAL_CATEGORIES: frozenset[str] = frozenset(QUICK_DRAWING_NAMES)
# Shapes the synthetic source can draw; each is also an official category.
SYNTHETIC_CATEGORIES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "zigzag",
    "line",
    "hexagon",
    "octagon",
    "diamond",
    "moon",
)
SOURCE_QUICKDRAW = "quickdraw"
SOURCE_SYNTHETIC = "synthetic"
SOURCE_SAMPLES = "samples/quickdraw"  # real drawings that ship with the project
# Sections the flows read and no stage does: dvc.yaml lists them nowhere, so changing one reruns nothing.
FLOW_ONLY_SECTIONS: tuple[str, ...] = ("versioning", "schedule")
# Keys that used to exist, with where their job went (they changed no output, so DVC should not track them).
RETIRED_KEYS: dict[tuple[str, ...], str] = {
    ("preprocess", "workers"): "no longer a param: set the QUICKDRAW_WORKERS environment variable instead",
    ("train", "workers"): "no longer a param: set the QUICKDRAW_WORKERS environment variable instead",
    ("paint",): "the paint flow is a pipeline of its own now: its params are in paint/params.yaml",
}


class StrictModel(BaseModel):
    """Frozen, strict, no unknown keys: the base of every params section."""

    # NaN and infinity pass `gt`/`le` bounds in surprising ways (nan fails them all, inf passes `gt=0`).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class OutputPaths(StrictModel):
    """Output folders of a pipeline: every field is a relative path inside its project (checked once, here)."""

    @field_validator("*")
    @classmethod
    def _inside_project(cls, value: str) -> str:
        output_parts(value)
        return value


class PathsParams(OutputPaths):
    """Where each stage writes; `dvc.yaml` reads the same keys.

    Each is a folder of its own inside the project (`quickdraw_dag.config.workspace`): never the
    source, `.git`, `.dvc`, the MLflow store or the samples, and no two overlap.
    """

    raw: str = "data/raw"
    interim: str = "data/interim"
    processed: str = "data/processed"
    models: str = "models"
    reports: str = "reports"

    @model_validator(mode="after")
    def _apart(self) -> PathsParams:
        check_output_roots(self.model_dump())
        return self


class DataParams(StrictModel):
    """What data the pipeline is about: shared by every stage."""

    source: str = SOURCE_SAMPLES
    categories: tuple[str, ...] = Field(min_length=2, max_length=len(QUICK_DRAWING_NAMES))
    on_bad_record: Literal["fail", "skip"] = "fail"

    @field_validator("categories", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("categories")
    @classmethod
    def _official_names(cls, categories: tuple[str, ...]) -> tuple[str, ...]:
        for name in categories:
            if name not in OFFICIAL_CATEGORIES:
                raise ValueError(unknown_category_message(name))
        duplicates = sorted(name for name, count in Counter(categories).items() if count > 1)
        if duplicates:
            raise ValueError(f"categories listed twice: {excerpt(duplicates, 120)}")
        return categories

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, source: str) -> str:
        if not source.strip():
            raise ValueError(f"must be '{SOURCE_QUICKDRAW}', '{SOURCE_SYNTHETIC}' or a directory path")
        return source

    @property
    def source_kind(self) -> Literal["quickdraw", "synthetic", "directory"]:
        if self.source == SOURCE_QUICKDRAW:
            return "quickdraw"
        if self.source == SOURCE_SYNTHETIC:
            return "synthetic"
        return "directory"


# Where download credentials come from (HTTP Basic `user:password`, or a whole Authorization value such as
# `Bearer <token>`): never params, which params.yaml, dvc.lock and every run's MLflow artifacts store in clear.
DOWNLOAD_AUTH_ENV = "QUICKDRAW_DOWNLOAD_AUTH"


def check_no_credentials(url: str, what: str, instead: str) -> None:
    """ValueError when `url` carries a user, a password or a secret-looking query value (the value not repeated)."""
    if redact(url) != url:
        raise ValueError(
            f"the {what} URL must not carry credentials (user:password@ or a token in the query): params are "
            f"stored in clear in params.yaml, dvc.lock and every run's MLflow artifacts; {instead} "
            f"(got {excerpt(redact(url))})"
        )


class DownloadParams(StrictModel):
    """How the `quickdraw` source talks to Google's bucket."""

    base_url: str = "https://storage.googleapis.com/quickdraw_dataset/full/binary/"
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=5, ge=0, le=100)
    backoff_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        check_no_credentials(
            url, "download", f"set {DOWNLOAD_AUTH_ENV}=user:password (or 'Bearer <token>'), or use ~/.netrc"
        )
        parts = urlsplit(url)
        if parts.query or parts.fragment or url.endswith(("?", "#")):
            # file names are appended to it: `?x=1` + `apple.bin` would name no file
            raise ValueError(f"must be a folder URL without ?query or #fragment (got {excerpt(redact(url))})")
        return url if url.endswith("/") else url + "/"


class FetchParams(StrictModel):
    """The fetch stage: download, copy from a directory, or synthesize."""

    download: DownloadParams = DownloadParams()
    local_format: Literal["auto", "binary", "simplified", "raw", "numpy_bitmap"] = "auto"
    synthetic_drawings: int = Field(default=3000, gt=0, le=10_000_000)
    synthetic_seed: int = Field(default=0, ge=0, le=MAX_SEED)


class SplitFractions(StrictModel):
    train: float = Field(gt=0, lt=1)
    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"train + val + test must sum to 1 (got {total:g})")
        return self

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


class SplitParams(StrictModel):
    """The split stage: dedupe, filter, assign, cap."""

    fractions: SplitFractions = SplitFractions(train=0.8, val=0.1, test=0.1)
    recognized_only: bool = True
    max_per_class: int | None = Field(default=None, gt=0)
    # Below this many drawings in any split, a class cannot be trained, tuned or judged: exit 2 naming it.
    min_per_split: int = Field(default=1, ge=1)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class PreprocessParams(StrictModel):
    """Rasterizing and scaling (statistics from the training split only)."""

    image_size: int = Field(default=28, ge=8, le=256)
    line_width: float = Field(default=16.0, gt=0, le=64)  # in the 256-unit drawing box
    scaling: Literal["minmax", "zscore", "robust"] = "minmax"


Activation = Literal["relu", "leaky_relu", "elu", "swish"]
OptimizerName = Literal["adam", "adamw", "rmsprop", "sgd"]
# The arithmetic of training: a Keras dtype policy (quickdraw_dag.training.precision); train.precision adds auto.
Precision = Literal["float32", "mixed_bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def _choices(values: Any) -> Any:
    return tuple(values) if isinstance(values, list) else values


class SearchSpace(StrictModel):
    """The one declaration of the CNN's hyperparameters: each field's choices.

    Hyperband samples every field (a single value fixes it), and `build_cnn`
    takes each field by name as a plain value. Adding a hyperparameter means
    a field here and a keyword of `build_cnn`; nothing else lists them.
    """

    # Defaults: the CPU space params.yaml documents; the seed's space is filters (32, 64, 128) and
    # learning_rate (1e-2, 1e-3, 1e-4).
    filters: tuple[int, ...] = Field(default=(32,), min_length=1)
    learning_rate: tuple[float, ...] = Field(default=(1e-3,), min_length=1)
    dropout: tuple[float, ...] = Field(default=(0.3,), min_length=1)
    activation: tuple[Activation, ...] = Field(default=("relu",), min_length=1)
    optimizer: tuple[OptimizerName, ...] = Field(default=("adam",), min_length=1)
    l2: tuple[float, ...] = Field(default=(1e-5,), min_length=1)
    l1: tuple[float, ...] = Field(default=(0.0,), min_length=1)
    batch_norm: tuple[bool, ...] = Field(default=(True,), min_length=1)

    _as_tuples = field_validator("*", mode="before")(classmethod(lambda cls, v: _choices(v)))

    @field_validator("filters")
    @classmethod
    def _positive_filters(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 or v > 1024 for v in values):
            raise ValueError("filters must be between 1 and 1024")
        return values

    @field_validator("learning_rate")
    @classmethod
    def _positive_rates(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < v < 10 for v in values):
            raise ValueError("learning rates must be in (0, 10)")
        return values

    @field_validator("dropout")
    @classmethod
    def _dropout_range(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.1 <= v <= 0.8 for v in values):
            raise ValueError("dropout must be in [0.1, 0.8] (blocks use d-0.1, d, d+0.1)")
        return values

    @field_validator("l2", "l1")
    @classmethod
    def _penalty_range(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= v < 1 for v in values):
            raise ValueError("weight penalties must be in [0, 1)")
        return values

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Each hyperparameter's choices, in declaration order."""
        return {name: getattr(self, name) for name in self.names()}

    def single_point(self) -> dict[str, Any] | None:
        """The space's one point when every hyperparameter has a single value (nothing to search), else None."""
        if all(len(choices) == 1 for choices in self.choices().values()):
            return self.first_choices()
        return None

    def first_choices(self) -> dict[str, Any]:
        """The first choice of each hyperparameter: a network built without a search (benchmarks, tests)."""
        return {name: choices[0] for name, choices in self.choices().items()}

    @classmethod
    def normalize(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Plain Python values of the declared type (KerasTuner stores booleans as ints).

        Keys that are not hyperparameters (KerasTuner's `tuner/epochs`, ...) are dropped.
        """
        plain = {}
        for name, field in cls.model_fields.items():
            if name in values:
                element = typing.get_args(field.annotation)[0]
                kind = type(typing.get_args(element)[0]) if typing.get_origin(element) is Literal else element
                plain[name] = kind(values[name])
        return plain


class TuneParams(StrictModel):
    """KerasTuner Hyperband on val_accuracy; its trials are fixed by Hyperband's settings, not the clock."""

    max_epochs: int = Field(default=3, ge=1, le=1000)
    factor: int = Field(default=3, ge=2, le=10)
    hyperband_iterations: int = Field(default=1, ge=1, le=100)
    train_fraction: float = Field(default=0.5, gt=0, le=1)
    max_seconds: float | None = Field(default=1800.0, gt=0)  # a safety limit only: a cut search is marked
    patience: int = Field(default=2, ge=1)
    batch_size: int = Field(default=128, ge=1, le=65536)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    deterministic: bool = True
    # KerasTuner's distributed mode: a chief oracle and this many worker processes (1: one process, as always).
    workers: int = Field(default=1, ge=1, le=256)
    space: SearchSpace = SearchSpace()


class AugmentParams(StrictModel):
    """Random transforms applied inside the model, in training only (the model's only augmentation type)."""

    rotation: float = Field(default=0.0, ge=0, le=0.5)  # fraction of a full turn
    zoom: float = Field(default=0.0, ge=0, lt=1)
    translation: float = Field(default=0.0, ge=0, le=0.5)

    @property
    def active(self) -> bool:
        return self.rotation > 0 or self.zoom > 0 or self.translation > 0


class TrainParams(StrictModel):
    """Training the best candidate: epochs and steps decide what is trained; the clock is a safety limit."""

    epochs: int = Field(default=25, ge=1, le=10000)
    max_steps: int | None = Field(default=3000, ge=1)  # optimizer steps; fewer epochs when the split is large
    batch_size: int = Field(default=128, ge=1, le=65536)
    schedule: Literal["cosine", "plateau"] = "cosine"
    warmup_epochs: int = Field(default=1, ge=0, le=100)  # cosine only
    weights: Literal["final", "best"] = "final"  # the model kept: the last epoch's, or the best val_accuracy's
    patience: int | None = Field(default=None, ge=1)  # early stopping on val_loss (null: none)
    max_seconds: float | None = Field(default=3600.0, gt=0)  # a safety limit only: a cut run is marked
    target_val_accuracy: float | None = Field(default=None, gt=0, le=1)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    deterministic: bool = True
    # Data parallel over this many devices (the global batch is split between them); auto: every GPU, else one.
    devices: Literal["auto"] | int = "auto"
    # Arithmetic of training (weights stay float32; the saved model computes in float32): auto = bfloat16 with
    # TensorFlow on a CPU with native bfloat16 instructions, float32 elsewhere (quickdraw_dag.training.precision).
    precision: Literal["auto", "float32", "mixed_bfloat16"] = "auto"  # auto, or one of Precision
    augment: AugmentParams = AugmentParams()

    @field_validator("devices")
    @classmethod
    def _device_count(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        if isinstance(value, int) and not 1 <= value <= 1024:
            raise ValueError(f"devices must be 'auto' or a whole number from 1 to 1024 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _plateau_needs_patience(self) -> TrainParams:
        if self.schedule == "plateau" and self.patience is None:
            raise ValueError("schedule plateau cuts the rate after a share of train.patience: set train.patience")
        return self


class EvaluateParams(StrictModel):
    batch_size: int = Field(default=512, ge=1, le=65536)
    misclassified: int = Field(default=36, ge=0, le=400)
    samples_per_class: int = Field(default=8, ge=1, le=50)


class MlflowParams(StrictModel):
    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = Field(default="quickdraw", min_length=1)

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, uri: str | None) -> str | None:
        if uri is not None:
            check_no_credentials(
                uri,
                "tracking",
                "set MLFLOW_TRACKING_URI in the environment instead (it overrides this key), or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for an MLflow server",
            )
        return uri


class VersioningParams(StrictModel):
    """What a flow run does with DVC's remote once its stages are recorded (no stage reads this)."""

    push: bool = True  # `dvc push` after the run when a default DVC remote is set (`dvc remote default`)


class ScheduleParams(StrictModel):
    cron: str = "0 3 * * 1"
    timezone: str = "UTC"
    enabled: bool = False

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        return check_cron(cron)  # as Prefect, which runs it, reads it

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        return check_timezone(zone)


class Params(StrictModel):
    """The whole of `params.yaml`: the doodle pipeline."""

    paths: PathsParams = PathsParams()
    data: DataParams
    fetch: FetchParams = FetchParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessParams = PreprocessParams()
    tune: TuneParams = TuneParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()
    versioning: VersioningParams = VersioningParams()
    schedule: ScheduleParams = ScheduleParams()

    @model_validator(mode="after")
    def _synthetic_shapes(self) -> Params:
        if self.data.source_kind == "synthetic":
            unknown = [c for c in self.data.categories if c not in SYNTHETIC_CATEGORIES]
            if unknown:
                raise ValueError(
                    f"data.categories: the synthetic source draws only {list(SYNTHETIC_CATEGORIES)}; not {unknown}"
                )
        return self


def unknown_category_message(name: str) -> str:
    close = (
        difflib.get_close_matches(name, sorted(OFFICIAL_CATEGORIES), n=3, cutoff=0.6)
        if len(name) <= MAX_CATEGORY_CHARS
        else []
    )
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown category {excerpt(name)}{hint} (allowed: the 345 names in quickdraw.names.QUICK_DRAWING_NAMES)"
