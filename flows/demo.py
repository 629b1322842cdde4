"""`make demo`: the whole pipeline offline on the real drawings that ship with the project, in a few minutes.

Runs in its own workspace (`.demo/`, git-ignored, a DVC repo without git) so
your params.yaml and data stay untouched, and logs to the project's MLflow
store, so `make ui` shows the demo run beside your own and a second
`make demo` gives two runs to compare. Its runs are tagged `demo=true`, with
`demo_workspace` naming this folder, whose DVC cache `make reproduce` reads.

    python -m flows.demo [--set key.path=value ...]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from quickdraw_dag.tracking.lineage import DEMO_WORKSPACE_ENV

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / ".demo"
SAMPLE = Path("samples") / "quickdraw"
# The default params, so on the shipped sample (7 real categories x 1,000 drawings, copied into the workspace
# so that data.source is the default `samples/quickdraw` and the run compares with any other), and the accuracy
# it shows is an honest one; 20 training epochs instead of 25, to finish a little sooner.
DEMO_SETTINGS = ["train.epochs=20"]


def prepare_workspace() -> None:
    WORKSPACE.mkdir(exist_ok=True)
    for name in ("params.yaml", "dvc.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, WORKSPACE / name)
    if not (WORKSPACE / ".dvc").exists():
        subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "--no-scm", "-q"], cwd=WORKSPACE, check=True)
        subprocess.run(
            [str(Path(sys.executable).parent / "dvc"), "config", "core.analytics", "false"], cwd=WORKSPACE, check=True
        )
    # `dvc plots show` in the demo draws its Vega plots offline, as in the project (.dvc/plots_template.html)
    shutil.copy2(ROOT / ".dvc" / "plots_template.html", WORKSPACE / ".dvc" / "plots_template.html")
    subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "config", "plots.html_template", "plots_template.html"],
        cwd=WORKSPACE,
        check=True,
    )
    if not (WORKSPACE / SAMPLE).is_dir():
        shutil.copytree(ROOT / SAMPLE, WORKSPACE / SAMPLE)
    for package in ("tasks", "quickdraw_dag"):  # dvc.yaml lists code deps by path
        target = WORKSPACE / package
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / package, target, ignore=shutil.ignore_patterns("__pycache__"))


def main(argv: Sequence[str] | None = None) -> int:
    prepare_workspace()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"),
        DEMO_WORKSPACE_ENV: str(WORKSPACE),  # the run is tagged a demo; `make reproduce` finds its DVC cache here
    }
    args = [arg for setting in DEMO_SETTINGS for arg in ("--set", setting)] + list(argv or sys.argv[1:])
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.pipeline", *args], cwd=WORKSPACE, env=env)
    print(
        f"demo finished in {time.monotonic() - started:.0f}s (exit {done.returncode}); "
        f"plots in {WORKSPACE / 'reports' / 'plots'}; `make ui` to compare runs"
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
