"""Delta tables by name: the only module that knows where tables live and how Delta is spoken.

Stages call storage verbs (``write``, ``merge``, ``insert_new``, ``delete_where``,
``truncate``, ``stage``) and never build SQL strings, touch paths or ask whether a catalog
is in use. Every verb is Delta SQL or the DataFrame writer, so the same code runs on a
classic session, on Spark Connect and on Databricks:

* locally, tables are ``<schema>.<name>`` (default ``lakechain.results``) in the session's
  metastore, stored as external Delta tables at ``<storage.root>/<name>``: any Spark session
  with the same metastore settings reads them by name, and any Delta reader by path;
* in Unity Catalog (``storage.catalog`` set), tables are ``catalog.schema.name``, managed;
* a reader (``by_path=True``: ``lakechain sql``, ``report``, ``cache stats`` on a session
  without the root's metastore) reads each local table by path, at its latest commit, and
  names in SQL only the tables a query mentions (an in-memory catalog, rebuilt per process).

Writers retry Delta's optimistic-concurrency conflicts (two runs committing to one table at
once), so a concurrent writer never duplicates rows: MERGE re-reads the table on retry.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

from lakechain.config import Settings
from lakechain.errors import SchemaMismatchError, StorageRootError, TableNotFoundError
from lakechain.storage.schemas import RESULTS, VIEWS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

WriteMode = Literal["append", "overwrite"]


class InputTable(TypedDict):
    """A Delta input table as :meth:`Tables.describe_input` sees it."""

    name: str
    table_id: str
    version: int
    change_feed: bool


SchemaMode = Literal["merge", "overwrite"] | None
T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$")
_CONFLICT = re.compile(
    r"Concurrent(Append|Delete\w*|Transaction|Modification)|DELTA_CONCURRENT_|"
    r"ProtocolChanged|MetadataChanged"
)
CONFLICT_RETRIES = 8


def quote(name: str) -> str:
    """``a.b.c`` → ```a`.`b`.`c```: identifiers are validated, then quoted anyway."""
    return ".".join(f"`{part}`" for part in name.split("."))


def sql_string(value: str) -> str:
    """A SQL string literal (paths may hold quotes, spaces, ``%`` or unicode)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def _log_version(log_dir: str) -> int | None:
    """The newest commit in a local Delta log (the highest ``NNN.json``; the protocol keeps
    the latest one even after log cleanup); None when there is no such log here."""
    try:
        versions = [int(m.group(1)) for f in os.listdir(log_dir) if (m := _COMMIT_FILE.match(f))]
    except OSError:
        return None
    return max(versions) if versions else None


def _has_commit(log_dir: str) -> bool:
    """A Delta log holding at least one commit (``NNN.json``) or checkpoint."""
    try:
        return any(f.endswith((".json", ".checkpoint.parquet")) for f in os.listdir(log_dir))
    except OSError:
        return False


def _delta_dirs(root: str) -> list[str]:
    """Names of the Delta tables stored under ``root``: folders with a table name whose log
    holds a commit (a log without one, from a first write that failed, is no table)."""
    entries = sorted(os.listdir(root)) if os.path.isdir(root) else []
    return [e for e in entries if _NAME.match(e) and _has_commit(os.path.join(root, e, "_delta_log"))]


