"""`make reproduce` touches only the git worktree it made (issue 25, point 8).

It used to run `git worktree prune`, which also forgets a user's worktree
whose folder is away for a moment (an unmounted drive): that worktree is
then "not a git repository" and what was staged there is lost.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from quickdraw_dag.orchestration.reproduce import WORKTREE_PREFIX, code_worktree


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _worktrees(repo: Path) -> set[str]:
    return {
        line.split(" ", 1)[1]
        for line in _git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    }


def test_reproduce_keeps_a_worktree_whose_folder_is_away_and_removes_only_its_own(
    tmp_path: Path, record: Callable[..., None]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("a")
    _git(repo, "add", "a.txt")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    other = tmp_path / "drive" / "other"
    _git(repo, "worktree", "add", "-q", "-b", "feature", str(other))
    (other / "staged.txt").write_text("work in progress")
    _git(other, "add", "staged.txt")
    # a worktree of an earlier reproduction that was killed: its temporary folder is gone
    stale_parent = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    stale = stale_parent / commit[:12]
    _git(repo, "worktree", "add", "-q", "--detach", str(stale), commit)
    shutil.rmtree(stale_parent)
    away = tmp_path / "unmounted"
    other.parent.rename(away)  # the drive is unmounted while reproduce runs
    with code_worktree(repo, commit, None, keep=False) as restored:
        assert (restored / "a.txt").read_text() == "a"
        made = str(restored)
    away.rename(other.parent)
    listed = _worktrees(repo)
    assert str(other) in listed and made not in listed and str(stale) not in listed
    # the user's worktree still works, with what was staged there
    assert _git(other, "status", "--porcelain").strip() == "A  staged.txt"
    record("foreign state", case="make reproduce while another worktree's folder is away", others_lost=0, own_left=0)
