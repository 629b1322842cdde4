"""The paint pipeline's params (`paint/params.yaml`): a pipeline of its own, beside the doodle one."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from quickdraw_dag.config.schema import MAX_SEED, MlflowParams, OutputPaths, StrictModel


class FourierParams(StrictModel):
    """Random Fourier features of the coordinates: [sin 2πBx, cos 2πBx], B ~ N(0, scale²)."""

    enabled: bool = False
    scale: float = Field(default=10.0, gt=0, le=1000)
    size: int = Field(default=256, ge=1, le=4096)


class PaintParams(StrictModel):
    """The paint flow: an MLP from pixel coordinates to colour."""

    image: str = Field(default="matplotlib:grace_hopper.jpg", min_length=1)
    longest_side: int = Field(default=100, ge=2, le=2048)
    mode: Literal["regression", "classification"] = "regression"
    threshold: int = Field(default=600, ge=0, le=765)
    hidden_layers: int = Field(default=10, ge=0, le=100)  # 0 in classification: the tutorial's perceptron
    units: int = Field(default=100, ge=1, le=4096)
    activation: Literal["relu", "leaky_relu", "elu", "tanh", "swish", "gelu", "sigmoid"] = "relu"
    epochs: int = Field(default=100, ge=1, le=100000)
    batch_size: int = Field(default=32, ge=1, le=1 << 20)
    learning_rate: float = Field(default=0.001, gt=0, le=10)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    fourier: FourierParams = FourierParams()

    @field_validator("image")
    @classmethod
    def _sample_name(cls, image: str) -> str:
        if image.startswith("matplotlib:"):
            name = image.removeprefix("matplotlib:")
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError("'matplotlib:' takes a sample file name such as grace_hopper.jpg")
        return image


class PaintPathsParams(OutputPaths):
    """Where the paint stage writes, relative to the paint pipeline's folder."""

    reports: str = "reports"


class PaintPipelineParams(StrictModel):
    """The whole of the paint pipeline's `paint/params.yaml` (a pipeline of its own, beside the doodle one)."""

    paths: PaintPathsParams = PaintPathsParams()
    paint: PaintParams = PaintParams()
    mlflow: MlflowParams = MlflowParams(experiment="paint")