def _ddl_type(t: Any) -> str:
    """A Spark type as DDL, struct field names quoted (``simpleString`` leaves them bare)."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(t, StructType):
        fields = (f"`{f.name.replace('`', '``')}`:{_ddl_type(f.dataType)}" for f in t.fields)
        return f"struct<{','.join(fields)}>"
    if isinstance(t, ArrayType):
        return f"array<{_ddl_type(t.elementType)}>"
    if isinstance(t, MapType):
        return f"map<{_ddl_type(t.keyType)},{_ddl_type(t.valueType)}>"
    return str(t.simpleString())


def plain_strings(df: DataFrame) -> DataFrame:
    """``df`` with its string columns (nested too) cast to plain ``string``, on Spark Connect.

    Why: through Spark Connect 4.2, a ``mapInPandas`` (or any client-given) schema reaches the
    server as strings with an explicit ``UTF8_BINARY`` collation, and Delta records them in the
    log as ``string collate UTF8_BINARY``: a type no Delta reader outside Spark understands
    (delta-rs, hence Polars and DuckDB, refuse the whole table). A cast to ``string`` parsed on
    the server is the implicit type that Delta writes as ``string``. Classic sessions are
    unaffected and get ``df`` back unchanged, without an analysis round trip."""
    if not type(df).__module__.startswith("pyspark.sql.connect"):
        return df
    from pyspark.sql import functions as F

    fields = df.schema.fields
    if not any("string" in f.dataType.simpleString() for f in fields):
        return df
    return df.select(
        *[
            F.col(f"`{f.name}`").cast(_ddl_type(f.dataType)).alias(f.name)
            if "string" in f.dataType.simpleString()
            else F.col(f"`{f.name}`")
            for f in fields
        ]
    )


_DELETE_MARK = "_lakechain_delete"


def _with_deletes(df: DataFrame, delete: DataFrame, keys: list[str]) -> DataFrame:
    """``df`` marked to upsert plus ``delete``'s distinct keys marked to delete (the other
    columns null): one MERGE source, so both land in one commit."""
    from pyspark.sql import functions as F

    gone = delete.select(*keys).distinct().withColumn(_DELETE_MARK, F.lit(True))
    return df.withColumn(_DELETE_MARK, F.lit(False)).unionByName(gone, allowMissingColumns=True)


class Tables:
    """The pipeline's tables under one storage root (or one Unity Catalog schema)."""

    def __init__(self, spark: SparkSession, settings: Settings, by_path: bool = False) -> None:
        self.spark = spark
        self.settings = settings
        self.storage = settings.storage
        self.by_path = by_path and not settings.storage.uses_catalog
        """A reader without the root's metastore: tables by location, nothing written."""
        self._schema_ready = False
        self._known: set[str] = set()  # names seen to exist (see exists)
        self._named: set[str] = set()  # by_path: names registered in the session's own catalog

    # --- naming -----------------------------------------------------------------------

    @staticmethod
    def _check(name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"table name {name!r}: use letters, digits and underscores")
        return name

    @property
    def schema(self) -> str:
        """``catalog.schema`` in Unity Catalog, else the local schema (database) name."""
        s = self.storage
        return f"{s.catalog}.{s.schema_}" if s.uses_catalog else s.schema_

    def full_name(self, name: str) -> str:
        """What SQL users write: ``lakechain.results`` locally, ``main.lakechain.results`` in UC."""
        return f"{self.schema}.{self._check(name)}"

    def location(self, name: str) -> str | None:
        """Where a local table's files are (``<storage.root>/<name>``); None in Unity Catalog."""
        if self.storage.uses_catalog:
            return None
        return os.path.join(os.path.abspath(self.storage.root), self._check(name))

    @property
    def files_root(self) -> str:
        """Directory for non-table files (the index, images)."""
        return os.path.abspath(self.storage.files_root)

    def ref(self, name: str) -> str:
        """The table in a SQL statement: its quoted name, or for a reader ``delta.`<path>```."""
        if self.by_path and name.lower() not in VIEWS:
            return "delta.`" + str(self.location(name)).replace("`", "``") + "`"
        return quote(self.full_name(name))

    def ensure_schema(self) -> None:
        """Create the schema (database) once; locally its default location is the root. A
        reader only lists the root (no catalog to create or to ask)."""
        if self._schema_ready:
            return
        if self.by_path:
            self._known = set(self._registered())
            self._schema_ready = True
            return
        if self.storage.uses_catalog:
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
        else:
            root = os.path.abspath(self.storage.root)
            try:
                self.spark.sql(
                    f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)} LOCATION {sql_string(root)}"
                )
            except Exception as exc:
                if "DeltaCatalog" not in str(exc):
                    raise
                from lakechain.storage.session import submit_args

                raise StorageRootError(
                    "Delta Lake's jars are not on this Spark session's classpath; with spark-submit pass "
                    + " ".join(submit_args()[:1] + [submit_args()[1][:200]])
                ) from None
            self._check_location(root)
        self._known = set(self._registered())  # one listing answers the start's exists() calls
        if not self.storage.uses_catalog:
            self._adopt_unregistered(os.path.abspath(self.storage.root))
        self._schema_ready = True
        if RESULTS in self._known:
            self.ensure_views()

    def ensure_views(self, replace: bool = False) -> list[str]:
        """The SQL views over ``results`` (``storage.schemas.VIEWS``), created where missing
        (or replaced): views are metastore entries only, so a new metastore needs them anew."""
        for name, body in VIEWS.items():
            if replace or not self.exists(name):
                self.create_view(name, body.format(results=quote(self.full_name(RESULTS))))
        return list(VIEWS)

    def _check_location(self, root: str) -> None:
        """One schema, one root: a session whose metastore already maps this schema to another
        root (a notebook that used two roots) would otherwise write to the other root's tables."""
        rows = self.spark.sql(f"DESCRIBE SCHEMA {quote(self.schema)}").collect()
        where = next((str(r[1]) for r in rows if str(r[0]).strip().lower() == "location"), "")
        path = where.removeprefix("file://").removeprefix("file:")
        from urllib.parse import unquote

        if path and os.path.normpath(unquote(path)) != os.path.normpath(root):
            raise StorageRootError(
                f"schema {self.schema} of this Spark session's metastore belongs to {unquote(path)}, not "
                f"storage.root {root}; set storage.schema to another name for this root"
            )

    def _adopt_unregistered(self, root: str) -> None:
        """Register Delta tables found under the root but missing from the metastore (a new
        metastore, or a root copied from elsewhere) so they are readable by name again. A log
        without a commit (a first write that failed) is no table: the next write creates it."""
        for entry in _delta_dirs(root):
            if entry.lower() not in self._known:
                self._register(entry)
                self._known.add(entry.lower())

    def _register(self, name: str) -> None:
        """Name the Delta table stored at ``name``'s location in the session's catalog."""
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {quote(self.full_name(name))} USING delta "
            f"LOCATION {sql_string(str(self.location(name)))}"
        )

    # --- reads ------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether the table (or view) is in the metastore. A yes is remembered for this
        object's life (a stage asks dozens of times; tables are not dropped mid-run)."""
        self.ensure_schema()
        key = self._check(name).lower()
        if key not in self._known:
            if key not in self._registered(name):
                return False
            self._known.add(key)
        return True

    def _registered(self, like: str | None = None) -> list[str]:
        """Table and view names in the schema (lower case), from the metastore alone.

        Why not ``catalog.tableExists``: on a Delta table it loads the table's snapshot, which
        costs 0.3–3 s per table on a cold session; a stage asks about a dozen tables. A
        reader lists the root: Delta logs holding a commit, and the views over ``results``."""
        if self.by_path:
            found = {e.lower() for e in _delta_dirs(os.path.abspath(self.storage.root))}
            found |= set(VIEWS) if RESULTS in found else set()
            return sorted(n for n in found if like is None or n == like.lower())
        pattern = f" LIKE {sql_string(like)}" if like else ""
        rows = self.spark.sql(f"SHOW TABLES IN {quote(self.schema)}{pattern}").collect()
        return [str(r["tableName"]).lower() for r in rows if not r["isTemporary"]]

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise TableNotFoundError(
                f"table {self.full_name(name)} does not exist yet; run the stage that writes it "
                "(`lakechain pipeline` runs them all)"
            )

    def read(self, name: str, version: int | None = None) -> DataFrame:
        self._require(name)
        if self.by_path and name.lower() in VIEWS:
            return self.spark.sql(VIEWS[name.lower()].format(results=self.ref(RESULTS)))
        if version is None:
            return self.spark.table(self.ref(name))
        return self.spark.sql(f"SELECT * FROM {self.ref(name)} VERSION AS OF {int(version)}")

    def is_empty(self, name: str) -> bool:
        """Whether table ``name`` holds no rows. A table with no data files (a fresh or
        truncated one, the usual case) is answered from its log, without a Spark job."""
        self._require(name)
        return int(self.detail(name)["numFiles"] or 0) == 0 or self.read(name).isEmpty()

    def detail(self, name: str) -> dict[str, Any]:
        """Delta's ``DESCRIBE DETAIL`` of the table: numFiles, sizeInBytes, properties..."""
        self._require(name)
        row = self.spark.sql(f"DESCRIBE DETAIL {self.ref(name)}").first()
        return row.asDict() if row is not None else {}

    def read_input(self, path: str, version: int | None = None) -> DataFrame | None:
        """An input (corpus or tasks) given as a table: a pipeline table's short name, or any
        catalog table (``schema.table`` / ``catalog.schema.table``). None when it is neither.
        ``version``: a Delta table as of that version (see :meth:`describe_input`)."""
        if _NAME.match(path) and self.exists(path):
            return self.read(path, version)
        name = self._input_name(path)
        if name is None:
            return None
        if version is None:
            return self.spark.table(name)
        return self.spark.sql(f"SELECT * FROM {quote(name)} VERSION AS OF {int(version)}")

    def _input_name(self, path: str) -> str | None:
        if _NAME.match(path) and self.exists(path):
            return self.full_name(path)
        if _QUALIFIED.match(path) and self.spark.catalog.tableExists(path):
            return path
        return None

    def describe_input(self, path: str) -> InputTable | None:
        """An input table's Delta identity: its id, current version and whether it records a
        change data feed. None when ``path`` is no Delta table (a directory, a view)."""
        from pyspark.errors import AnalysisException

        name = self._input_name(path)
        if name is None:
            return None
        try:
            detail = (
                self.spark.sql(f"DESCRIBE DETAIL {quote(name)}").select("format", "id", "properties").first()
            )
        except AnalysisException:  # a view, or a table of another format
            return None
        if detail is None or str(detail["format"]).lower() != "delta":
            return None
        props = dict(detail["properties"] or {})
        last = self.spark.sql(f"DESCRIBE HISTORY {quote(name)} LIMIT 1").select("version").first()
        return InputTable(
            name=name,
            table_id=str(detail["id"]),
            version=int(last["version"]),  # type: ignore[index]
            change_feed=str(props.get("delta.enableChangeDataFeed", "")).lower() == "true",
        )

    def read_changes(self, name: str, start: int, end: int) -> DataFrame:
        """Delta's change data feed of table ``name`` (as :meth:`describe_input` names it) for
        versions ``start``..``end``: its rows plus ``_change_type`` and ``_commit_version``."""
        reader = self.spark.read.format("delta").option("readChangeFeed", "true")
        return reader.option("startingVersion", int(start)).option("endingVersion", int(end)).table(name)

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp, operation, parameters, metrics."""
        self._require(name)
        query = f"DESCRIBE HISTORY {self.ref(name)}" + (f" LIMIT {int(limit)}" if limit else "")
        rows = (
            self.spark.sql(query)
            .select("version", "timestamp", "operation", "operationParameters", "operationMetrics")
            .collect()
        )
        return [
            {
                "version": int(r["version"]),
                "timestamp": r["timestamp"],
                "operation": r["operation"],
                "parameters": dict(r["operationParameters"] or {}),
                "metrics": dict(r["operationMetrics"] or {}),
            }
            for r in sorted(rows, key=lambda r: r["version"], reverse=True)
        ]

    def version(self, name: str) -> int | None:
        """The table's current version; None when it does not exist."""
        if not self.exists(name):
            return None
        return self._latest(name)

    # --- writes -----------------------------------------------------------------------

    def write(
        self, df: DataFrame, name: str, mode: WriteMode = "append", schema_mode: SchemaMode = None
    ) -> int:
        """Append or overwrite in one commit (creating the table); returns the new version.

        A schema that differs from the table's raises naming the columns, before any Spark
        job runs; ``schema_mode`` "merge" adds new columns, "overwrite" (with
        mode="overwrite") replaces the schema.
        """
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
        self._writable()
        if schema_mode == "overwrite" and mode != "overwrite":
            raise ValueError("schema_mode='overwrite' needs mode='overwrite'")
        exists = self.exists(name)
        if schema_mode is None and exists:
            self.check_schema(df, name)
        if exists and schema_mode is None:
            # Same schema: INSERT (OVERWRITE) by position in the table's column order, which
            # keeps the table's metadata (saveAsTable would re-create it in the metastore).
            aligned = self._aligned(df, name)
            self._retrying(
                f"write {name}",
                lambda: aligned.write.insertInto(self.full_name(name), overwrite=mode == "overwrite"),
            )
            return self._latest(name)
        writer = plain_strings(df).write.format("delta").mode(mode)
        if schema_mode == "merge":
            writer = writer.option("mergeSchema", "true")
        elif schema_mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        location = self.location(name)
        if location is not None and not exists:
            writer = writer.option("path", location)
        self._retrying(f"write {name}", lambda: writer.saveAsTable(self.full_name(name)))
        return self._latest(name)

    def _aligned(self, df: DataFrame, name: str) -> DataFrame:
        """``df``'s columns in the table's order; columns it lacks are written as null."""
        from pyspark.sql import functions as F

        have = set(df.columns)
        return df.select(
            *[
                F.col(f"`{f.name}`") if f.name in have else F.lit(None).cast(f.dataType).alias(f.name)
                for f in self.read(name).schema.fields
            ]
        )

    def create_empty(self, name: str, ddl: str) -> int:
        """Create ``name`` with no rows when it does not exist (so SQL users can always query it)."""
        if self.exists(name):
            return self._latest(name)
        return self.write(self.spark.createDataFrame([], ddl), name)

    def check_schema(self, df: DataFrame, name: str) -> None:
        """Raise :class:`SchemaMismatchError` naming every column whose type differs from the
        table's, or that the table lacks. Missing columns are allowed (written as null)."""
        table = {f.name.lower(): f for f in self.read(name).schema.fields}
        problems = []
        for f in df.schema.fields:
            t = table.get(f.name.lower())
            if f.dataType.simpleString() == "void":  # an all-null literal fits any column
                continue
            if t is None:
                problems.append(f"column {f.name!r} is not in the table")
            elif t.name != f.name:
                problems.append(f"column {f.name!r} differs only in case from table column {t.name!r}")
            elif t.dataType.simpleString() != f.dataType.simpleString():
                problems.append(
                    f"column {f.name!r} is {f.dataType.simpleString()}, table has {t.dataType.simpleString()}"
                )
        if problems:
            raise SchemaMismatchError(f"write to {self.full_name(name)} refused: " + "; ".join(problems))

    def add_missing_columns(self, name: str, columns: list[tuple[str, str]]) -> list[str]:
        """Add the ``columns`` an existing table lacks (null in its old rows), in one commit:
        a table written by an older release keeps its rows and takes the new writes."""
        self._writable()
        if not self.exists(name):
            return []
        have = {f.name.lower() for f in self.read(name).schema.fields}
        missing = [(c, kind) for c, kind in columns if c.lower() not in have]
        if missing:
            added = ", ".join(f"`{c}` {kind}" for c, kind in missing)
            alter = f"ALTER TABLE {quote(self.full_name(name))} ADD COLUMNS ({added})"
            self._retrying(f"add columns to {name}", lambda: self.spark.sql(alter).collect())
            log.info("%s: added columns %s", name, ", ".join(c for c, _ in missing))
        return [c for c, _ in missing]

    def merge(
        self,
        df: DataFrame,
        name: str,
        keys: list[str],
        *,
        matched: Literal["update", "delete"] | None = "update",
        not_matched: Literal["insert"] | None = "insert",
        schema_mode: SchemaMode = None,
        delete: DataFrame | None = None,
    ) -> int:
        """MERGE ``df`` into ``name`` on ``keys`` (creating the table if absent with an insert).

        Default: upsert. ``matched=None`` inserts only new keys (idempotent appends);
        ``matched="delete", not_matched=None`` deletes the keys present in ``df``. Duplicate
        keys in ``df`` make Delta refuse the MERGE rather than pick a row silently.
        ``delete``: a frame of keys (none of them in ``df``) whose rows go in the same commit,
        so replacements and the rows they replace change together, never one without the other.
        """
        if not keys:
            raise ValueError("merge needs at least one key column")
        self._writable()
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"merge keys not in the data: {missing}")
        if delete is not None and schema_mode == "merge":
            raise ValueError("merge: delete= with schema evolution would add its marker column")
        if not self.exists(name):
            if not_matched is None:
                return -1
            return self.write(df, name, "append")
        if schema_mode is None and not_matched is not None:
            self.check_schema(df, name)
        if schema_mode == "merge":  # new columns take the source's types
            df = plain_strings(df)
        gone = ""
        if delete is not None:  # UPDATE SET * / INSERT * take the target's columns: the marker stays out
            df, gone = _with_deletes(df, delete, keys), f"s.`{_DELETE_MARK}`"
        view = f"lakechain_merge_{uuid.uuid4().hex[:12]}"
        df.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        clauses = [f"WHEN MATCHED AND {gone} THEN DELETE"] if gone else []
        if matched == "update":
            clauses.append("WHEN MATCHED THEN UPDATE SET *")
        elif matched == "delete":
            clauses.append("WHEN MATCHED THEN DELETE")
        if not_matched == "insert":
            clauses.append(f"WHEN NOT MATCHED {f'AND NOT {gone} ' if gone else ''}THEN INSERT *")
        evolve = "WITH SCHEMA EVOLUTION " if schema_mode == "merge" else ""
        query = f"MERGE {evolve}INTO {quote(self.full_name(name))} t USING {view} s ON {on} " + " ".join(
            clauses
        )
        try:
            self._retrying(f"merge into {name}", lambda: self.spark.sql(query).collect())
        finally:
            self.spark.catalog.dropTempView(view)
        return self._latest(name)

    def insert_new(self, df: DataFrame, name: str, keys: list[str]) -> int:
        """Insert rows whose keys the table lacks: rerunning (or racing) never duplicates."""
        return self.merge(df, name, keys, matched=None)

    def delete_where(self, name: str, column: str, values: DataFrame | Iterable[str]) -> int | None:
        """Delete rows whose ``column`` is in ``values`` (a one-column DataFrame or strings).

        A DataFrame of keys is joined by a MERGE, so no key list reaches the driver or a SQL
        string however many there are. Returns the new version (None: nothing to delete).
        """
        if not self.exists(name):
            return None
        if not hasattr(values, "schema"):
            items = sorted(set(values))
            if not items:
                return None
            values = self.spark.createDataFrame([(v,) for v in items], f"`{column}` string")
        keys: DataFrame = values.select(column).distinct()  # type: ignore[union-attr]
        return self.merge(keys, name, [column], matched="delete", not_matched=None)

    def delete_other(self, name: str, column: str, keep: str) -> int:
        """Delete every row whose ``column`` differs from ``keep`` (e.g. another model's chunks)."""
        self._writable()
        self._require(name)
        self._retrying(
            f"delete from {name}",
            lambda: self.spark.sql(
                f"DELETE FROM {quote(self.full_name(name))} WHERE `{column}` IS NULL "
                f"OR `{column}` <> {sql_string(keep)}"
            ).collect(),
        )
        return self._latest(name)

    def truncate(self, name: str) -> int | None:
        """Remove every row in one commit (history and time travel kept)."""
        self._writable()
        if not self.exists(name):
            return None
        self._retrying(
            f"truncate {name}", lambda: self.spark.sql(f"DELETE FROM {quote(self.full_name(name))}").collect()
        )
        return self._latest(name)

    def stage(self, df: DataFrame, name: str) -> DataFrame:
        """Materialise ``df`` once into table ``name`` (overwritten) and return a read of it.

        Why: a DataFrame with model calls in it must be evaluated exactly once, yet feed
        several writes and counts. Executors write the rows; nothing passes the driver.
        """
        self.write(df, name, "overwrite")
        return self.read(name)

    # --- SQL --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Tables (and views) that exist in this schema."""
        self.ensure_schema()
        return sorted(self._registered())

    def use(self, query: str | None = None) -> None:
        """Make short names (``results``) resolve to this schema's tables in ``spark.sql``.
        A reader first names, in its own catalog, the tables (and views) ``query`` mentions,
        or all of them when it mentions none (``SHOW TABLES``): each costs a snapshot load."""
        self.ensure_schema()
        if self.by_path:
            self._name_for(query)
        self.spark.sql(f"USE {quote(self.schema)}")

    def _name_for(self, query: str | None) -> None:
        words = set(re.findall(r"[a-z_][a-z0-9_]*", (query or "").lower()))
        wanted = [n for n in self.names() if n in words] or self.names()
        if any(n in VIEWS for n in wanted):
            wanted.append(RESULTS)
        if not self._named:
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
        for name in sorted(set(wanted) - self._named, key=lambda n: n in VIEWS):  # views last
            if name in VIEWS:
                body = VIEWS[name].format(results=quote(self.full_name(RESULTS)))
                self.spark.sql(f"CREATE OR REPLACE VIEW {quote(self.full_name(name))} AS {body}")
            else:
                self._register(name)
            self._named.add(name)

    def create_view(self, name: str, body: str) -> None:
        """A persistent view in the schema: readable by name from any session, as tables are."""
        self._writable()
        self.spark.sql(f"CREATE OR REPLACE VIEW {quote(self.full_name(name))} AS {body}")

    # --- internals --------------------------------------------------------------------

    def _writable(self) -> None:
        if self.by_path:
            raise RuntimeError("a reader's Tables (by_path) writes nothing: open a writer session")

    def _latest(self, name: str) -> int:
        """The table's newest version: read from its log's file names for a local table (no
        Spark job; ``DESCRIBE HISTORY`` costs about 0.4 s per call), else from its history."""
        location = self.location(name)
        local = _log_version(os.path.join(location, "_delta_log")) if location else None
        return local if local is not None else int(self.history(name, limit=1)[0]["version"])

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action``; on a Delta concurrency conflict, wait and run it again."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return action()
            except Exception as exc:
                if attempt == CONFLICT_RETRIES or not _CONFLICT.search(f"{type(exc).__name__} {exc}"):
                    raise
                delay = min(5.0, 0.2 * 2**attempt)
                log.warning("%s: concurrent commit, retrying in %.1f s (%s)", what, delay, type(exc).__name__)
                time.sleep(delay)
        raise AssertionError("unreachable")
