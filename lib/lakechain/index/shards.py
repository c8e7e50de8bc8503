"""One FAISS shard per Spark partition, from Arrow record batches, without Python loops.

``build_shard`` is the body of the ``mapInArrow`` function and is pure (no Spark import):
it takes the chunk rows of one partition, rejects bad rows with a reason (null or
wrong-length embedding, non-finite values, zero vector, missing ids) and returns ONE Arrow
row holding the shard (flat: the validated vectors; IVF: the template with the vectors
added under their global ``vector_id``) and the chunk rows needed to answer queries -
inline, or as files in a staging directory on shared storage (much faster: the big bytes
never pass through the JVM). ``merge_shard_rows`` is the driver side.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakechain.index import build
from lakechain.index.errors import IndexBuildError
from lakechain.index.ids import IdRegistry

META_SCHEMA = pa.schema(
    [
        ("vector_id", pa.int64()),
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("text", pa.string()),
    ]
)
"""The chunk columns stored next to the index (``ids.parquet``) so search needs no Spark."""

ERROR_SCHEMA = pa.schema([("chunk_id", pa.string()), ("doc_id", pa.string()), ("reason", pa.string())])

SHARD_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("n", pa.int64()),
        ("payload", pa.binary()),
        ("meta", pa.binary()),
        ("path", pa.string()),
        ("errors", pa.binary()),
    ]
)
"""One row per shard. ``payload`` = raw float32 vectors (flat) or a serialised FAISS index
(IVF); ``meta`` = the chunk rows (Arrow IPC). With a staging directory both go to files
``<path>.f32`` / ``<path>.faiss`` and ``<path>.meta.arrow`` and only ``path`` is set."""
SHARD_DDL = "shard int, n bigint, payload binary, meta binary, path string, errors binary"
INPUT_COLUMNS = ["vector_id", "chunk_id", "doc_id", "chunk_index", "text", "embedding"]
FLAT_SUFFIX, IVF_SUFFIX, META_SUFFIX = ".f32", ".faiss", ".meta.arrow"

NORM_TOLERANCE = 1e-3
MAX_CELL_BYTES = 2**31 - 1


@dataclass
class VectorBatch:
    """Valid rows of one Arrow column as a matrix; ``rows`` are their positions in the batch."""

    matrix: np.ndarray
    rows: np.ndarray
    errors: list[tuple[int, str]] = field(default_factory=list)


def vectors_from_arrow(column: pa.Array | pa.ChunkedArray, dim: int) -> VectorBatch:
    """list<float|double> column → (n_valid, dim) float32 matrix, L2-normalised.

    The list child array is reshaped directly (no per-row Python work). Rows that are null,
    of the wrong length, non-finite or all-zero are reported in ``errors`` by position.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    t = column.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise IndexBuildError(f"embedding column must be array<float>, got {t}")
    lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy(zero_copy_only=False)
    ok = lengths == dim
    errors: list[tuple[int, str]] = []
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            why = "null embedding" if lengths[i] < 0 else f"embedding has {lengths[i]} values, not {dim}"
            errors.append((i, why))
        column = column.filter(pa.array(ok))
    rows = np.flatnonzero(ok)
    values = column.flatten().to_numpy(zero_copy_only=False)  # nulls inside a list become NaN
    matrix = np.asarray(values, dtype=np.float32).reshape(len(rows), dim)
    if len(rows):
        # all(axis=1) of a 2-D array is an array; the stubs' return type also admits a scalar.
        finite = np.asarray(np.isfinite(matrix).all(axis=1))
        if not finite.all():
            matrix = np.where(finite[:, None], matrix, np.float32(0))
        norms = np.linalg.norm(matrix, axis=1)
        good = finite & (norms > 0)
        if not good.all():
            for j in np.flatnonzero(~good).tolist():
                why = "non-finite value in embedding" if not finite[j] else "zero vector"
                errors.append((int(rows[j]), why))
            matrix, norms, rows = matrix[good], norms[good], rows[good]
        if len(rows) and np.abs(norms - 1).max() > NORM_TOLERANCE:
            matrix = matrix / norms[:, None].astype(np.float32)
    errors.sort()
    return VectorBatch(np.ascontiguousarray(matrix, dtype=np.float32), rows, errors)


