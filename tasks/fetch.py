"""fetch: bring each category's drawings into `data/raw/` with a manifest.

Three sources (`data.source`):

- `quickdraw`: Google's bucket, into the quickdraw package's cache layout
  (`<raw>/<name>.bin`), downloaded with resume, retries and validation;
- a directory of Google's published files (copied after validation);
- `synthetic`: seeded procedural doodles written as `.bin`.

`data/raw/manifest.json` records, per category, the file, its format, its
drawings, skipped bad records, bytes, sha256 and origin. It is written last,
so a manifest always describes complete files.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from quickdraw.names import QUICK_DRAWING_FILES

from quickdraw_dag import synthetic
from quickdraw_dag.atomic import atomic_path, write_json_atomic
from quickdraw_dag.cli import run_entry_point
from quickdraw_dag.memory import bound_heap_growth
from quickdraw_dag.config import DataParams, FetchParams, Params
from quickdraw_dag.download import RetryPolicy, download
from quickdraw_dag.errors import ConfigError, DataError
from quickdraw_dag.fanout import Mapper, serial_map
from quickdraw_dag.formats import Format, find_local_file, raw_file_name, validate_file
from quickdraw_dag.formats.binary import write_binary
from quickdraw_dag.redact import redact

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class LocalFile:
    """A validated file of one category in a local source directory."""

    category: str
    path: Path
    format: Format
    drawings: int
    bad_records: int


def fetch(data: DataParams, params: FetchParams, raw_dir: Path, mapper: Mapper = serial_map) -> dict[str, Any]:
    """Run the fetch stage, one job per category through `mapper`; returns the manifest."""
    raw_dir = Path(raw_dir)
    kind = data.source_kind
    log.info("fetch: %d categories from %s into %s", len(data.categories), data.source, raw_dir)
    if kind == "directory":
        # Validate every file before copying any: bad input writes nothing.
        located = mapper(locate_local, [(c, data, params) for c in data.categories], "validate")
        entries = mapper(copy_local, [(item, data, raw_dir) for item in located], "copy")
    elif kind == "synthetic":
        entries = mapper(make_synthetic, [(c, params, raw_dir) for c in data.categories], "synthesize")
    else:
        entries = mapper(download_category, [(c, data, params, raw_dir) for c in data.categories], "download")
    return write_manifest(data, entries, raw_dir)


def locate_local(category: str, data: DataParams, params: FetchParams) -> LocalFile:
    directory = Path(data.source)
    if not directory.is_dir():
        raise ConfigError(
            f"data.source: {data.source!r} is neither 'quickdraw', 'synthetic' nor a readable directory"
        )
    found = find_local_file(directory, category, params.local_format)
    if found is None:
        wanted = "" if params.local_format == "auto" else f" in format {params.local_format}"
        raise ConfigError(
            f"data.categories: no file for {category!r}{wanted} in {directory} "
            f"(looked for {category}.bin, {category}.ndjson, full_simplified_{category}.ndjson, "
            f"full_raw_{category}.ndjson, {category}.npy, full_numpy_bitmap_{category}.npy)"
        )
    path, fmt = found
    drawings, bad = validate_file(path, fmt, category=category, on_bad_record=data.on_bad_record)
    if bad:
        log.warning("fetch: %s: %d bad record(s) will be skipped (data.on_bad_record=skip)", path, bad)
    return LocalFile(category, path, fmt, drawings, bad)


def copy_local(item: LocalFile, data: DataParams, raw_dir: Path) -> dict[str, Any]:
    target = raw_dir / raw_file_name(item.category, item.format)
    with atomic_path(target) as temporary:
        shutil.copyfile(item.path, temporary)
    origin = str(Path(data.source) / item.path.name)
    return _entry(item.category, target, item.format, item.drawings, item.bad_records, origin)


def make_synthetic(category: str, params: FetchParams, raw_dir: Path) -> dict[str, Any]:
    target = raw_dir / raw_file_name(category, "binary")
    batch = synthetic.generate(category, params.synthetic_drawings, params.synthetic_seed)
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        write_binary(handle, batch)
    origin = f"synthetic:seed={params.synthetic_seed}"
    return _entry(category, target, "binary", len(batch), 0, origin)


def download_category(
    category: str, data: DataParams, params: FetchParams, raw_dir: Path
) -> dict[str, Any]:
    """Download one category's `.bin` (kept if already complete)."""
    file_name = QUICK_DRAWING_FILES[category]
    url = params.download.base_url + file_name.replace(" ", "%20")
    target = raw_dir / file_name
    policy = RetryPolicy(
        retries=params.download.retries,
        backoff_s=params.download.backoff_s,
        backoff_max_s=params.download.backoff_max_s,
        timeout_s=params.download.timeout_s,
    )

    def check(path: Path) -> None:
        validate_file(path, "binary", on_bad_record=data.on_bad_record)

    if target.exists() and _previous_origin(raw_dir, category) == redact(url):
        log.info("fetch: %s already downloaded", target)
    else:
        download(url, target, policy=policy, validate=check, label=category)
    drawings, bad = validate_file(target, "binary", on_bad_record=data.on_bad_record)
    return _entry(category, target, "binary", drawings, bad, redact(url))  # no credentials in the manifest


def write_manifest(data: DataParams, entries: Sequence[dict[str, Any]], raw_dir: Path) -> dict[str, Any]:
    """Write `manifest.json` last and drop files of categories no longer asked for."""
    keep = {entry["file"] for entry in entries} | {MANIFEST_NAME}
    for path in raw_dir.iterdir():
        if path.is_file() and path.name not in keep and not path.name.endswith(".part"):
            path.unlink()
    manifest = {
        "source": data.source,
        "source_kind": data.source_kind,
        "categories": {entry["category"]: entry for entry in entries},
        "drawings": sum(entry["drawings"] for entry in entries),
    }
    write_json_atomic(raw_dir / MANIFEST_NAME, manifest)
    log.info("fetch: %d drawings in %d files", manifest["drawings"], len(entries))
    return manifest


def read_manifest(raw_dir: Path) -> dict[str, Any]:
    """The manifest written by fetch (DataError if it is missing or corrupt)."""
    import json

    path = Path(raw_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("missing: run the fetch stage first", path=path) from None
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON ({error.msg})", path=path, line=error.lineno) from None


def _previous_origin(raw_dir: Path, category: str) -> str | None:
    try:
        return read_manifest(raw_dir)["categories"][category]["origin"]
    except (DataError, KeyError, TypeError):
        return None


def _entry(category: str, path: Path, fmt: Format, drawings: int, bad: int, origin: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {
        "category": category,
        "file": path.name,
        "format": fmt,
        "drawings": drawings,
        "bad_records": bad,
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
        "origin": origin,
    }


def run(params: Params, mapper: Mapper = serial_map) -> dict[str, Any]:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    return fetch(params.data, params.fetch, Path(params.paths.raw), mapper)


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.fetch", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    bound_heap_growth()  # this process only: flat memory however big the files (quickdraw_dag.memory)
    sys.exit(main())
