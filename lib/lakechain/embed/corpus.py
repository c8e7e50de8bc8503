"""Spark reader of the corpus: a directory of files or a table → parsed rows (documents and errors).

Files are listed on the driver (``stat`` only) and read and parsed on executors; a table is
parsed where it lies. Duplicate ``doc_id``s are resolved here, and only here: the first in
(source, line) order is kept, later ones become error rows naming where it was first seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
from pyspark.sql import Window
from pyspark.sql import functions as F

from lakechain.config import ConfigError, Settings
from lakechain.embed.ingest import Document, Parsed, list_corpus_files, read_path, record_to_parsed
from lakechain.storage.schemas import PARSED_COLUMNS, ddl, names
from lakechain.storage.session import default_parallelism

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakechain.storage.tables import Tables

PARSED_DDL = ddl(PARSED_COLUMNS)
PARSED_NAMES = names(PARSED_COLUMNS)


def rows(items: list[Parsed], order_prefix: str) -> list[dict[str, Any]]:
    """Parsed items as ``PARSED_COLUMNS`` rows, ordered by ``order_prefix`` then position."""
    out = []
    for i, it in enumerate(items):
        doc = isinstance(it, Document)
        out.append(
            {
                "kind": "doc" if doc else "error",
                "doc_id": it.doc_id,
                "source": it.source,
                "content_hash": it.content_hash if isinstance(it, Document) else None,
                "text": it.text if isinstance(it, Document) else None,
                "metadata": it.metadata if isinstance(it, Document) else None,
                "reason": None if isinstance(it, Document) else it.reason,
                "order_key": f"{order_prefix}\x00{i:010d}",
            }
        )
    return out


def read_corpus(
    spark: SparkSession, settings: Settings, tables: Tables, version: int | None = None
) -> DataFrame:
    """DataFrame of ``PARSED_COLUMNS`` rows: "doc" rows are documents, "error" rows carry a
    ``reason``. ``corpus.path`` is a directory every executor can open (a /Volumes path on
    Databricks) or the name of an existing table (read as of ``version`` when given)."""
    path = settings.corpus.path
    if os.path.isdir(path):
        parsed = _read_directory(spark, settings, os.path.abspath(path))
    elif (src := tables.read_input(path, version)) is not None:
        parsed = _read_table(src, path, int(settings.corpus.max_document_bytes))
    else:
        raise FileNotFoundError(
            f"corpus.path {path!r} is neither a directory ({os.path.abspath(path)}) nor an existing table; "
            "point corpus.path at a folder of .txt/.md/.html/.jsonl files or a table name"
        )
    return _dedupe(parsed)


def _read_directory(spark: SparkSession, settings: Settings, root: str) -> DataFrame:
    max_bytes = int(settings.corpus.max_document_bytes)
    files, list_errors = list_corpus_files(root)
    n = settings.corpus.partitions or max(1, min(len(files), default_parallelism(spark) * 4))
    listing = spark.createDataFrame([(f,) for f in files], "relpath string").repartition(n)

    def parse(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            out: list[dict[str, Any]] = []
            for rel in pdf["relpath"]:
                out.extend(rows(list(read_path(root, rel, max_bytes)), rel))
            yield pd.DataFrame(out, columns=PARSED_NAMES)

    parsed = listing.mapInPandas(parse, PARSED_DDL)
    if list_errors:
        parsed = parsed.unionByName(spark.createDataFrame(rows(list(list_errors), "\x00listing"), PARSED_DDL))
    return parsed


def _read_table(src: DataFrame, path: str, max_bytes: int) -> DataFrame:
    cols = set(src.columns)
    id_col = "doc_id" if "doc_id" in cols else "id" if "id" in cols else None
    if id_col is None or "text" not in cols:
        raise ConfigError(
            f"corpus.path {path!r}: the table needs columns doc_id (or id) and text, and has "
            f"{', '.join(sorted(cols)) or 'none'}; rename its columns or select them into a view"
        )
    select = [F.col(id_col).cast("string").alias("doc_id"), F.col("text").cast("string").alias("text")]
    if "metadata" in cols:
        select.append(F.col("metadata"))
    keyed = src.select(*select).withColumn("_key", F.monotonically_increasing_id())

    def parse(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            out = []
            for rec in pdf.to_dict("records"):
                meta = rec.get("metadata")
                if meta is not None and not isinstance(meta, dict):
                    rec["metadata"] = dict(meta)
                out.extend(rows([record_to_parsed(rec, path, max_bytes)], f"{int(rec['_key']):020d}"))
            yield pd.DataFrame(out, columns=PARSED_NAMES)

    return keyed.mapInPandas(parse, PARSED_DDL)


def read_corpus_changes(
    settings: Settings, tables: Tables, table: str, start: int, end: int, previous: DataFrame
) -> DataFrame:
    """Parsed rows of a corpus table from ``previous`` (``documents`` as the last run left it)
    and the table's change data feed for versions ``start``..``end``: the latest change of each
    id replaces (or, a delete, removes) its document; every other document is ``previous``'s.

    Why: only the changed rows are parsed (and then chunked). The table's id column is taken
    as its key: a duplicate id inserted next to an unchanged row replaces it here, where a full
    read would keep the first and error-row the other (``--full`` reads the table in full).
    """
    kept = previous.select("doc_id", "source", "content_hash", "text", "metadata")
    if start > end:  # no commit since the last run
        changed = None
    else:
        changes = tables.read_changes(table, start, end).filter("_change_type <> 'update_preimage'")
        id_col = "doc_id" if "doc_id" in changes.columns else "id"
        changes = changes.withColumn("_doc_id", F.col(id_col).cast("string"))
        latest = F.max("_commit_version").over(Window.partitionBy("_doc_id"))
        last = changes.withColumn("_last", latest).filter(F.col("_commit_version") == F.col("_last"))
        upserts = last.filter("_change_type <> 'delete'")
        max_bytes = int(settings.corpus.max_document_bytes)
        changed = _dedupe(_read_table(upserts, settings.corpus.path, max_bytes))
        touched = changes.select(F.col("_doc_id").alias("doc_id")).where("doc_id IS NOT NULL").distinct()
        kept = kept.join(touched, "doc_id", "left_anti")
    rows = kept.select(
        F.lit("doc").alias("kind"), "doc_id", "source", "content_hash", "text", "metadata",
        F.lit(None).cast("string").alias("reason"),
        F.concat(F.lit("\x00kept\x00"), "doc_id").alias("order_key"),
    )  # fmt: skip
    return rows if changed is None else changed.unionByName(rows)


def _dedupe(parsed: DataFrame) -> DataFrame:
    """One window over all rows (errors ranked apart from documents), a single shuffle."""
    is_doc = F.col("kind") == "doc"
    w = Window.partitionBy("doc_id", is_doc).orderBy("order_key")
    ranked = parsed.withColumn("_rn", F.row_number().over(w)).withColumn("_first", F.first("source").over(w))
    dupe = is_doc & (F.col("_rn") > 1)
    return ranked.select(
        F.when(dupe, F.lit("error")).otherwise(F.col("kind")).alias("kind"),
        "doc_id",
        "source",
        F.when(dupe, F.lit(None).cast("string")).otherwise(F.col("content_hash")).alias("content_hash"),
        F.when(dupe, F.lit(None).cast("string")).otherwise(F.col("text")).alias("text"),
        F.when(dupe, F.lit(None).cast("map<string,string>")).otherwise(F.col("metadata")).alias("metadata"),
        F.when(dupe, F.concat(F.lit("duplicate doc_id (first seen in "), F.col("_first"), F.lit(")")))
        .otherwise(F.col("reason"))
        .alias("reason"),
        "order_key",
    )
