"""Hostile params files and --set values: exit 2 naming the line or key, at once, with a short message.

The probe's 4.5 KB alias bomb took 18.6 GB and 132 s and printed 2 GB of
error; 20,000 `[` crashed with a RecursionError; non-UTF-8, control
characters and NUL gave tracebacks; duplicate keys silently took the last
value. Here each is refused in a fresh process whose peak memory and stderr
are measured.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

DEFAULT = (REPO / "params.yaml").read_bytes()
TRAIN_EPOCHS = rb"\n  epochs: \d+"  # the first `  epochs:` of params.yaml is train's


def alias_bomb(levels: int = 6, width: int = 9) -> bytes:
    """`width ** levels` category names from a few hundred bytes of anchors and aliases."""
    lines = [b"a0: &a0 [circle, square]"]
    for level in range(1, levels + 1):
        lines.append(b"a%d: &a%d [%s]" % (level, level, b", ".join([b"*a%d" % (level - 1)] * width)))
    return b"\n".join(lines) + b"\ndata:\n  source: synthetic\n  categories: *a%d\n" % levels


# (id, bytes of params.yaml, what the message must name)
FILES = [
    ("alias-bomb", alias_bomb(), "line 2, column"),
    ("nested-20000", b"data:\n  categories: " + b"[" * 20000 + b"\n", "line 2"),
    ("not-utf8", DEFAULT + b"\n# caf\xe9\n", "byte offset"),
    ("nul-byte", DEFAULT.replace(b"seed: 0", b"seed: \x000", 1), "line"),
    ("control-character", DEFAULT + b"\x1b[31m\n", "line"),
    ("duplicate-key", DEFAULT + b"\ntrain:\n  epochs: 3\n", "duplicate key 'train'"),
    ("duplicate-nested-key", re.sub(TRAIN_EPOCHS, rb"\g<0>\n  epochs: 2", DEFAULT, count=1), "'epochs'"),
    ("huge-integer", re.sub(TRAIN_EPOCHS, b"\n  epochs: " + b"9" * 5000, DEFAULT, count=1), "cannot be converted"),
    ("megabytes-of-comments", DEFAULT + b"#" * (1 << 20) + b"\n", "bytes allowed"),
]
OVERRIDES = [
    ("set-alias", "data.categories=[&x circle, *x]", "aliases are not allowed"),
    ("set-nested", "data.categories=" + "[" * 20000, "nested more than"),
    ("set-nul", "data.source=ab\x01c", "not allowed"),
    ("set-huge-integer", "train.epochs=" + "7" * 5000, "cannot be converted"),
    ("set-long-value", "data.source=" + "x" * 100_000, "bytes allowed"),
]

PROBE = """
import sys
from tasks.fetch import main
code = main(sys.argv[1:])
# VmHWM is this program's peak; ru_maxrss would also count the forking pytest worker (TensorFlow loaded)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("peak_mb", int(hwm.split()[1]) / 1024, file=sys.stderr)
sys.exit(code)
"""


def run_fetch(workspace: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=workspace, env=env, capture_output=True, text=True, timeout=120
    )


def error_of(done: subprocess.CompletedProcess) -> tuple[str, float]:
    lines = done.stderr.splitlines()
    peak = float(lines[-1].split()[-1]) if lines and lines[-1].startswith("peak_mb") else float("nan")
    return "\n".join(line for line in lines if not line.startswith("peak_mb")), peak


@pytest.mark.parametrize("name,content,named", FILES, ids=[f[0] for f in FILES])
def test_a_hostile_params_file_exits_2_naming_the_place(
    tmp_path: Path, name: str, content: bytes, named: str, record
) -> None:
    (tmp_path / "params.yaml").write_bytes(content)
    done = run_fetch(tmp_path)
    error, peak_mb = error_of(done)
    assert done.returncode == 2, error[-2000:]
    assert named in error and "params.yaml" in error
    assert "Traceback" not in error and len(error) < 600  # never the input itself
    assert peak_mb < 1000
    assert not (tmp_path / "data").exists()
    record("hostile params", variant=name, exit_2=1, message_chars=len(error), peak_mb=round(peak_mb))


@pytest.mark.parametrize("name,override,named", OVERRIDES, ids=[o[0] for o in OVERRIDES])
def test_a_hostile_set_value_exits_2_naming_the_key(
    tmp_path: Path, name: str, override: str, named: str, record
) -> None:
    (tmp_path / "params.yaml").write_bytes(DEFAULT)
    done = run_fetch(tmp_path, "--set", override)
    error, peak_mb = error_of(done)
    assert done.returncode == 2, error[-2000:]
    assert named in error and override.split("=")[0] in error
    assert "Traceback" not in error and len(error) < 600
    assert (tmp_path / "params.yaml").read_bytes() == DEFAULT
    record("hostile params", variant=name, exit_2=1, message_chars=len(error), peak_mb=round(peak_mb))


def test_errors_quote_a_value_once_and_briefly(tmp_path: Path, record) -> None:
    from quickdraw_dag.config.loading import load_params
    from quickdraw_dag.errors import ConfigError

    path = tmp_path / "params.yaml"
    path.write_bytes(DEFAULT)
    with pytest.raises(ConfigError) as nan:
        load_params(path, ["tune.space.learning_rate=[.nan]"], root=None)
    assert all(line.count("(got") <= 1 for line in str(nan.value).splitlines())  # it said "(got [nan]) (got [nan])"
    assert "learning_rate" in str(nan.value)
    with pytest.raises(ConfigError) as long:
        load_params(path, ["data.categories=[" + "a" * 5000 + ", b]"], root=None)
    assert len(str(long.value)) < 400 and "…" in str(long.value)
    params = yaml.safe_load(DEFAULT)
    params["data"]["categories"] = ["circle"] * 300
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="listed twice") as repeated:
        load_params(path, root=None)
    assert len(str(repeated.value)) < 400
    record("hostile params", variant="repeated and long values in messages", exit_2=1, message_chars=0, peak_mb=0)
