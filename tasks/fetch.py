"""fetch: bring each category's drawings into `data/raw/` with a manifest.

Three sources (`data.source`):

- `quickdraw`: Google's bucket, into the quickdraw package's cache layout
  (`<raw>/<name>.bin`), downloaded with resume, retries and validation;
- a directory of Google's published files (copied after validation);
- `synthetic`: seeded procedural doodles written as `.bin`.

The manifest (`Catalog.manifest`) records, per category, the file, its
format, its drawings, skipped bad records, bytes, sha256 and origin. It is
written last, so a manifest always describes complete files. Every file is
validated and hashed once; a file without a single valid drawing is refused.
The raw folder may hold other files: only those the previous manifest lists
(as this stage names them) are removed when their category is dropped.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quickdraw.names import QUICK_DRAWING_FILES

from quickdraw_dag.artifacts import Catalog, Manifest, ManifestEntry, read_manifest, write_manifest
from quickdraw_dag.config.redact import redact
from quickdraw_dag.config.schema import DataParams, FetchParams, Params
from quickdraw_dag.data import synthetic
from quickdraw_dag.data.download import RetryPolicy, download, ensure_reachable
from quickdraw_dag.data.formats import (
    FORMAT_FOLDERS,
    FORMAT_PREFERENCE,
    Format,
    find_local_file,
    raw_file_name,
    validate_file,
)
from quickdraw_dag.data.formats.binary import write_binary
from quickdraw_dag.data.hashing import file_digest
from quickdraw_dag.errors import ConfigError, DataError
from quickdraw_dag.runtime.atomic import atomic_path
from quickdraw_dag.runtime.cli import run_entry_point
from quickdraw_dag.runtime.diskspace import ensure_free
from quickdraw_dag.runtime.fanout import Mapper, serial_map
from quickdraw_dag.runtime.memory import bound_heap_growth
from quickdraw_dag.tracking.session import data_stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalFile:
    """A validated file of one category in a local source directory."""

    category: str
    path: Path
    format: Format
    drawings: int
    bad_records: int


def fetch(data: DataParams, params: FetchParams, catalog: Catalog, mapper: Mapper = serial_map) -> Manifest:
    """Run the fetch stage, one job per category through `mapper`; returns the manifest."""
    kind = data.source_kind
    log.info("fetch: %d categories from %s into %s", len(data.categories), data.source, catalog.raw)
    previous = _previous_manifest(catalog)
    if kind == "directory":
        # Validate every file before copying any: bad input writes nothing.
        located = mapper(locate_local, [(c, data, params) for c in data.categories], "validate")
        ensure_free(catalog.raw, copy_space(located, catalog), "fetch: copying the source files")
        entries = mapper(copy_local, [(item, data, catalog) for item in located], "copy")
    elif kind == "synthetic":
        entries = mapper(make_synthetic, [(c, params, catalog) for c in data.categories], "synthesize")
    else:
        ensure_reachable(params.download.base_url)  # offline: one clear message, before any task starts
        entries = mapper(download_category, [(c, data, params, catalog) for c in data.categories], "download")
    return finish_manifest(data, entries, catalog, previous)


def locate_local(category: str, data: DataParams, params: FetchParams) -> LocalFile:
    directory = Path(data.source)
    if not directory.is_dir():
        raise ConfigError(f"data.source: {data.source!r} is neither 'quickdraw', 'synthetic' nor a readable directory")
    found = find_local_file(directory, category, params.local_format)
    if found is None:
        wanted = "" if params.local_format == "auto" else f" in format {params.local_format}"
        raise ConfigError(
            f"data.categories: no file for {category!r}{wanted} in {directory} or its folders "
            f"{', '.join(f + '/' for f in FORMAT_FOLDERS)} "
            f"(looked for {category}.bin, {category}.ndjson, full_simplified_{category}.ndjson, "
            f"full_raw_{category}.ndjson, {category}.npy, full_numpy_bitmap_{category}.npy)"
        )
    path, fmt = found
    drawings, bad = validate_file(path, fmt, category=category, on_bad_record=data.on_bad_record)
    require_drawings(path, drawings, bad)
    if bad:
        log.warning("fetch: %s: %d bad record(s) will be skipped (data.on_bad_record=skip)", path, bad)
    return LocalFile(category, path, fmt, drawings, bad)


def copy_space(located: Sequence[LocalFile], catalog: Catalog) -> int:
    """Bytes the copies need: what they add over the files they replace, plus the largest (written before the swap)."""
    sizes = [item.path.stat().st_size for item in located]
    targets = [catalog.raw_file(raw_file_name(item.category, item.format)) for item in located]
    replaced = sum(target.stat().st_size for target in targets if target.is_file())
    return max(0, sum(sizes) - replaced) + max(sizes, default=0)


def copy_local(item: LocalFile, data: DataParams, catalog: Catalog) -> ManifestEntry:
    target = catalog.raw_file(raw_file_name(item.category, item.format))
    with atomic_path(target) as temporary:
        shutil.copyfile(item.path, temporary)
    origin = str(item.path)
    return _entry(item.category, target, item.format, item.drawings, item.bad_records, origin)


def make_synthetic(category: str, params: FetchParams, catalog: Catalog) -> ManifestEntry:
    target = catalog.raw_file(raw_file_name(category, "binary"))
    batch = synthetic.generate(category, params.synthetic_drawings, params.synthetic_seed)
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        write_binary(handle, batch)
    origin = f"synthetic:seed={params.synthetic_seed}"
    return _entry(category, target, "binary", len(batch), 0, origin)


def download_category(category: str, data: DataParams, params: FetchParams, catalog: Catalog) -> ManifestEntry:
    """Download one category's `.bin` (kept if already complete); validated and hashed once."""
    file_name = QUICK_DRAWING_FILES[category]
    url = params.download.base_url + file_name.replace(" ", "%20")
    target = catalog.raw_file(file_name)
    policy = RetryPolicy(
        retries=params.download.retries,
        backoff_s=params.download.backoff_s,
        backoff_max_s=params.download.backoff_max_s,
        timeout_s=params.download.timeout_s,
    )

    def check(path: Path) -> tuple[int, int]:
        drawings, bad = validate_file(path, "binary", on_bad_record=data.on_bad_record)
        require_drawings(path, drawings, bad)
        return drawings, bad

    origin = redact(url)  # no credentials in the manifest
    previous = _previous_entry(catalog, category)
    reusable = previous is not None and (previous["bad_records"] == 0 or data.on_bad_record == "skip")
    if target.exists() and reusable and previous["origin"] == origin and _unchanged(target, previous):
        log.info("fetch: %s already downloaded", target)
        return previous
    # Not recorded as this URL's complete download: fetch it (a `.part` from a killed run resumes).
    result = download(url, target, policy=policy, validate=check, label=category)
    drawings, bad = result.validation
    return _entry(category, target, "binary", drawings, bad, origin, sha256=result.sha256)


