"""`train.precision`: bfloat16 arithmetic where the processor computes it natively, float32 weights always.

Keras's `mixed_bfloat16` policy keeps every variable in float32 and runs the
layers' arithmetic in bfloat16. On a CPU with native bfloat16 instructions
(AVX512_BF16 or AMX_BF16, which TensorFlow's oneDNN kernels use) that
trains the default network 1.30× faster at the same test accuracy
(docs/PERFORMANCE.md, "Mixed precision on the CPU"); on a CPU without them
bfloat16 is emulated and slower, so `auto` keeps float32 there. With the JAX
or torch backend and on accelerators `auto` keeps float32 too: not measured
here (`bench.gpu --mixed-precision` is the place for a GPU).

The model that is saved computes in float32 whatever trained it
(`in_float32`): serving and evaluate run the same float32 graph on any
machine, and the weights need no conversion (they are float32 already).
Only the train stage reads `train.precision`: the tune stage's trials train
in float32 (the default search space trains none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import keras

from quickdraw_dag.config.schema import PRECISIONS, Precision
from quickdraw_dag.training.model import compile_cnn

NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_computes_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the processor has bfloat16 instructions (Linux's /proc/cpuinfo flags; elsewhere: no)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return not NATIVE_BFLOAT16_FLAGS.isdisjoint(line.partition(":")[2].split())
    return False


def resolve_precision(setting: str, on_cpu: bool, backend: str, cpuinfo: Path = CPUINFO) -> Precision:
    """The precision a run uses: the setting, or for `auto`, bfloat16 where it was measured to pay.

    That is TensorFlow (its oneDNN kernels) on a CPU with native bfloat16; JAX's and torch's CPU kernels
    were not measured here, so `auto` keeps float32 with them.
    """
    if setting in PRECISIONS:
        return setting  # type: ignore[return-value]  # one of Precision's values
    if setting != "auto":
        raise ValueError(f"unknown precision {setting!r}")
    native = backend == "tensorflow" and on_cpu and cpu_computes_bfloat16(cpuinfo)
    return "mixed_bfloat16" if native else "float32"


@contextmanager
def dtype_policy(precision: Precision) -> Iterator[None]:
    """Layers built inside use this policy; the process's previous policy is restored after."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def in_float32(model: keras.Model, build: Callable[[], keras.Model]) -> keras.Model:
    """The same network built in float32, carrying `model`'s weights (already float32 variables) and optimizer.

    The trained optimizer (its state and schedule) comes along, so the saved file holds what a float32
    run's holds: a fresh optimizer would be saved without its slots, and Keras warns on every load then.
    """
    with dtype_policy("float32"):
        copy = build()
    copy.set_weights(model.get_weights())
    compile_cnn(copy, model.optimizer)
    return copy
