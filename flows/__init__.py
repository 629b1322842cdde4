"""Prefect flows: wiring of the stage functions in `tasks/`, no stage logic."""

import quickdraw_dag  # noqa: F401  (first: it settles the environment before any stage imports TensorFlow or MLflow)
