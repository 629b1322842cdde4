"""Prefect flows: wiring of the stage functions in `tasks/`, no stage logic."""