def ipc_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_ipc(data: object) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _meta(batch: pa.RecordBatch) -> pa.Table:
    cols = []
    for f in META_SCHEMA:
        if f.name in batch.schema.names:
            cols.append(batch.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(batch.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=META_SCHEMA)


def _binary_cell(data: pa.Buffer | np.ndarray, what: str) -> pa.Array:
    buf = pa.py_buffer(data)
    if buf.size > MAX_CELL_BYTES:
        raise IndexBuildError(
            f"{what} of one shard is {buf.size / 2**30:.1f} GiB, over Spark's 2 GiB cell limit: "
            "set index.partitions higher"
        )
    offsets = pa.py_buffer(np.array([0, buf.size], dtype=np.int32))
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, buf])


def build_shard(
    batches: Iterable[pa.RecordBatch],
    template: bytes | np.ndarray,
    dim: int,
    shard_id: int = 0,
    stage_dir: str | None = None,
) -> pa.RecordBatch | None:
    """Build one shard from a partition's chunk rows; ``None`` when the partition is empty.

    Flat shards are the validated vectors themselves (streamed to ``<path>.f32`` when
    staging); IVF shards add the vectors to a copy of the trained template, so the costly
    coarse assignment runs in parallel on the executors.
    """
    index = build.from_bytes(template)
    flat = build.is_flat(index)
    prefix = os.path.join(stage_dir, f"shard-{shard_id:05d}-{uuid.uuid4().hex[:8]}") if stage_dir else None
    vec_file = open(prefix + FLAT_SUFFIX, "wb") if prefix and flat else None
    parts: list[np.ndarray] = []
    metas: list[pa.Table] = []
    err_rows: list[tuple[str | None, str | None, str]] = []
    seen = 0
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            seen += batch.num_rows
            matrix, ids, keep, errs = _validate(batch, dim)
            err_rows += errs
            if flat and vec_file is not None:
                if matrix.size:
                    # .data: the same bytes as a memoryview; numpy's stubs give ndarray the buffer
                    # protocol (__buffer__) only for Python >= 3.12, and mypy checks for 3.10.
                    vec_file.write(matrix.reshape(-1).view(np.uint8).data)
            elif flat:
                parts.append(matrix)
            else:
                build.add(index, matrix, ids)
            metas.append(_meta(batch).filter(pa.array(keep)))
    finally:
        if vec_file is not None:
            vec_file.close()
    if seen == 0:
        if prefix and flat:
            os.remove(prefix + FLAT_SUFFIX)
        return None
    meta = pa.concat_tables(metas) if metas else META_SCHEMA.empty_table()
    errors = pa.Table.from_pylist(
        [{"chunk_id": c, "doc_id": d, "reason": r} for c, d, r in err_rows], schema=ERROR_SCHEMA
    )
    if prefix:
        if not flat:
            faiss.write_index(index, prefix + IVF_SUFFIX)
        with pa.OSFile(prefix + META_SUFFIX, "wb") as sink, pa.ipc.new_file(sink, META_SCHEMA) as writer:
            writer.write_table(meta)
        payload_cell = pa.nulls(1, pa.binary())
        meta_cell = pa.nulls(1, pa.binary())
    else:
        if flat:
            payload = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
        else:
            payload = build.to_bytes(index)
        payload_cell = _binary_cell(payload, "index")
        meta_cell = _binary_cell(ipc_bytes(meta), "chunk rows")
    return pa.RecordBatch.from_arrays(
        [
            pa.array([shard_id], pa.int32()),
            pa.array([meta.num_rows], pa.int64()),
            payload_cell,
            meta_cell,
            pa.array([prefix], pa.string()),
            _binary_cell(ipc_bytes(errors), "error rows"),
        ],
        schema=SHARD_SCHEMA,
    )


def _validate(
    batch: pa.RecordBatch, dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str | None, str | None, str]]]:
    """(valid vectors, their ids, keep-mask over the batch, error rows) for one batch."""
    missing = [c for c in ("vector_id", "chunk_id", "embedding") if c not in batch.schema.names]
    if missing:
        raise IndexBuildError(f"chunks rows lack column(s) {missing}")
    vb = vectors_from_arrow(batch.column("embedding"), dim)
    reasons = dict(vb.errors)
    vid_null = batch.column("vector_id").is_null().to_numpy(zero_copy_only=False)
    cid_null = batch.column("chunk_id").is_null().to_numpy(zero_copy_only=False)
    no_id = (vid_null | cid_null)[vb.rows]
    for i in vb.rows[no_id].tolist():
        reasons[i] = "missing vector_id" if vid_null[i] else "missing chunk_id"
    errs: list[tuple[str | None, str | None, str]] = []
    if reasons:
        chunk_ids = batch.column("chunk_id").to_pylist()
        has_doc = "doc_id" in batch.schema.names
        doc_ids = batch.column("doc_id").to_pylist() if has_doc else [None] * batch.num_rows
        errs = [(chunk_ids[i], doc_ids[i], r) for i, r in sorted(reasons.items())]
    rows = vb.rows[~no_id]
    matrix = vb.matrix[~no_id] if no_id.any() else vb.matrix
    ids = batch.column("vector_id").cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)[rows]
    keep = np.zeros(batch.num_rows, dtype=bool)
    keep[rows] = True
    return np.ascontiguousarray(matrix), np.ascontiguousarray(ids, dtype=np.int64), keep, errs


