"""Benchmarks: each prints its figures and ratios, measured side by side."""

import quickdraw_dag  # noqa: F401  (first: telemetry off and TensorFlow quiet in every benchmark process)
