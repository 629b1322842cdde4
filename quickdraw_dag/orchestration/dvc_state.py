"""DVC's view of the pipeline, for the Prefect flow: what is current, what to commit.

The flow asks DVC whether a stage changed (its params or deps differ from
`dvc.lock`), runs it only if so, and then records it with `dvc commit`, so
the flow and `dvc repro` never disagree about what is current: after a flow
run `dvc status` reports nothing to do.

A flow holds DVC's own repository lock (`.dvc/tmp/lock`, the one every
`dvc repro`, `dvc exp run` and `dvc checkout` takes first) for its whole run
(`repository_lock`), so those commands refuse before they delete a single
output the flow is writing. DVC's API calls take the same lock, so while the
lock is held here the flow's own calls use a repository whose lock is DVC's
no-op (`LockNoop`): this process already has the real one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from quickdraw_dag.config.loading import apply_override, read_params_file, validate_params
from quickdraw_dag.config.params_yaml import load_yaml
from quickdraw_dag.config.schema import Params
from quickdraw_dag.errors import ConfigError, WorkspaceBusyError, clip
from quickdraw_dag.runtime.atomic import write_bytes_atomic

# Repository roots (resolved) whose DVC lock this process holds, with the lock.
_HELD: dict[Path, Any] = {}


def _open(root: Path) -> Any:
    """A `dvc.repo.Repo` at `root`; its lock is a no-op when this process holds the real one."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.lock import LockNoop
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except NotDvcRepoError:
        raise ConfigError(f"{Path(root).resolve()}: not a DVC repository (the flow needs dvc.yaml and .dvc/)") from None
    if Path(repo.root_dir).resolve() in _HELD:
        repo.lock = LockNoop()
    return repo


@contextmanager
def repository_lock(root: Path = Path("."), wait_s: float = 0.0) -> Iterator[None]:
    """Hold DVC's repository lock for the block, waiting at most `wait_s` seconds for it.

    DVC's own `Lock` (or its hardlink lock, per `core.hardlink_lock`), so DVC
    commands started meanwhile fail with "Unable to acquire lock" before doing
    anything; one held by a running DVC command makes this refuse (exit 75).
    """
    from dvc.lock import LockError

    repo = _open(root)
    lock = repo.lock
    deadline = time.monotonic() + max(0.0, wait_s)
    try:
        while True:
            try:
                lock.lock()  # DVC retries for about 3 seconds itself
                break
            except LockError:
                if time.monotonic() >= deadline:
                    raise WorkspaceBusyError(
                        f"workspace {Path(repo.root_dir).resolve()} is in use by {_lock_holder(lock.lockfile)}, "
                        f"which holds DVC's lock {lock.lockfile} (`dvc repro`, `dvc exp run`, `dvc checkout` or "
                        "another flow); wait for it to finish, or pass --lock-wait SECONDS"
                    ) from None
                time.sleep(1.0)
        key = Path(repo.root_dir).resolve()
        _HELD[key] = lock
        try:
            yield
        finally:
            _HELD.pop(key, None)
            lock.unlock()
    finally:
        repo.close()


