"""Search a saved index without Spark: batched FAISS and BM25 search plus vector_id → chunk rows.

``load`` verifies before it trusts: the manifest must match the expected embedding model,
dimension and chunks-table version (checked first, before reading big files), and every
file must match its sha256 checksum. Builds made before the keyword side existed load
with ``keyword = None`` (dense search only; ``keyword_missing`` says why and what to run).
``cached_load`` keeps one ``LoadedIndex`` per build directory per process, so Spark task
workers load the index once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lakechain.index import build, keyword, store
from lakechain.index.errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexStaleError,
    KeywordIndexMissingError,
)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk; ``score`` is the inner product (cosine for unit vectors)."""

    vector_id: int
    chunk_id: str
    doc_id: str | None
    text: str | None
    score: float
    chunk_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadedIndex:
    """An index build in memory: the FAISS index and its chunk rows sorted by vector_id."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        index: faiss.Index,
        rows: pa.Table,
        keyword_index: keyword.KeywordIndex | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.index = index
        self.keyword = keyword_index
        """BM25 over ``rows`` in their order (sorted by vector_id); None for older builds."""
        ids = _int64s(rows)
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():  # lookup needs sorted, unique ids
            rows = rows.sort_by("vector_id")
            ids = _int64s(rows)
        self.rows = rows
        self._ids = ids

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def has_keyword(self) -> bool:
        return self.keyword is not None

    @property
    def keyword_missing(self) -> str:
        """Why keyword search is unavailable, with the fix ('' when it is available)."""
        if self.keyword is not None:
            return ""
        return (
            f"index build {self.path} has no keyword (BM25) side made by tokenizer "
            f"{keyword.TOKENIZER!r}: run `lakechain index` to rebuild it"
        )

    @property
    def table_version(self) -> int | None:
        return self.manifest.get("source", {}).get("version")

    def __repr__(self) -> str:
        return (
            f"LoadedIndex({self.manifest.get('description')}, n={self.count}, dim={self.dim}, "
            f"model={self.model!r}, path={str(self.path)!r})"
        )

    def set_nprobe(self, nprobe: int) -> None:
        build.set_nprobe(self.index, nprobe)

    def search(self, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for each row of ``matrix`` (n, dim): (scores (n,k) float32, ids (n,k) int64).

        Missing results (k > count) come back as id -1 with score -inf.
        """
        x = np.asarray(matrix, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise IndexMismatchError(
                f"query vectors have shape {x.shape} but the index holds dimension {self.dim} "
                f"(model {self.model!r}): embed queries with the model the index was built with"
            )
        k = max(1, int(k))
        if len(x) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        scores, ids = self.index.search(np.ascontiguousarray(x), k)
        scores[ids < 0] = -np.inf
        return scores, ids

    def lookup(self, ids: np.ndarray | list[int]) -> list[dict[str, Any] | None]:
        """Chunk rows for vector ids, in order; None for -1 or unknown ids."""
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        if flat.size == 0 or self._ids.size == 0:
            return [None] * flat.size
        pos = np.searchsorted(self._ids, flat)
        pos[pos >= self._ids.size] = 0
        found = (self._ids[pos] == flat) & (flat >= 0)
        taken = self.rows.take(_arrow_int64s(pos[found])).to_pylist()
        out: list[dict[str, Any] | None] = [None] * flat.size
        for slot, row in zip(np.flatnonzero(found).tolist(), taken, strict=True):
            out[slot] = row
        return out

    def search_chunks(
        self, matrix: np.ndarray, k: int, score_threshold: float | None = None
    ) -> list[list[Hit]]:
        """``search`` + ``lookup``: for each query its hits, best first (below threshold dropped)."""
        scores, ids = self.search(matrix, k)
        return self._hits(scores, ids, score_threshold)

    def search_keyword(self, queries: list[str], k: int) -> list[list[Hit]]:
        """BM25 top-``k`` for each query in one pass: hits best first, ``score`` = BM25 score.

        Raises ``KeywordIndexMissingError`` on a build without a keyword side.
        """
        if self.keyword is None:
            raise KeywordIndexMissingError(self.keyword_missing)
        scores, positions = self.keyword.search(queries, k)
        ids = np.where(positions >= 0, self._ids[np.maximum(positions, 0)] if self._ids.size else -1, -1)
        return self._hits(scores, ids, None)

    def _hits(self, scores: np.ndarray, ids: np.ndarray, score_threshold: float | None) -> list[list[Hit]]:
        rows = self.lookup(ids)
        out: list[list[Hit]] = []
        width = ids.shape[1]
        for q in range(ids.shape[0]):
            hits = []
            for j in range(width):
                row = rows[q * width + j]
                score = float(scores[q, j])
                if row is None or (score_threshold is not None and score < score_threshold):
                    continue
                hits.append(
                    Hit(
                        vector_id=int(row["vector_id"]),
                        chunk_id=row["chunk_id"],
                        doc_id=row["doc_id"],
                        text=row["text"],
                        score=score,
                        chunk_index=row["chunk_index"],
                    )
                )
            out.append(hits)
        return out


def check_manifest(
    manifest: dict[str, Any],
    where: str | os.PathLike[str],
    expected_model: str | None = None,
    expected_dim: int | None = None,
    expected_table_version: int | None = None,
) -> None:
    """Raise ``IndexMismatchError`` / ``IndexStaleError`` when the build does not fit."""
    if expected_model is not None and manifest.get("model") != expected_model:
        raise IndexMismatchError(
            f"index {where} was built with embedding model {manifest.get('model')!r} but the configured "
            f"model is {expected_model!r}: re-run `lakechain embed`, then `lakechain index --force`"
        )
    if expected_dim is not None and int(manifest.get("dim", -1)) != int(expected_dim):
        raise IndexMismatchError(
            f"index {where} holds {manifest.get('dim')}-dim vectors but the embedder produces "
            f"{expected_dim}: re-run `lakechain embed`, then `lakechain index --force`"
        )
    built_from = manifest.get("source", {}).get("version")
    if expected_table_version is not None and built_from != expected_table_version:
        raise IndexStaleError(
            f"index {where} was built from {manifest.get('source', {}).get('table', 'chunks')} version "
            f"{built_from} but the table is now at version {expected_table_version}: "
            "rebuild with `lakechain index --force`"
        )


def _verify(build_dir: Path, manifest: dict[str, Any], name: str) -> Path:
    path = build_dir / name
    if not path.is_file():
        raise IndexCorruptError(f"{path} is missing: {store.REBUILD}")
    expected = manifest["files"].get(name, {}).get("sha256")
    actual = store.sha256_file(path)
    if expected != actual:
        raise IndexCorruptError(
            f"{path} does not match its manifest checksum (sha256 {actual[:12]}… ≠ {str(expected)[:12]}…): "
            f"the file is damaged or was replaced; {store.REBUILD}"
        )
    return path


def load(
    path_or_root: str | os.PathLike[str],
    expected_model: str | None = None,
    expected_dim: int | None = None,
    expected_table_version: int | None = None,
    nprobe: int | None = None,
    verify: bool = True,
) -> LoadedIndex:
    """Load a build (a build dir, an index root with CURRENT, or a files root holding index/).

    ``nprobe`` (IVF lists scanned per query) defaults to the value in the manifest, i.e.
    ``settings.index.nprobe`` at build time. ``verify`` checks sha256 of both files.
    """
    build_dir = store.resolve_build(path_or_root)
    manifest = store.read_manifest(build_dir)
    check_manifest(manifest, build_dir, expected_model, expected_dim, expected_table_version)
    keyword_files = list(manifest.get("keyword", {}).get("files", [])) if keyword.is_current(manifest) else []
    if verify:
        index_path = _verify(build_dir, manifest, store.INDEX_FILE)
        ids_path = _verify(build_dir, manifest, store.IDS_FILE)
        for name in keyword_files:
            _verify(build_dir, manifest, name)
    else:
        index_path, ids_path = build_dir / store.INDEX_FILE, build_dir / store.IDS_FILE
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError as exc:
        raise IndexCorruptError(f"{index_path} cannot be read by FAISS ({exc}); {store.REBUILD}") from None
    try:
        rows = pq.ParquetFile(ids_path).read()  # one file: no dataset layer (0.4 s of imports)
    except (OSError, pa.ArrowException) as exc:
        raise IndexCorruptError(f"{ids_path} cannot be read ({exc}); {store.REBUILD}") from None
    count, dim = int(manifest["count"]), int(manifest["dim"])
    if index.ntotal != count or index.d != dim or rows.num_rows != count:
        raise IndexCorruptError(
            f"{build_dir}: manifest says {count}×{dim} but index.faiss holds {index.ntotal}×{index.d} "
            f"and ids.parquet {rows.num_rows} rows; {store.REBUILD}"
        )
    keyword_index = None
    if keyword_files:
        try:
            keyword_index = keyword.KeywordIndex.load(build_dir, count)
        except (OSError, ValueError) as exc:
            where = build_dir / keyword.KEYWORD_DIR
            raise IndexCorruptError(f"{where} cannot be read ({exc}); {store.REBUILD}") from None
    build.set_nprobe(index, int(nprobe or manifest.get("nprobe") or 1))
    return LoadedIndex(build_dir, manifest, index, rows, keyword_index)


# numpy <-> Arrow without pyarrow's pandas checks: ``to_numpy`` and ``pa.array`` import pandas,
# 0.4-0.8 s of CPU in every process that loads an index (``lakechain ask``, each Spark worker).


def _int64s(rows: pa.Table) -> np.ndarray:
    """The vector ids as a read-only numpy view (DLPack, no copy)."""
    return np.from_dlpack(rows.column("vector_id").combine_chunks())


def _arrow_int64s(values: np.ndarray) -> pa.Array:
    """Row positions as an Arrow array over the numpy buffer (kept alive by the array)."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), int(data.size), [None, pa.py_buffer(data)])


_CACHE: OrderedDict[tuple[Any, ...], LoadedIndex] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def cached_load(
    path_or_root: str | os.PathLike[str],
    expected_model: str | None = None,
    expected_dim: int | None = None,
    expected_table_version: int | None = None,
    nprobe: int | None = None,
    verify: bool = True,
) -> LoadedIndex:
    """``load`` once per build directory per process (thread-safe).

    The CURRENT pointer is re-read on every call (a tiny file), so a new build is picked
    up; builds are immutable, so a cached one never goes stale. Expectations are checked
    on every call, before anything big is read.
    """
    build_dir = store.resolve_build(path_or_root).resolve()
    key = (str(build_dir), nprobe, verify)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    manifest = cached.manifest if cached is not None else store.read_manifest(build_dir)
    check_manifest(manifest, build_dir, expected_model, expected_dim, expected_table_version)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = load(build_dir, nprobe=nprobe, verify=verify)
            _CACHE[key] = hit
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
    return hit


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
