"""Compare pipeline runs from the terminal: one table of the last N parent runs, built with pandas.

    python -m quickdraw_dag.tracking.compare [-n 5] [--plot curves.png] [--experiment quickdraw]
    make compare ARGS='-n 5 --plot curves.png'

One row per pipeline run (newest first): its run id (what `make reproduce
RUN=<id>` takes), its name, start time, duration,
status, whether its model is the champion, only the params that differ
between the runs shown, test accuracy, MAP@3, training seconds, and the DVC
hashes of its data and model. `--plot` draws the runs' validation curves
(val_accuracy and val_loss per epoch) on one figure. Reads the same store as
`make ui` (`MLFLOW_TRACKING_URI`, else `mlflow.tracking_uri`, else ./mlflow.db).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from quickdraw_dag.errors import ConfigError, QuickDrawDagError

METRICS = {
    "metrics.test_accuracy": "test_accuracy",
    "metrics.test_map_at_3": "map@3",
    "metrics.train_seconds": "train_s",
}
HASHES = {"tags.dvc_processed_md5": "data_md5", "tags.dvc_model_md5": "model_md5"}


def parent_runs(experiment: str, count: int) -> pd.DataFrame:
    """The last `count` parent runs of `experiment` (nested trial runs left out), newest first."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"no MLflow experiment {experiment!r} in {mlflow.get_tracking_uri()}: run the pipeline first")
    runs = mlflow.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000)
    if "tags.mlflow.parentRunId" in runs:
        runs = runs[runs["tags.mlflow.parentRunId"].isna()]
    return runs.head(count).reset_index(drop=True)


def champion_run_id() -> str | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from quickdraw_dag.tracking.record import CHAMPION, REGISTERED_MODEL

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).run_id
    except MlflowException:
        return None


def comparison_table(runs: pd.DataFrame, champion: str | None) -> pd.DataFrame:
    """The table: identity, timing, champion, the params that differ, the figures, the hashes."""
    table = pd.DataFrame(
        {
            "run_id": runs["run_id"],  # `make reproduce RUN=<run_id>`
            "run": runs.get("tags.mlflow.runName", runs["run_id"]),
            "started": pd.to_datetime(runs["start_time"]).dt.strftime("%Y-%m-%d %H:%M"),
            "duration": (pd.to_datetime(runs["end_time"]) - pd.to_datetime(runs["start_time"])).map(_duration),
            "status": runs["status"],
            "champion": (runs["run_id"] == champion).map({True: "yes", False: ""}),
        }
    )
    params = [c for c in runs.columns if c.startswith("params.")]
    differing = [c for c in params if runs[c].astype(str).nunique(dropna=False) > 1]
    for column in sorted(differing):
        table[column.removeprefix("params.")] = runs[column]
    for column, name in METRICS.items():
        table[name] = runs[column].round(4) if column in runs else float("nan")
    for column, name in HASHES.items():
        table[name] = runs[column].str.slice(0, 12) if column in runs else ""
    return table


def _duration(delta: pd.Timedelta) -> str:
    if pd.isna(delta):
        return "running"
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min {seconds % 60:02d} s"


def plot_curves(runs: pd.DataFrame, path: Path) -> None:
    """val_accuracy and val_loss per epoch of each run, on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    client = mlflow.MlflowClient()
    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(11, 4))
    for _, run in runs.iterrows():
        label = str(run.get("tags.mlflow.runName", run["run_id"]))
        for axis, metric in ((accuracy, "val_accuracy"), (loss, "val_loss")):
            history = sorted(client.get_metric_history(run["run_id"], metric), key=lambda m: m.step)
            if history:
                axis.plot([m.step for m in history], [m.value for m in history], marker=".", label=label)
    for axis, title in ((accuracy, "validation accuracy"), (loss, "validation loss")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    accuracy.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quickdraw_dag.tracking.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-n", "--runs", type=int, default=5, help="how many of the latest runs (default 5)")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="also draw their validation curves into FILE")
    parser.add_argument("--experiment", default=None, help="default: mlflow.experiment in params.yaml")
    parser.add_argument(
        "--params", default="params.yaml", help="the params whose mlflow section names the store (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("-n: at least 1")
    try:
        import mlflow

        from quickdraw_dag.config.loading import load_params
        from quickdraw_dag.tracking.store import tracking_uri

        settings = load_params(args.params).mlflow
        mlflow.set_tracking_uri(tracking_uri(settings))
        runs = parent_runs(args.experiment or settings.experiment, args.runs)
        if runs.empty:
            raise ConfigError("no pipeline runs yet: `make run` or `make demo` records one")
        with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_colwidth", 40):
            print(comparison_table(runs, champion_run_id()).to_string(index=False))
        if args.plot:
            plot_curves(runs, args.plot)
            print(f"validation curves: {args.plot}")
    except QuickDrawDagError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