def require_drawings(path: Path, drawings: int, bad: int) -> None:
    """A category file without one valid drawing would train a class that is never seen."""
    if drawings == 0:
        why = f"all {bad} records are bad (data.on_bad_record=skip)" if bad else "the file is empty"
        raise DataError(f"no drawings to use: {why}", path=path)


def finish_manifest(
    data: DataParams, entries: Sequence[ManifestEntry], catalog: Catalog, previous: Manifest | None = None
) -> Manifest:
    """Write the manifest last and drop the files of categories no longer asked for.

    Only files the previous manifest lists under the name this stage gives
    them are removed; anything else in the raw folder is never touched.
    """
    keep = {entry["file"] for entry in entries}
    for old in _own_files(previous):
        if old not in keep:
            (catalog.raw / old).unlink(missing_ok=True)
    manifest: Manifest = {
        "source": data.source,
        "source_kind": data.source_kind,
        "categories": {entry["category"]: entry for entry in entries},
        "drawings": sum(entry["drawings"] for entry in entries),
    }
    write_manifest(catalog, manifest)
    log.info("fetch: %d drawings in %d files", manifest["drawings"], len(entries))
    return manifest


def _previous_manifest(catalog: Catalog) -> Manifest | None:
    try:
        manifest = read_manifest(catalog)
    except DataError:
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("categories"), dict) else None


def _own_files(manifest: Manifest | None) -> list[str]:
    """The files a manifest lists that are named as fetch names them (a hand-edited manifest deletes nothing else)."""
    names = []
    for category, entry in ((manifest or {}).get("categories") or {}).items():
        name = entry.get("file") if isinstance(entry, dict) else None
        ours = {raw_file_name(category, fmt) for fmt in FORMAT_PREFERENCE} | {QUICK_DRAWING_FILES.get(category)}
        if isinstance(name, str) and name in ours and Path(name).name == name:
            names.append(name)
    return names


def _previous_entry(catalog: Catalog, category: str) -> ManifestEntry | None:
    try:
        return read_manifest(catalog)["categories"][category]
    except (DataError, KeyError, TypeError):
        return None


def _unchanged(path: Path, entry: ManifestEntry) -> bool:
    """The file the manifest describes is still there, byte for byte (size, then hash)."""
    return path.stat().st_size == entry.get("bytes") and file_digest(path) == entry.get("sha256")


def _entry(
    category: str, path: Path, fmt: Format, drawings: int, bad: int, origin: str, sha256: str | None = None
) -> ManifestEntry:
    return {
        "category": category,
        "file": path.name,
        "format": fmt,
        "drawings": drawings,
        "bad_records": bad,
        "bytes": path.stat().st_size,
        "sha256": sha256 or file_digest(path),
        "origin": origin,
    }


def run(params: Params, mapper: Mapper = serial_map) -> Manifest:
    """The stage as DVC and Prefect call it: this stage's sections only."""
    with data_stage("fetch"):  # marks the pipeline run's start under dvc repro; no MLflow here
        return fetch(params.data, params.fetch, Catalog.from_paths(params.paths), mapper)


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("python -m tasks.fetch", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    bound_heap_growth()  # this process only: flat memory however big the files (quickdraw_dag.runtime.memory)
    sys.exit(main())
