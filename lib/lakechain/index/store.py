"""Index builds on disk: one immutable directory per build and an atomic ``CURRENT`` pointer.

Layout under ``<files_root>/index/``::

    CURRENT                      -> "build-20250101T120000123456Z-1a2b3c4d"
    build-<utc ts>-<uuid8>/
        index.faiss              FAISS index (ids = chunk vector_id)
        ids.parquet              vector_id, chunk_id, doc_id, chunk_index, text (sorted by vector_id)
        keyword/                 BM25 keyword index over the same rows (``keyword.py``)
        manifest.json            what was built from what, plus sha256 of every file

A build is written completely into a new directory and only then made current by writing
``CURRENT`` to a temporary file and ``os.replace``-ing it, so a crash at any point leaves
the previous build current. Readers that resolved the old pointer keep working because
old builds are pruned only beyond the last ``keep`` complete ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import pyarrow as pa
import pyarrow.parquet as pq

from lakechain.index.errors import IndexCorruptError, IndexNotFoundError

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
MANIFEST_FILE = "manifest.json"
POINTER_FILE = "CURRENT"
BUILD_PREFIX = "build-"
STAGING_DIR = "_staging"
"""Shard files written by executors during a build (removed when the build ends)."""
FORMAT_VERSION = 1
REBUILD = "rebuild with `lakechain index --force`"
ORPHAN_AGE_S = 3600.0
"""Incomplete build directories (no manifest) older than this are removed by ``prune``."""


def index_root(files_root: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(files_root), "index")


def sha256_file(path: str | os.PathLike[str], block: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _fsync(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (FUSE volumes, directories on Windows) refuse fsync
        pass
    finally:
        os.close(fd)


def new_build_name(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{BUILD_PREFIX}{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"


def read_pointer(root: str | os.PathLike[str]) -> str | None:
    """Name of the current build, or None when nothing was ever made current."""
    p = Path(root) / POINTER_FILE
    try:
        name = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def write_pointer(root: str | os.PathLike[str], build_name: str) -> None:
    """Atomically make ``build_name`` current (temp file + fsync + os.replace)."""
    root = Path(root)
    tmp = root / f".{POINTER_FILE}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(build_name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / POINTER_FILE)
    _fsync(root)


def resolve_build(path: str | os.PathLike[str]) -> Path:
    """A build directory from a build dir, an index root (has CURRENT) or a files root."""
    p = Path(path)
    if (p / MANIFEST_FILE).is_file() or p.name.startswith(BUILD_PREFIX):
        if not p.is_dir():
            raise IndexNotFoundError(f"no index build at {p}")
        return p
    for root in (p, p / "index"):
        name = read_pointer(root)
        if name is not None:
            build = root / name
            if not build.is_dir():
                raise IndexCorruptError(
                    f"{root / POINTER_FILE} names {name!r} but that directory is missing; {REBUILD}"
                )
            return build
    raise IndexNotFoundError(f"no index at {p} (no {POINTER_FILE} pointer): run `lakechain index` first")


def read_manifest(build: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(build) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"{path} is missing: incomplete build; {REBUILD}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{path} is not valid JSON ({exc}); {REBUILD}") from None
    if not isinstance(data, dict) or "files" not in data:
        raise IndexCorruptError(f"{path} is not a Lakechain index manifest")
    return data


def staleness(manifest: dict[str, Any] | None, latest_version: int | None) -> str | None:
    """A warning when the table the index was built from has moved on since (new, changed
    or deleted chunks are not searchable until ``lakechain index`` runs), else None."""
    source = (manifest or {}).get("source") or {}
    built = source.get("version")
    if built is None or latest_version is None or latest_version <= int(built):
        return None
    return (
        f"the index was built from {source.get('table', 'chunks')} v{built}, which is now at "
        f"v{latest_version}: answers miss what changed since; run `lakechain index`"
    )


def delta_log_version(table_dir: str | os.PathLike[str] | None) -> int | None:
    """The latest committed version of a local Delta table, read from its log's file names
    (no Spark: ``lakechain ask`` starts none)."""
    log = Path(table_dir) / "_delta_log" if table_dir else None
    if log is None or not log.is_dir():
        return None
    versions = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
    return max(versions) if versions else None


def current_manifest(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Manifest of the current build; None when there is none or it is unreadable."""
    try:
        return read_manifest(resolve_build(root))
    except (IndexNotFoundError, IndexCorruptError):
        return None