def _lock_holder(lockfile: str) -> str:
    """Who holds DVC's lock: its file holds the holder's pid (zc.lockfile); on this host, its command too."""
    try:
        pid = int(Path(lockfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another DVC process"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid}"
    return f"{clip(command, 120)} (pid {pid})"


def open_repo(root: Path = Path(".")) -> Any:
    """DVC's `Repo` at `root`, for the flow's own calls (versioning's too), under the flow's lock."""
    return _open(root)


def stage_is_current(name: str, root: Path = Path(".")) -> bool:
    """True when `dvc status <name>` would report nothing to do."""
    with _open(root) as repo:
        return not repo.status(targets=[name])


def commit_stage(name: str, root: Path = Path(".")) -> None:
    """Record the stage's params, deps and outputs in dvc.lock (as `dvc commit -f`)."""
    with _open(root) as repo:
        repo.commit(name, force=True)


def persist_overrides(path: Path, overrides: Sequence[str], model: type[BaseModel] = Params) -> None:
    """Write validated `--set` overrides into params.yaml, keeping its comments.

    Like `dvc exp run -S`: the file DVC reads must hold the values a run used,
    or `dvc status` would call the run's outputs stale.
    """
    if not overrides:
        return
    raw = read_params_file(path)
    for override in overrides:
        apply_override(raw, override, model)
    validate_params(raw, str(path), model)  # refuse before touching the file
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    # `null` stays `null` (ruamel writes an empty value), as params.yaml spells it
    yaml.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    yaml.representer.add_representer(str, _represent_str)
    document: Any = yaml.load(Path(path).read_text(encoding="utf-8"))
    for override in overrides:
        key, _, _ = override.partition("=")
        parts = key.strip().split(".")
        node, value = document, raw
        for part in parts[:-1]:
            value = value[part]
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _flow_style(value[parts[-1]])
        note = f"{key.strip()}: set with --set on {time.strftime('%Y-%m-%d')}"
        if not _retire_own_comment(node, parts[-1], note):
            _retire_comment_above(node, parts[-1], note)
    buffer = StringIO()
    yaml.dump(document, buffer)
    _check_reads_back(buffer.getvalue(), raw, path, overrides)
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def _check_reads_back(text: str, raw: dict[str, Any], path: Path, overrides: Sequence[str]) -> None:
    """Refuse to write a file that the params loader (and DVC) would read differently from what was validated.

    Writer and reader share one dialect (YAML 1.2), so this holds for every
    value the schema accepts; the check keeps a future writer quirk from
    bricking the workspace instead of failing one `--set`.
    """
    try:
        written = load_yaml(text, str(path))
    except ConfigError:
        written = None
    if not _same(written, raw):
        keys = ", ".join(override.partition("=")[0].strip() for override in overrides)
        raise ConfigError(
            f"--set {clip(keys, 120)}: the value would not read back unchanged from {path}; "
            "it holds characters YAML cannot write back as they are (control or line-separator characters)"
        )


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, all the way down (1 == 1.0 == True in Python; not here)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _represent_str(representer: Any, text: str) -> Any:
    """Line separators (NEL, U+2028, U+2029) escaped in double quotes: a plain or single-quoted one is a line break
    to a YAML 1.1 scanner (PyYAML's, under the params loader), which would fold it into a space."""
    if any(character in text for character in "\x85\u2028\u2029"):
        return representer.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return representer.represent_str(text)


def _flow_style(value: Any) -> Any:
    """Lists as `[a, b]`, as params.yaml writes them."""
    from ruamel.yaml.comments import CommentedSeq

    if not isinstance(value, list):
        return value
    sequence = CommentedSeq(_flow_style(item) for item in value)
    sequence.fa.set_flow_style()
    return sequence


def _retire_own_comment(mapping: Any, key: str, note: str) -> bool:
    """Replace `key`'s end-of-line comment, and the lines that continue it, with `note`; False if it has none.

    params.yaml gives a value's reason beside it (`epochs: 25  # the cosine ...`), continued below at the
    same column; a reason for a value that is no longer there would mislead. Comments further left (above
    the next key) are the next key's and stay.
    """
    item = mapping.ca.items.get(key) if hasattr(mapping, "ca") else None
    token = item[2] if item and len(item) > 2 else None
    if token is None or not token.value.lstrip(" ").startswith("#"):
        return False
    own_line, newline, rest = token.value.partition("\n")
    padding = len(own_line) - len(own_line.lstrip(" "))
    column = token.column + padding if token.column is not None else None
    lines = rest.split("\n")
    continued = 0
    for line in lines:  # continuation lines: comments indented at the end-of-line comment's column
        stripped = line.lstrip(" ")
        if not stripped.startswith("#") or column is None or len(line) - len(stripped) != column:
            break
        continued += 1
    token.value = f"{' ' * padding}# {note}{newline}" + "\n".join(lines[continued:])
    return True


def _retire_comment_above(mapping: Any, key: str, note: str) -> None:
    """Replace the comment lines right above `key` (they described the value it replaced) with `note`.

    ruamel keeps them as the trailing comment of the previous key's value;
    that key's own end-of-line comment stays. A key first in its section
    keeps its comment (it may describe the whole section).
    """
    keys = list(mapping.keys())
    index = keys.index(key)
    if index == 0 or not hasattr(mapping, "ca"):
        return
    item = mapping.ca.items.get(keys[index - 1])
    token = item[2] if item and len(item) > 2 else None
    if token is None:
        return
    own_line, newline, block = token.value.partition("\n")
    lines = block.split("\n")
    comments = [line for line in lines if line.strip().startswith("#")]
    if not newline or not comments:
        return
    indent = comments[0][: len(comments[0]) - len(comments[0].lstrip())]
    blank_tail = "\n" * (len(lines) - 2 - max(i for i, line in enumerate(lines) if line.strip()))
    token.value = f"{own_line}\n{indent}# {note}\n{blank_tail}"
