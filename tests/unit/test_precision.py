"""train.precision: bfloat16 arithmetic only where the CPU computes it natively; the saved model in float32."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from quickdraw_dag.artifacts import Catalog, Scaling, write_tuning_result
from quickdraw_dag.config.schema import PRECISIONS, SearchSpace, TrainParams
from quickdraw_dag.training.devices import Placement
from quickdraw_dag.training.model import build_cnn, load_model
from quickdraw_dag.training.precision import cpu_computes_bfloat16, dtype_policy, in_float32, resolve_precision

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\nbugs\t\t: sysret_ss_attrs\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n"
SKYLAKE = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\nbugs\t\t: avx512_bf16_is_not_a_flag_here\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(ZEN4, True), (SAPPHIRE_RAPIDS, True), (SKYLAKE, False), ("", False), ("flags\t: avx512_bf16x\n", False)],
)
def test_bfloat16_is_native_only_with_its_instruction_flags(tmp_path: Path, cpuinfo: str, native: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert cpu_computes_bfloat16(path) is native
    on_tensorflow_cpu = resolve_precision("auto", on_cpu=True, backend="tensorflow", cpuinfo=path)
    assert on_tensorflow_cpu == ("mixed_bfloat16" if native else "float32")
    # accelerators and the other backends' CPU kernels keep float32 under auto (not measured here)
    assert resolve_precision("auto", on_cpu=False, backend="tensorflow", cpuinfo=path) == "float32"
    assert resolve_precision("auto", on_cpu=True, backend="jax", cpuinfo=path) == "float32"
    assert resolve_precision("auto", on_cpu=True, backend="torch", cpuinfo=path) == "float32"
    # a setting is taken as it is, anywhere
    assert resolve_precision("float32", on_cpu=True, backend="tensorflow", cpuinfo=path) == "float32"
    assert resolve_precision("mixed_bfloat16", on_cpu=False, backend="jax", cpuinfo=path) == "mixed_bfloat16"


def test_no_cpuinfo_means_float32(tmp_path: Path) -> None:
    assert cpu_computes_bfloat16(tmp_path / "absent") is False
    assert resolve_precision("auto", on_cpu=True, backend="tensorflow", cpuinfo=tmp_path / "absent") == "float32"
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        resolve_precision("float16", on_cpu=True, backend="tensorflow")


@pytest.mark.parametrize("value", ["float16", "bfloat16", "", 32, None])
def test_precision_must_be_one_of_three_names(value: object) -> None:
    with pytest.raises(ValidationError, match="precision\n.*'auto', 'float32' or 'mixed_bfloat16'"):
        TrainParams(precision=value)
    assert set(PRECISIONS) == {"float32", "mixed_bfloat16"}  # what auto resolves to, the names a run records
    assert TrainParams().precision == "auto"


def test_devices_say_whether_they_are_cpus() -> None:
    assert Placement("tensorflow", ("/device:CPU:0",)).on_cpu
    assert Placement("jax", ("cpu:0", "cpu:1")).on_cpu
    assert not Placement("jax", ("cuda:0",)).on_cpu and not Placement("tensorflow", ("/device:GPU:0",)).on_cpu


def build() -> keras.Model:
    network = {**SearchSpace().first_choices(), "filters": 4}
    return build_cnn(
        **network, image_size=28, num_classes=3, scaling=Scaling("minmax", 1 / 255, 0), augment=None, seed=0
    )


def test_a_bfloat16_model_is_saved_as_the_same_network_in_float32() -> None:
    with dtype_policy("mixed_bfloat16"):
        mixed = build()
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after the block
    assert mixed.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert mixed.get_layer("probabilities").compute_dtype == "float32"  # the softmax and the loss stay float32
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    labels = np.arange(16) % 3
    mixed.fit(images, labels, epochs=1, batch_size=8, verbose=0)

    saved = in_float32(mixed, build)
    assert {layer.compute_dtype for layer in saved.layers if layer.weights} == {"float32"}
    for ours, theirs in zip(saved.weights, mixed.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    # the same function of the image: only bfloat16 rounding apart
    np.testing.assert_allclose(saved.predict(images, verbose=0), mixed.predict(images, verbose=0), atol=0.02)
    assert not np.array_equal(saved.predict(images, verbose=0), mixed.predict(images, verbose=0))


class ComputeDtypes(keras.callbacks.Callback):
    """What the first convolution computes in while `fit` runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.seen.add(self.model.get_layer("block1_conv1").compute_dtype)


@pytest.mark.parametrize("weights", ["final", "best"])
def test_the_train_stage_trains_in_bfloat16_and_saves_a_float32_model_that_loads_without_warnings(
    tmp_path: Path, tiny_processed: Catalog, weights: str
) -> None:
    from tasks.train import train

    catalog = Catalog.under(tmp_path)
    shutil.copytree(tiny_processed.processed, catalog.processed)
    catalog.models.mkdir(parents=True)
    network = {**SearchSpace().first_choices(), "filters": 4}
    write_tuning_result(catalog, {"trial_id": "fixed", "hyperparameters": network, "candidates": []})
    seen = ComputeDtypes()
    params = TrainParams(epochs=2, batch_size=32, precision="mixed_bfloat16", weights=weights, max_seconds=None)
    history = train(params, catalog, extra_callbacks=[seen])
    assert seen.seen == {"bfloat16"} and history["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # nothing leaks to the next stage

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = load_model(str(catalog.model))
    assert not [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    assert {layer.compute_dtype for layer in saved.layers if layer.weights} == {"float32"}
    # the trained optimizer came along: its step count is that of the epoch kept, and every slot was saved
    epochs_kept = history["epochs_run"] if weights == "final" else history["best_epoch"]
    assert int(keras.ops.convert_to_numpy(saved.optimizer.iterations)) == epochs_kept * history["steps_per_epoch"]
