"""A Spark Python data source named ``delta`` backed by delta-rs (``deltalake``).

Used only where native Delta (Databricks, or Delta jars on the classpath) is absent:
the ``delta-spark`` wheel ships no jars and Maven is unreachable offline. Executors write
one Parquet file per partition and report its size and column statistics; the driver
commits every file in ONE Delta transaction, so a failed task leaves the table at its
previous version (``abort`` removes the files that were written).

Options: ``path`` (required), ``versionAsOf`` (reads), ``mergeSchema`` / ``overwriteSchema``
(writes). Only ``append`` and ``overwrite`` modes exist for Python data sources.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from lakechain.storage.delta_schema import (
    arrow_to_spark,
    check_compatible,
    delta_arrow_schema,
    normalize_arrow,
)

_MAX_STAT_STRING = 32
_FILES_PER_PARTITION_TARGET = 64


class DeltaTableNotFound(FileNotFoundError):
    """No Delta log at the given path."""


def _truthy(value: str | None) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _open(path: str, version: int | None = None) -> Any:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        raise DeltaTableNotFound(f"no Delta table at {path}")
    return DeltaTable(path, version=version)


def table_arrow_schema(path: str, version: int | None = None) -> pa.Schema:
    return normalize_arrow(pa.schema(_open(path, version).schema().to_arrow()))


class DeltaDataSource(DataSource):
    """``spark.read.format("delta").load(path)`` / ``df.write.format("delta").save(path)``."""

    @classmethod
    def name(cls) -> str:
        return "delta"

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        if "path" not in options:
            raise ValueError("the delta source needs a path: .load(path) / .save(path)")
        self.path = options["path"]

    def _read_version(self) -> int:
        given = self.options.get("versionAsOf")
        if given is not None:
            return int(given)
        # Pin the snapshot when the DataFrame is defined, like native Delta does, so a
        # later commit to the same table does not change what this DataFrame reads.
        if "_pinned_version" not in self.__dict__:
            self._pinned_version = _open(self.path).version()
        return self._pinned_version

    def schema(self) -> StructType:
        return arrow_to_spark(table_arrow_schema(self.path, self._read_version()))

    def reader(self, schema: StructType) -> DataSourceReader:
        return DeltaReader(self.path, self._read_version(), schema)

    def writer(self, schema: StructType, overwrite: bool) -> DeltaWriter:
        return DeltaWriter(
            self.path,
            schema,
            overwrite,
            merge_schema=_truthy(self.options.get("mergeSchema")),
            overwrite_schema=_truthy(self.options.get("overwriteSchema")),
        )


class DeltaReader(DataSourceReader):
    def __init__(self, path: str, version: int, schema: StructType) -> None:
        self.path = path
        self.version = version
        self.arrow_schema = delta_arrow_schema(schema)

    def partitions(self) -> Sequence[InputPartition]:
        files = list(_open(self.path, self.version).file_uris())
        if not files:
            return [InputPartition([])]
        per = max(1, -(-len(files) // _FILES_PER_PARTITION_TARGET))
        return [InputPartition(files[i : i + per]) for i in range(0, len(files), per)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        for uri in partition.value:
            local = uri[len("file://") :] if uri.startswith("file://") else uri
            for batch in pq.ParquetFile(local).iter_batches(batch_size=8192):
                yield _conform(batch, self.arrow_schema)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a file's batch to the snapshot schema (delta-rs may write string_view; columns
    added by schema evolution are missing from older files)."""
    arrays = []
    for f in schema:
        idx = batch.schema.get_field_index(f.name)
        if idx < 0:
            arrays.append(pa.nulls(batch.num_rows, type=f.type))
        else:
            col = batch.column(idx)
            arrays.append(col if col.type == f.type else col.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


@dataclass
class DeltaCommitMessage(WriterCommitMessage):
    files: list[dict[str, Any]] = field(default_factory=list)


class DeltaWriter(DataSourceArrowWriter):
    def __init__(
        self,
        path: str,
        schema: StructType,
        overwrite: bool,
        merge_schema: bool = False,
        overwrite_schema: bool = False,
    ) -> None:
        self.path = path
        self.overwrite = overwrite
        self.merge_schema = merge_schema
        self.overwrite_schema = overwrite_schema
        self.arrow_schema = delta_arrow_schema(schema)
        self.commit_schema = self.arrow_schema
        # Every file of this write carries the id, so abort can also remove files of tasks
        # whose commit messages never reached the driver.
        self.write_id = uuid.uuid4().hex[:12]
        # Fail on the driver before any task runs: delta-rs itself would accept files of
        # any schema and silently lose columns.
        from deltalake import DeltaTable

        if DeltaTable.is_deltatable(path):
            existing = table_arrow_schema(path)
            if overwrite and overwrite_schema:
                pass
            else:
                self.commit_schema = check_compatible(existing, self.arrow_schema, merge_schema, path)

    def write(self, iterator: Iterator[pa.RecordBatch]) -> DeltaCommitMessage:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx else 0
        name = f"part-{part:05d}-{self.write_id}-{uuid.uuid4().hex[:12]}.zstd.parquet"
        full = os.path.join(self.path, name)
        writer: pq.ParquetWriter | None = None
        try:
            for batch in iterator:
                if batch.num_rows == 0:
                    continue
                if writer is None:
                    os.makedirs(self.path, exist_ok=True)
                    writer = pq.ParquetWriter(full, self.arrow_schema, compression="zstd")
                writer.write_batch(_conform(batch, self.arrow_schema))
        except BaseException:
            if writer is not None:
                writer.close()
                os.remove(full)
            raise
        if writer is None:
            return DeltaCommitMessage([])
        writer.close()
        if os.path.exists(self._abort_marker()):
            # The job was aborted while this task ran: abort may have listed the directory
            # before this file existed, so the task removes its own file.
            os.remove(full)
            return DeltaCommitMessage([])
        return DeltaCommitMessage([_file_action(full, name)])

    def _abort_marker(self) -> str:
        return os.path.join(self.path, "_lakechain_aborted", self.write_id)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        from deltalake import DeltaTable, Schema
        from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

        adds = [
            AddAction(f["path"], f["size"], {}, f["mtime"], True, f["stats"])
            for m in messages
            if isinstance(m, DeltaCommitMessage)
            for f in m.files
        ]
        props = CommitProperties(custom_metadata={"engine": "lakechain-delta-source"})
        mode = "overwrite" if self.overwrite else "append"
        if DeltaTable.is_deltatable(self.path):
            dt = DeltaTable(self.path)
            if not self.overwrite:
                _add_new_columns(dt, self.commit_schema)
            dt.create_write_transaction(
                adds, mode=mode, schema=self.commit_schema, commit_properties=props
            )
        else:
            os.makedirs(self.path, exist_ok=True)
            create_table_with_add_actions(
                self.path,
                Schema.from_arrow(self.commit_schema),
                adds,
                mode=mode,
                commit_properties=props,
            )

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        names = {f["path"] for m in messages if isinstance(m, DeltaCommitMessage) for f in m.files}
        if os.path.isdir(self.path):
            # Marker first, listing second: a task finishing later sees the marker (see write).
            os.makedirs(os.path.dirname(self._abort_marker()), exist_ok=True)
            with open(self._abort_marker(), "w"):
                pass
            names |= {n for n in os.listdir(self.path) if f"-{self.write_id}-" in n}
        for n in names:
            try:
                os.remove(os.path.join(self.path, n))
            except FileNotFoundError:
                pass


def _add_new_columns(dt: Any, schema: pa.Schema) -> None:
    """Schema evolution on append: delta-rs only changes the schema on overwrite, so new
    (nullable) columns are added in a metadata-only commit just before the data commit."""
    from deltalake import Field

    have = set(pa.schema(dt.schema().to_arrow()).names)
    new = [Field.from_arrow(f) for f in schema if f.name not in have]
    if new:
        dt.alter.add_columns(new)


def _file_action(full: str, name: str) -> dict[str, Any]:
    st = os.stat(full)
    meta = pq.ParquetFile(full).metadata
    return {
        "path": name,
        "size": st.st_size,
        "mtime": int(st.st_mtime * 1000),
        "stats": json.dumps(_stats(meta)),
    }


def _stats(meta: pq.FileMetaData) -> dict[str, Any]:
    """Delta file statistics from the Parquet footer (top-level primitive columns only)."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    schema = meta.schema.to_arrow_schema()
    for ci in range(meta.num_columns):
        path = meta.schema.column(ci).path
        if "." in path:
            # Leaf counts of a nested column are not its null count; a made-up 0 would let a
            # Delta reader skip this file for ``col IS NULL``. No stat is always correct.
            continue
        typ = schema.field(path).type
        lo = hi = None
        count = 0
        ok = True
        for rg in range(meta.num_row_groups):
            st = meta.row_group(rg).column(ci).statistics
            if st is None or not st.has_null_count:
                ok = False
                break
            count += st.null_count
            if st.has_min_max:
                lo = st.min if lo is None else min(lo, st.min)
                hi = st.max if hi is None else max(hi, st.max)
        if not ok:
            continue
        nulls[path] = count
        value = _stat_value(typ, lo), _stat_value(typ, hi)
        if value[0] is not None and value[1] is not None:
            mins[path], maxs[path] = value
    return {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _stat_value(typ: pa.DataType, v: Any) -> Any:
    if v is None:
        return None
    if pa.types.is_string(typ):
        return v if len(v) <= _MAX_STAT_STRING else None
    if pa.types.is_timestamp(typ):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if pa.types.is_date(typ):
        return v.isoformat()
    if pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return v if not (isinstance(v, float) and v != v) else None
    return None