def make_manifest(
    plan: Any,
    index: faiss.Index,
    model: str | None,
    source: dict[str, Any],
    *,
    shards: int,
    nprobe: int = 16,
    rejected: int = 0,
    config: dict[str, Any] | None = None,
    build_seconds: float | None = None,
) -> dict[str, Any]:
    """Manifest body for ``save_build`` (which adds build id/time and file checksums).

    ``source`` is ``{"table", "name", "path", "version"}`` of the chunks table version the
    index was built from; ``nprobe`` is the default used by ``load`` for IVF kinds.
    """
    import lakechain

    return {
        "kind": plan.kind,
        "description": plan.description,
        "metric": "inner_product",
        "plan": plan.as_dict(),
        "nprobe": nprobe,
        "dim": int(index.d),
        "count": int(index.ntotal),
        "model": model,
        "shards": shards,
        "rejected": rejected,
        "source": source,
        "config": config or {},
        "lakechain_version": lakechain.__version__,
        "faiss_version": faiss.__version__,
        "build_seconds": build_seconds,
    }


def save_build(
    root: str | os.PathLike[str],
    index: faiss.Index,
    rows: pa.Table,
    manifest: dict[str, Any],
    keep: int = 2,
    keyword: Callable[[Path, Sequence[str | None]], Any] | None = None,
) -> Path:
    """Write a complete build into a new directory, then switch ``CURRENT`` to it.

    ``rows`` holds the chunk rows (sorted here by vector_id); ``manifest`` is completed with
    build id/time, file sizes and sha256 checksums. ``keyword`` (``keyword.write_index``)
    writes the keyword side from the sorted rows' texts and returns the manifest's
    ``keyword`` section, whose ``files`` are checksummed like the others. On any exception
    the partial directory is removed and the previous build stays current.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    built_at = datetime.now(timezone.utc)
    name = new_build_name(built_at)
    build = root / name
    build.mkdir()
    try:
        index_path = build / INDEX_FILE
        faiss.write_index(index, str(index_path))
        _fsync(index_path)
        ids_path = build / IDS_FILE
        rows = rows.sort_by("vector_id")
        pq.write_table(rows, ids_path)
        _fsync(ids_path)
        extra: dict[str, Any] = {}
        files = [INDEX_FILE, IDS_FILE]
        if keyword is not None:
            extra["keyword"] = dict(keyword(build, rows.column("text").to_pylist()))
            files += extra["keyword"]["files"]
            for f in extra["keyword"]["files"]:
                _fsync(build / f)
            for d in {(build / f).parent for f in extra["keyword"]["files"]}:
                _fsync(d)
        full = {
            "format": FORMAT_VERSION,
            "build_id": name,
            "built_at": built_at.isoformat(),
            **manifest,
            **extra,
            "files": {f: _file_entry(build / f) for f in files},
        }
        tmp = build / f".{MANIFEST_FILE}.tmp"
        tmp.write_text(json.dumps(full, indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, build / MANIFEST_FILE)
        _fsync(build / MANIFEST_FILE)
        _fsync(build)
        write_pointer(root, name)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    prune(root, keep=keep)
    return build


def new_staging_dir(root: str | os.PathLike[str]) -> Path:
    """A fresh directory for one build's shard files, under the index root (shared storage)."""
    path = Path(root) / STAGING_DIR / f"{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    return path


def list_builds(root: str | os.PathLike[str]) -> list[Path]:
    """Build directories, oldest first (names sort by UTC timestamp)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(BUILD_PREFIX))


def prune(root: str | os.PathLike[str], keep: int = 2) -> list[Path]:
    """Delete complete builds beyond the newest ``keep`` (never the current one), and
    incomplete builds and staging directories older than ``ORPHAN_AGE_S``."""
    root = Path(root)
    current = read_pointer(root)
    builds = list_builds(root)
    complete = [b for b in builds if (b / MANIFEST_FILE).is_file()]
    keep_names = {b.name for b in complete[-max(keep, 1) :]} | ({current} if current else set())
    removed = []
    now = time.time()
    for b in builds:
        if b.name in keep_names:
            continue
        is_orphan = not (b / MANIFEST_FILE).is_file()
        if is_orphan and now - b.stat().st_mtime < ORPHAN_AGE_S:
            continue  # maybe a build in progress in another process
        shutil.rmtree(b, ignore_errors=True)
        removed.append(b)
    staging = root / STAGING_DIR
    if staging.is_dir():  # left behind by a killed driver
        for d in staging.iterdir():
            if now - d.stat().st_mtime >= ORPHAN_AGE_S:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
    return removed
