"""The only module that knows whether Delta is native or served by delta-rs.

Stages call ``Tables(spark, settings)`` and never touch paths, catalogs or Delta APIs:
``write``, ``read``, ``merge``, ``delete``, ``history``, ``version``, ``exists``.
Names resolve to ``<storage.root>/<name>`` locally and ``catalog.schema.name`` in Unity
Catalog. Locally (no Delta jars) writes go through the ``delta`` Python data source and
MERGE/DELETE through ``deltalake``; natively through ``delta.tables.DeltaTable``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession

from lakechain.config import Settings
from lakechain.storage.session import uses_local_delta

WriteMode = Literal["append", "overwrite"]
SchemaMode = Literal["merge", "overwrite"] | None

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$")


class TableNotFoundError(LookupError):
    pass


class Tables:
    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.local = uses_local_delta(spark)
        self.storage = settings.storage

    # --- naming -----------------------------------------------------------------------

    def _check(self, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"table name {name!r}: use letters, digits and underscores")
        return name

    def path(self, name: str) -> str:
        """Local directory of a path-based table."""
        return os.path.abspath(os.path.join(self.storage.root, self._check(name)))

    def full_name(self, name: str) -> str:
        """What SQL users write: ``catalog.schema.name`` in Unity Catalog, else ``name``."""
        self._check(name)
        if self.storage.uses_catalog:
            return f"{self.storage.catalog}.{self.storage.schema_}.{name}"
        return name

    @property
    def files_root(self) -> str:
        """Directory for non-table files (the index, images)."""
        return os.path.abspath(self.storage.files_root)

    # --- reads ------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        if self.storage.uses_catalog:
            return bool(self.spark.catalog.tableExists(self.full_name(name)))
        if self.local:
            from deltalake import DeltaTable

            return bool(DeltaTable.is_deltatable(self.path(name)))
        return os.path.isdir(os.path.join(self.path(name), "_delta_log"))

    def _require(self, name: str) -> None:
        if not self.exists(name):
            where = self.full_name(name) if self.storage.uses_catalog else self.path(name)
            raise TableNotFoundError(
                f"table {name!r} does not exist at {where}; run the stage that writes it"
            )

    def read(self, name: str, version: int | None = None) -> DataFrame:
        self._require(name)
        if self.storage.uses_catalog:
            if version is None:
                return self.spark.table(self.full_name(name))
            return self.spark.sql(f"SELECT * FROM {self.full_name(name)} VERSION AS OF {int(version)}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        return reader.load(self.path(name))

    def read_input(self, path: str) -> DataFrame | None:
        """An input (corpus or tasks) given as a table: a pipeline table's short name, or any
        catalog table (``schema.table`` / ``catalog.schema.table``). None when it is neither."""
        if _NAME.match(path) and self.exists(path):
            return self.read(path)
        if _QUALIFIED.match(path) and self.spark.catalog.tableExists(path):
            return self.spark.table(path)
        return None

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return int(self.history(name)[0]["version"])

    def history(self, name: str) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp, operation, parameters, metrics."""
        self._require(name)
        if self.local:
            from deltalake import DeltaTable

            rows = DeltaTable(self.path(name)).history()
            return [
                {
                    "version": r.get("version"),
                    "timestamp": r.get("timestamp"),
                    "operation": r.get("operation"),
                    "parameters": r.get("operationParameters", {}),
                    "metrics": r.get("operationMetrics", {}),
                }
                for r in sorted(rows, key=lambda r: r.get("version", 0), reverse=True)
            ]
        rows = self._native(name).history().orderBy("version", ascending=False).collect()
        return [
            {
                "version": r["version"],
                "timestamp": r["timestamp"],
                "operation": r["operation"],
                "parameters": dict(r["operationParameters"] or {}),
                "metrics": dict(r["operationMetrics"] or {}),
            }
            for r in rows
        ]

    # --- writes -----------------------------------------------------------------------

    def write(
        self, df: DataFrame, name: str, mode: WriteMode = "append", schema_mode: SchemaMode = None
    ) -> int:
        """Append or overwrite in one commit; returns the new version.

        A schema that differs from the table's raises naming the columns; ``schema_mode``
        "merge" adds new columns, "overwrite" (with mode="overwrite") replaces the schema.
        """
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
        if schema_mode == "overwrite" and mode != "overwrite":
            raise ValueError("schema_mode='overwrite' needs mode='overwrite'")
        if schema_mode is None and self.exists(name):
            # Fail before any task runs, with the same message on native and local Delta.
            self._check_schema(df, name)
        writer = df.write.format("delta").mode(mode)
        if schema_mode == "merge":
            writer = writer.option("mergeSchema", "true")
        elif schema_mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        if self.storage.uses_catalog:
            writer.saveAsTable(self.full_name(name))
        else:
            writer.save(self.path(name))
        return self._latest(name)

    def _check_schema(self, df: DataFrame, name: str) -> None:
        from lakechain.storage.delta_schema import check_compatible, delta_arrow_schema

        table_schema = delta_arrow_schema(self.read(name).schema)
        check_compatible(table_schema, delta_arrow_schema(df.schema), False, self.full_name(name))

    def merge(self, df: DataFrame, name: str, keys: list[str], schema_mode: SchemaMode = None) -> int:
        """Upsert ``df`` on ``keys``: matched rows are updated, new rows inserted.

        Creates the table when it does not exist. Duplicate keys in ``df`` are an error
        (Delta refuses them too), not a silent choice of one row.
        """
        if not keys:
            raise ValueError("merge needs at least one key column")
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"merge keys not in the data: {missing}")
        if not self.exists(name):
            return self.write(df, name, "append")
        if schema_mode is None:
            self._check_schema(df, name)
        predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        if self.local:
            import pyarrow.compute as pc
            from deltalake import DeltaTable

            from lakechain.storage.delta_schema import delta_arrow_schema

            source = df.toArrow()
            dupes = source.group_by(keys).aggregate([([], "count_all")]).filter(pc.field("count_all") > 1)
            if dupes.num_rows:
                raise ValueError(
                    f"merge into {name}: {dupes.num_rows} key(s) appear more than once in the source, "
                    f"e.g. {dupes.slice(0, 3).select(keys).to_pylist()}"
                )
            source = source.cast(delta_arrow_schema(df.schema))
            (
                DeltaTable(self.path(name))
                .merge(
                    source,
                    predicate,
                    source_alias="s",
                    target_alias="t",
                    merge_schema=schema_mode == "merge",
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        else:
            if schema_mode == "merge":
                self.spark.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
            (
                self._native(name)
                .alias("t")
                .merge(df.alias("s"), predicate)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        return self._latest(name)

    def delete(self, name: str, where: str) -> int:
        """Delete rows matching a SQL predicate; returns the new version."""
        self._require(name)
        if self.local:
            from deltalake import DeltaTable

            DeltaTable(self.path(name)).delete(where)
        else:
            self._native(name).delete(where)
        return self._latest(name)

    # --- SQL --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Tables that exist under this storage root (or catalog schema)."""
        if self.storage.uses_catalog:
            rows = self.spark.sql(f"SHOW TABLES IN {self.storage.catalog}.{self.storage.schema_}").collect()
            return sorted(r["tableName"] for r in rows)
        root = os.path.abspath(self.storage.root)
        if not os.path.isdir(root):
            return []
        return sorted(
            n
            for n in os.listdir(root)
            if _NAME.match(n) and os.path.isdir(os.path.join(root, n, "_delta_log"))
        )

    def register_views(self) -> list[str]:
        """Expose every table by its short name to ``spark.sql`` (temp views)."""
        names = self.names()
        if self.storage.uses_catalog:
            self.spark.sql(f"USE {self.storage.catalog}.{self.storage.schema_}")
            return names
        for n in names:
            self.read(n).createOrReplaceTempView(n)
        return names

    # --- internals --------------------------------------------------------------------

    def _native(self, name: str) -> Any:
        from delta.tables import DeltaTable

        if self.storage.uses_catalog:
            return DeltaTable.forName(self.spark, self.full_name(name))
        return DeltaTable.forPath(self.spark, self.path(name))

    def _latest(self, name: str) -> int:
        if self.local:
            from deltalake import DeltaTable

            return int(DeltaTable(self.path(name)).version())
        return int(self._native(name).history(1).collect()[0]["version"])
