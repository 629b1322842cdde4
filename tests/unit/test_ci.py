"""CI stays honest: `.ci/run` runs exactly `make test`, which selects nothing out, and nothing skips under CI
that runs locally, except the tests of `../shared` where it is absent."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO, run_bounded, skip_outside_ci

# The only places a test may skip: the helper that fails under CI instead, and the fixture of ../shared.
ALLOWED_SKIPS = {
    ("tests/helpers.py", "skip_outside_ci"),
    ("tests/conftest.py", "shared_raw"),
    ("tests/model/test_real_quality.py", "large_set"),  # ../shared's larger real set, absent in a user's clone
}


SKIPPING = {"skip", "skipif", "importorskip", "xfail"}


def commands(path: Path) -> list[str]:
    """The lines of a shell script that are neither blank nor comments, inside `if` blocks or not."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]


def pytest_options() -> dict:
    """The suite's `[tool.pytest.ini_options]` (pyproject.toml)."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def inner_pytest(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess:
    """`python -m pytest *args` in a process of its own (no cache written), bounded in time."""
    timeout = kwargs.pop("timeout", 300)
    return run_bounded(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, timeout=timeout, **kwargs
    )


def test_ci_runs_exactly_make_test_and_nothing_else_that_tests() -> None:
    lines = commands(REPO / ".ci" / "run")
    assert lines[-1] == "make test"
    assert [line for line in lines if "pytest" in line or re.search(r"\bmake\b", line)] == ["make test"]


def test_make_test_runs_the_whole_suite_with_its_slowest_fifteen() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    assert recipe.group(1).strip() == "$(PY) -m pytest"
    options = pytest_options()
    addopts = options["addopts"].split()
    assert "--durations=15" in addopts
    assert not {"-k", "-m", "--deselect", "--ignore", "--ignore-glob", "-x", "--lf"} & set(addopts), addopts
    assert options["testpaths"] == ["tests"]


def skipping_calls(path: Path) -> list[tuple[str, int]]:
    """(enclosing function, line) of every pytest.skip/skipif/importorskip/xfail call or mark in a module."""
    found: list[tuple[str, int]] = []

    def skips(node: ast.AST) -> bool:
        target = node.func if isinstance(node, ast.Call) else node
        return isinstance(target, ast.Attribute) and target.attr in SKIPPING

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if skips(decorator):
                    found.append((function, decorator.lineno))
            for statement in node.body:
                visit(statement, node.name)
            return
        if isinstance(node, ast.Call) and skips(node):
            found.append((function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_only_the_shared_data_tests_may_skip_everything_else_fails_under_ci() -> None:
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        for function, line in skipping_calls(path):
            if (relative, function) not in ALLOWED_SKIPS:
                offenders.append(f"{relative}:{line} in {function}")
    assert offenders == [], f"{offenders}: skip through tests.helpers.skip_outside_ci, which fails under CI"


def test_the_scan_finds_a_skip_where_there_is_one(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text("import pytest\n\n@pytest.mark.skipif(True, reason='x')\ndef test_a():\n    pytest.skip('y')\n")
    assert skipping_calls(module) == [("<module>", 3), ("test_a", 5)]


def test_a_missing_tool_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        skip_outside_ci("no chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no chromium \(CI=true runs every test"):
        skip_outside_ci("no chromium")


GROUPED = """
import os
from pathlib import Path

import pytest

BUILT = Path(__file__).with_name("built")
RAN = Path(__file__).with_name("ran")


@pytest.fixture(scope="module")
def shared():
    with BUILT.open("a") as handle:
        handle.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")


def ran(name):
    with RAN.open("a") as handle:
        handle.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")


@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("n", range(6))
def test_grouped(shared, n):
    ran(f"grouped{n}")


@pytest.mark.parametrize("n", range(6))
def test_free(n):
    ran(f"free{n}")
"""


def test_make_tests_xdist_groups_keep_a_group_on_one_worker_and_build_its_fixture_once(tmp_path: Path) -> None:
    """The suite's shared fixtures (the champion, the flow runs) count on `xdist_group`; pytest 9.2 with
    pytest-xdist 3.8 ignored every group without a word, and each worker built them again."""
    addopts = pytest_options()["addopts"]
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    # two workers whatever the machine (the suite's `-n auto` counts its cores)
    done = inner_pytest("-q", "-o", f"addopts={addopts}", "-n", "2", str(tmp_path), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = dict(line.split() for line in (tmp_path / "ran").read_text().splitlines())
    assert len(ran) == 12 and set(ran.values()) == {"gw0", "gw1"}, ran  # two workers, both used
    assert len({worker for name, worker in ran.items() if name.startswith("grouped")}) == 1, ran
    assert len((tmp_path / "built").read_text().split()) == 1  # the group's module fixture, built once


def test_the_suite_runs_one_worker_more_than_there_are_cores_and_without_xdist_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil

    from tests.conftest import WORKER_MEMORY, pytest_xdist_auto_num_workers

    addopts = pytest_options()["addopts"]
    assert "-n auto" in addopts
    cores, memory = len(os.sched_getaffinity(0)), psutil.virtual_memory().total
    expected = max(1, min(cores + 1, memory // WORKER_MEMORY))
    # `make test`'s own configuration starts that many workers (the outer run's variables left out)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "QUICKDRAW_TEST_CPU_LOG"))}
    one_test = "tests/unit/test_split.py::test_splits_are_disjoint_sized_and_complete"
    done = inner_pytest(one_test, cwd=REPO, env=env)  # not -q: it hides the count
    assert done.returncode == 0 and f"created: {expected}/{expected} workers" in done.stdout, done.stdout[-2000:]
    # xdist's own override still wins
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "5")
    assert pytest_xdist_auto_num_workers(None) == 5  # type: ignore[arg-type]  # the config is not read
    # Without xdist its hook is optional, not an unknown hook (pytest's INTERNALERROR)
    done = inner_pytest(
        "-p", "no:xdist", "-o", "addopts=", "--collect-only", "-q", "tests/unit/test_split.py", cwd=REPO, timeout=120
    )
    assert done.returncode == 0 and re.search(r"\d+ tests collected", done.stdout), (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