def shard_partition(
    batches: Iterator[pa.RecordBatch],
    template: bytes | np.ndarray,
    dim: int,
    shard_id: int = 0,
    stage_dir: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Generator form of ``build_shard`` for ``mapInArrow``."""
    out = build_shard(batches, template, dim, shard_id, stage_dir)
    if out is not None:
        yield out


def rows_of(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Shard rows of a collected Arrow table, binary cells as zero-copy buffers."""
    for batch in table.to_batches():
        cols = {name: batch.column(name) for name in batch.schema.names}
        for i in range(batch.num_rows):
            row: dict[str, Any] = {}
            for name, col in cols.items():
                cell = col[i]
                if not cell.is_valid:
                    row[name] = None
                elif pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
                    row[name] = cell.as_buffer()
                else:
                    row[name] = cell.as_py()
            yield row


@dataclass
class Shard:
    """A shard row on the driver: chunk rows and errors decoded, payload still raw."""

    shard: int
    meta: pa.Table
    errors: pa.Table
    payload: Any
    path: str | None

    @classmethod
    def decode(cls, row: Mapping[str, Any]) -> Shard:
        path = row.get("path")
        if path:
            with pa.OSFile(path + META_SUFFIX, "rb") as src:
                meta = pa.ipc.open_file(src).read_all()
        else:
            meta = read_ipc(row["meta"])
        return cls(int(row["shard"]), meta, read_ipc(row["errors"]), row.get("payload"), path)

    @property
    def ids(self) -> np.ndarray:
        return self.meta.column("vector_id").to_numpy().astype(np.int64, copy=False)

    def flat_part(self) -> Any:
        """Raw float32 bytes of a flat shard: a file path or a buffer."""
        return self.path + FLAT_SUFFIX if self.path else self.payload

    def ivf_index(self) -> faiss.Index:
        if self.path:
            return faiss.read_index(self.path + IVF_SUFFIX)
        return build.from_bytes(self.payload)


@dataclass
class Merged:
    """The merged index plus the chunk rows and rejected rows of every shard."""

    index: Any
    rows: pa.Table
    errors: pa.Table
    shards: int


def merge_shard_rows(shard_rows: Iterable[Mapping[str, Any]], template: bytes | np.ndarray) -> Merged:
    """Refuse repeated ids, then assemble the shards into one index.

    Flat: the shards' raw vectors are copied once into one ``IndexIDMap2(IndexFlatIP)``.
    IVF: each shard index is ``merge_from``-ed (ids kept) into the first as it arrives, so
    only one shard is alive at a time besides the growing merged index. No shards at all
    gives the empty template.
    """
    first = build.from_bytes(template)
    flat = build.is_flat(first)
    registry = IdRegistry()
    merged = None
    flat_parts: list[Any] = []
    metas: list[pa.Table] = []
    errors: list[pa.Table] = []
    count = 0
    for row in shard_rows:
        shard = Shard.decode(row)
        registry.add(shard.ids, where=f"in shard {shard.shard}")
        if flat:
            flat_parts.append(shard.flat_part())
        else:
            index = shard.ivf_index()
            if merged is None:
                merged = index
            else:
                build.merge_into(merged, index)
        metas.append(shard.meta)
        errors.append(shard.errors)
        count += 1
    rows = pa.concat_tables(metas) if metas else META_SCHEMA.empty_table()
    errs = pa.concat_tables(errors) if errors else ERROR_SCHEMA.empty_table()
    if flat:
        ids = rows.column("vector_id").to_numpy().astype(np.int64, copy=False)
        merged = build.flat_from_parts(first.d, ids, flat_parts)
    elif merged is None:
        merged = first
    return Merged(merged, rows, errs, count)
