"""QuickDraw DAG: a reproducible training pipeline for Quick, Draw! doodles."""

__version__ = "0.1.0"
