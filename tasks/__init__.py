"""One module per pipeline stage; `python -m tasks.<stage>` is what DVC runs.

Each module's `run(params)` is the single definition of its stage: the DVC
command and the Prefect task both call it.
"""

import quickdraw_dag  # noqa: F401  (first: it settles the environment before any stage imports TensorFlow or MLflow)
