"""The CPU log (tests/cpu_time.py): each test's own and its children's CPU seconds, apart from its wall time."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.cpu_time import summary
from tests.helpers import REPO, run_bounded

INNER = """
import subprocess
import sys
import time

BURN = "import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass"


def test_burns_in_a_child():
    subprocess.run([sys.executable, "-c", BURN], check=True)


def test_sleeps():
    time.sleep(0.6)
"""


def run_inner(tmp_path: Path, tests: str, log: Path | None) -> None:
    """`tests` run by pytest in one process with the plugin; its CPU log at `log` (None: the variable unset)."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.cpu_time"]\n')
    (tmp_path / "test_inner.py").write_text(tests)
    # neither this run's log nor its worker's name: the inner run has its own, or none
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTEST_XDIST_WORKER", "QUICKDRAW_TEST_CPU_LOG")
    }
    env["PYTHONPATH"] = str(REPO)
    if log is not None:
        env["QUICKDRAW_TEST_CPU_LOG"] = str(log)
    done = run_bounded(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_test_logs_its_own_and_its_childrens_cpu_apart_from_its_wall_time(tmp_path: Path) -> None:
    log = tmp_path / "cpu.jsonl"
    run_inner(tmp_path, INNER, log)
    rows = {row["test"].split("::")[-1]: row for row in map(json.loads, log.read_text().splitlines())}
    assert set(rows) == {"test_burns_in_a_child", "test_sleeps"}
    burner, sleeper = rows["test_burns_in_a_child"], rows["test_sleeps"]
    assert burner["children"] >= 0.5 and burner["wall"] >= 0.5, burner
    assert sleeper["children"] == 0 and sleeper["self"] < 0.2 and sleeper["wall"] >= 0.6, sleeper
    assert burner["worker"] == sleeper["worker"] == "main"
    table = summary(log).splitlines()
    assert table[1].endswith("test_burns_in_a_child") and table[2].endswith("test_sleeps")
    assert table[-1].startswith("main: 2 tests, ")


def test_without_the_variable_nothing_is_logged(tmp_path: Path) -> None:
    run_inner(tmp_path, "def test_nothing():\n    pass\n", None)
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == ["conftest.py", "test_inner.py"]
