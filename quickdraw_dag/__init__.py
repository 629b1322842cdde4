"""QuickDraw DAG: a reproducible training pipeline for Quick, Draw! doodles.

Importing the package settles the process environment every entry point needs, before TensorFlow,
MLflow or Prefect are imported (`python -m tasks.<stage>` and `python -m flows.<flow>` import their
package, which imports this one, first): their telemetry off whatever the caller's environment says
(the Makefile sets the same, but `dvc repro` and `python -m` are documented commands too), and
TensorFlow's C++ log at warnings and above unless the caller set its level (its oneDNN banner is
printed before that level is read, and only `TF_ENABLE_ONEDNN_OPTS=0`, which changes the kernels,
would hide it).
"""

import os

__version__ = "0.1.0"

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}

os.environ.update(TELEMETRY_OFF)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
