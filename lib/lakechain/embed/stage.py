"""Embed stage: corpus → ``documents`` → ``chunks`` with vectors (+ ``ingest_errors``).

Incremental and crash-safe by construction: the work is derived from ``chunks`` itself (a
snapshot pinned at the start), never from bookkeeping a crash could leave behind. Chunking
is deterministic, so each run recomputes every document's expected chunk ids and then

1. embeds only the expected chunks that ``chunks`` lacks for the current model: the UDF's
   output is staged once (model calls are never re-evaluated), then inserted with a MERGE
   on ``chunk_id`` that never duplicates, even against a concurrent run;
2. removes what the new rows replace: chunks of another model, and stale chunks of changed
   or deleted documents. Destructive commits come only after the replacement is committed,
   and a run that would delete most of the corpus refuses (``corpus.max_delete_fraction``).

A provider failure on a batch becomes ``ingest_errors`` rows (stage "embed") and those
chunks are retried by the next run. Errors are rows split off by a column, and counts come
from aggregates, so the stage runs unchanged on Spark Connect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from lakechain.config import Settings
from lakechain.embed import embedders
from lakechain.embed.corpus import read_corpus
from lakechain.embed.partitions import chunker, embedder_fn
from lakechain.errors import UserError
from lakechain.runtime.ids import new_run_id
from lakechain.runtime.progress import Progress
from lakechain.runtime.timer import Timer
from lakechain.storage.schemas import (
    CHUNK_COLUMNS,
    CHUNKS,
    DOCUMENTS,
    EMBED_STAGING,
    EMBEDDED_COLUMNS,
    ERRORS_DDL,
    EXPECTED_COLUMNS,
    INGEST_ERRORS,
    ddl,
    names,
)
from lakechain.storage.session import arrow_batch, default_parallelism

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakechain.storage.tables import Tables


@dataclass
class EmbedReport:
    run_id: str
    model: str
    documents_seen: int = 0
    documents_new: int = 0
    documents_changed: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    document_errors: int = 0
    chunks_expected: int = 0
    chunks_embedded: int = 0
    chunks_kept: int = 0
    chunks_removed: int = 0
    chunk_errors: int = 0
    chunks_version: int | None = None
    documents_version: int | None = None
    errors_version: int | None = None
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def error_fraction(self) -> float:
        """Share of this run's chunks to embed that failed (0 when there was nothing to do)."""
        tried = self.chunks_embedded + self.chunk_errors
        return self.chunk_errors / tried if tried else 0.0

    def __str__(self) -> str:
        d = self
        lines = [
            f"embed run {d.run_id} (model {d.model}) in {d.seconds:.1f}s",
            f"  documents: {d.documents_seen} seen, {d.documents_new} new, {d.documents_changed} changed, "
            f"{d.documents_unchanged} unchanged, {d.documents_deleted} deleted, {d.document_errors} errors",
            f"  chunks:    {d.chunks_embedded} embedded, {d.chunks_kept} kept, {d.chunks_removed} removed, "
            f"{d.chunk_errors} errors",
            f"  tables:    chunks v{d.chunks_version}, documents v{d.documents_version}"
            + (f", ingest_errors v{d.errors_version}" if d.errors_version is not None else ""),
        ]
        if d.document_errors or d.chunk_errors:
            lines.append(f"  errors:    SELECT * FROM {INGEST_ERRORS} WHERE run_id = '{d.run_id}'")
        lines += [f"  note: {n}" for n in d.notes]
        return "\n".join(lines)


@dataclass
class _Plan:
    """What this run must do, all of it lazy DataFrames over pinned table versions."""

    docs: DataFrame
    parse_errors: DataFrame
    chunk_errors: DataFrame
    to_embed: DataFrame
    stale: DataFrame | None
    counts: dict[str, Any]


def run_embed(
    spark: SparkSession, settings: Settings, tables: Tables, *, full: bool = False, progress: bool = True
) -> EmbedReport:
    """Ingest ``corpus.path`` and bring ``chunks`` up to date (see the module doc)."""
    timer = Timer()
    name = check_model(settings)
    report = EmbedReport(run_id=new_run_id("embed"), model=name)
    now = datetime.now(timezone.utc)
    cached: list[DataFrame] = []
    keep = _keeper(cached)
    try:
        with timer.step("plan"):
            plan = _plan(settings, tables, keep(read_corpus(spark, settings, tables)), name, full, keep)
            _count(plan, report)
            refuse_destructive(settings, plan.counts, full)
        with timer.step("embed"):
            _embed(spark, settings, tables, plan, name, now, report, full, progress)
        with timer.step("remove_replaced"):
            _remove_replaced(tables, plan, name, report)
        with timer.step("write_documents"):
            report.documents_version = _write_documents(tables, plan, now)
        with timer.step("write_errors"):
            report.errors_version = _write_errors(tables, plan, report.run_id, now)
        report.chunks_version = tables.version(CHUNKS)
    finally:
        for df in cached:
            df.unpersist()
    report.seconds, report.step_seconds = timer.elapsed, timer.steps
    return report


def check_model(settings: Settings) -> str:
    """Check the embedding model before anything is written, so a wrong ``embedding.model``
    fails at start; returns the name stored with the vectors."""
    embedders.check_model(settings.embedding)
    return embedders.model_name(settings.embedding)


def _keeper(cached: list[DataFrame]) -> Callable[[DataFrame], DataFrame]:
    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return cached[-1]

    return keep


def _plan(
    settings: Settings,
    tables: Tables,
    parsed: DataFrame,
    name: str,
    full: bool,
    keep: Callable[[DataFrame], DataFrame],
) -> _Plan:
    """Expected chunks of every document, what to embed and what is stale, and every count
    the run needs in ONE Spark action (each action is a round of jobs and Python tasks)."""
    ch = settings.chunking
    docs = parsed.filter("kind = 'doc'")
    chunked = keep(
        docs.select("doc_id", "source", "text").mapInPandas(
            chunker(settings.embedding.provider, ch.chunk_tokens, ch.overlap_tokens), ddl(EXPECTED_COLUMNS)
        )
    )
    expected = chunked.filter("error IS NULL").drop("error")
    chunk_errors = chunked.filter("error IS NOT NULL").select(
        "source", "doc_id", F.col("error").alias("reason"), F.lit("chunk").alias("stage")
    )
    summary = parsed.agg(
        F.count(F.when(F.col("kind") == "doc", 1)).alias("docs"),
        F.count(F.when(F.col("kind") == "error", 1)).alias("doc_errors"),
    ).crossJoin(
        chunked.agg(
            F.count(F.when(F.col("error").isNull(), 1)).alias("expected"),
            F.count(F.when(F.col("error").isNotNull(), 1)).alias("failed"),
        )
    )
    to_embed, stale = expected, None
    version = None if full else tables.version(CHUNKS)
    if version is not None:
        snap = tables.read(CHUNKS, version=version).select("chunk_id", "doc_id", "model")
        existing = snap.filter(F.col("model") == F.lit(name)).select("chunk_id", "doc_id")
        to_embed = expected.join(existing.select("chunk_id"), "chunk_id", "left_anti")
        stale = existing.join(expected.select("chunk_id"), "chunk_id", "left_anti")
        summary = (
            summary.crossJoin(to_embed.agg(F.count(F.lit(1)).alias("new")))
            .crossJoin(snap.agg(F.count(F.when(F.col("model") != F.lit(name), 1)).alias("other")))
            .crossJoin(stale.agg(F.count(F.lit(1)).alias("stale")))
            .crossJoin(
                snap.groupBy("chunk_id").count().agg(F.count(F.when(F.col("count") > 1, 1)).alias("dupes"))
            )
            .crossJoin(_document_counts(docs, existing, to_embed, stale))
        )
    prev_docs = tables.read(DOCUMENTS) if tables.exists(DOCUMENTS) else None
    if prev_docs is not None:
        summary = summary.crossJoin(_documents_diff(docs, prev_docs)).crossJoin(
            prev_docs.agg(F.count(F.lit(1)).alias("prev_docs"))
        )
    with arrow_batch(tables.spark, 16):  # documents can be megabytes each
        counts = summary.first().asDict()  # type: ignore[union-attr]
    counts.setdefault("new", counts["expected"])
    return _Plan(docs, parsed.filter("kind = 'error'"), chunk_errors, to_embed, stale, counts)


def _count(plan: _Plan, report: EmbedReport) -> None:
    c = plan.counts
    report.documents_seen = int(c["docs"])
    report.document_errors = int(c["doc_errors"])
    report.chunks_expected = int(c["expected"])
    report.chunks_kept = report.chunks_expected - int(c["new"])
    if plan.stale is None:
        report.documents_new = report.documents_seen
    else:
        report.documents_new = int(c["d_new"] or 0)
        report.documents_changed = int(c["d_changed"] or 0)
        report.documents_unchanged = int(c["d_unchanged"] or 0)
        report.documents_deleted = int(c["d_deleted"] or 0)


def refuse_destructive(settings: Settings, counts: dict[str, Any], full: bool) -> None:
    """Refuse, before any write, a run that would empty the corpus or delete most of it:
    usually a wrong ``corpus.path``, not an intent."""
    corpus = settings.corpus
    seen, before = int(counts["docs"]), int(counts.get("prev_docs") or 0)
    if seen == 0 and not corpus.allow_empty:
        wipe = f" and delete the {before} documents already embedded" if before else ""
        raise UserError(
            f"corpus.path {corpus.path!r} holds no documents: embedding it would do nothing{wipe}; "
            "check the path, or pass --set corpus.allow_empty=true if that is intended"
        )
    deleted = int(counts.get("d_deleted") or 0) if not full else 0
    if before and seen and deleted / before > corpus.max_delete_fraction:
        raise UserError(
            f"this run would delete {deleted} of {before} documents ({deleted / before:.0%}), more than "
            f"corpus.max_delete_fraction={corpus.max_delete_fraction}; check corpus.path, or pass "
            "--set corpus.max_delete_fraction=1 to allow it"
        )


def _embed(
    spark: SparkSession,
    settings: Settings,
    tables: Tables,
    plan: _Plan,
    name: str,
    now: datetime,
    report: EmbedReport,
    full: bool,
    progress: bool,
) -> None:
    """Embed in commit batches: each is staged once, its chunks inserted and its failures
    recorded, so a killed run keeps every finished batch and the rerun embeds the rest."""
    cfg = settings.embedding
    n = int(plan.counts["new"])
    if n == 0:
        if full and tables.exists(CHUNKS):
            tables.truncate(CHUNKS)
        _drop_stale_staging(tables)
        return
    batches = 1 if full else max(1, math.ceil(n / cfg.commit_every))
    size = math.ceil(n / batches)
    # ≥ 4 embedding requests per task for steady work, every core busy, no idle model loads.
    parts = max(1, min(max(default_parallelism(spark), math.ceil(size / (cfg.batch_size * 4))), 4096,
                       math.ceil(size / cfg.batch_size)))  # fmt: skip
    udf = embedder_fn(cfg, name, now, threads=1)
    meter = Progress("embed chunks", n, enabled=progress)
    for b in range(batches):
        part = plan.to_embed if batches == 1 else plan.to_embed.filter(
            F.pmod(F.xxhash64("chunk_id"), F.lit(batches)) == b
        )  # fmt: skip
        # Chunks of similar length share a request (less padding).
        embedded = part.repartition(parts).sortWithinPartitions(F.length("text")).mapInArrow(
            udf, ddl(EMBEDDED_COLUMNS)
        )  # fmt: skip
        with arrow_batch(spark, cfg.batch_size):  # one Arrow batch = one embedding request
            staged = tables.stage(embedded, EMBED_STAGING)
        ok, err = _commit_batch(tables, staged, full, report.run_id, now)
        report.chunks_embedded += ok
        report.chunk_errors += err
        meter.update(ok + err, f"{report.chunk_errors} failed")
    tables.truncate(EMBED_STAGING)


def _drop_stale_staging(tables: Tables) -> None:
    """Empty a batch a killed run staged but never cleared. Its chunks were embedded again or
    were already committed, so the rows are only stale vectors taking space."""
    if tables.exists(EMBED_STAGING) and not tables.read(EMBED_STAGING).isEmpty():
        tables.truncate(EMBED_STAGING)


def _commit_batch(
    tables: Tables, staged: DataFrame, full: bool, run_id: str, now: datetime
) -> tuple[int, int]:
    """A staged batch's chunks into ``chunks``, its failures into ``ingest_errors``; (ok, failed)."""
    rows = staged.filter("error IS NULL").select(*names(CHUNK_COLUMNS))
    if full:
        tables.write(rows, CHUNKS, "overwrite", "overwrite")
    else:
        # Upsert on chunk_id: replaces another model's vector of the same chunk in place,
        # and never duplicates a chunk, even against a concurrent run.
        tables.merge(rows, CHUNKS, ["chunk_id"])
    c = staged.agg(
        F.count(F.when(F.col("error").isNull(), 1)).alias("ok"),
        F.count(F.when(F.col("error").isNotNull(), 1)).alias("err"),
    ).first()
    ok, err = int(c["ok"]), int(c["err"])  # type: ignore[index]
    if err:
        reason = F.concat(F.lit("chunk "), F.col("chunk_id"), F.lit(": "), F.col("error"))
        failed = staged.filter("error IS NOT NULL").select(
            "source", "doc_id", reason.alias("reason"), F.lit("embed").alias("stage"),
            F.lit(run_id).alias("run_id"), F.lit(now).alias("created_at"),
        )  # fmt: skip
        tables.write(failed, INGEST_ERRORS, "append")
    return ok, err


def _remove_replaced(tables: Tables, plan: _Plan, name: str, report: EmbedReport) -> None:
    """After the new vectors are committed: drop other models' chunks, then stale chunks."""
    dupes = int(plan.counts.get("dupes") or 0)
    if dupes:  # left by an earlier version or a writer outside Lakechain: keep one row per chunk
        tables.write(tables.read(CHUNKS).dropDuplicates(["chunk_id"]), CHUNKS, "overwrite")
        report.notes.append(f"repaired {dupes} chunk ids that had more than one row")
    other = int(plan.counts.get("other") or 0)
    if other:
        tables.delete_other(CHUNKS, "model", name)
        report.chunks_removed += other
        report.notes.append(f"removed {other} chunks of another model after embedding with {name}")
    stale = int(plan.counts.get("stale") or 0)
    if stale and plan.stale is not None:
        _remove_stale(tables, plan.stale)
        report.chunks_removed += stale


def _remove_stale(tables: Tables, stale: DataFrame) -> None:
    tables.delete_where(CHUNKS, "chunk_id", stale.select("chunk_id"))


def _write_documents(tables: Tables, plan: _Plan, now: datetime) -> int | None:
    """One overwrite (the table is the corpus snapshot), skipped when nothing differs.
    ``ingested_at`` is carried over for unchanged (doc_id, content_hash) pairs."""
    if tables.exists(DOCUMENTS) and not plan.counts.get("docs_differ"):
        return tables.version(DOCUMENTS)
    rows = plan.docs.select("doc_id", "source", "content_hash", "text", "metadata")
    if tables.exists(DOCUMENTS):
        prev = tables.read(DOCUMENTS).select("doc_id", "content_hash", F.col("ingested_at").alias("_prev_at"))
        rows = rows.join(prev, ["doc_id", "content_hash"], "left").select(
            "doc_id",
            "source",
            "content_hash",
            "text",
            "metadata",
            F.coalesce("_prev_at", F.lit(now)).alias("ingested_at"),
        )
    else:
        rows = rows.withColumn("ingested_at", F.lit(now))
    return tables.write(rows, DOCUMENTS, mode="overwrite")


def _write_errors(tables: Tables, plan: _Plan, run_id: str, now: datetime) -> int | None:
    """Ingest and chunking errors of this run in one append; the table always exists."""
    errors = plan.parse_errors.select("source", "doc_id", "reason", F.lit("ingest").alias("stage"))
    errors = errors.unionByName(plan.chunk_errors).select(
        "source", "doc_id", "reason", "stage", F.lit(run_id).alias("run_id"), F.lit(now).alias("created_at")
    )
    if int(plan.counts["doc_errors"]) or int(plan.counts["failed"]):
        return tables.write(errors, INGEST_ERRORS, mode="append")
    return tables.create_empty(INGEST_ERRORS, ERRORS_DDL)


def _document_counts(
    docs: DataFrame, existing: DataFrame, to_embed: DataFrame, stale: DataFrame
) -> DataFrame:
    """One row: new / changed / unchanged / deleted documents (``d_*`` columns)."""
    now_ids = docs.select("doc_id").distinct().withColumn("_now", F.lit(1))
    old_ids = existing.select("doc_id").distinct().withColumn("_old", F.lit(1))
    touched = (
        to_embed.select("doc_id").union(stale.select("doc_id")).distinct().withColumn("_touched", F.lit(1))
    )
    joined = now_ids.join(old_ids, "doc_id", "full_outer").join(touched, "doc_id", "left")
    now, old, hit = F.col("_now").isNotNull(), F.col("_old").isNotNull(), F.col("_touched").isNotNull()
    return joined.agg(
        F.sum(F.when(now & ~old, 1).otherwise(0)).alias("d_new"),
        F.sum(F.when(now & old & hit, 1).otherwise(0)).alias("d_changed"),
        F.sum(F.when(now & old & ~hit, 1).otherwise(0)).alias("d_unchanged"),
        F.sum(F.when(~now, 1).otherwise(0)).alias("d_deleted"),
    )


def _documents_diff(docs: DataFrame, prev_docs: DataFrame) -> DataFrame:
    """One row, ``docs_differ``: rows of the new snapshot the table lacks or holds differently,
    plus rows it holds that are gone (0 → the documents commit is skipped)."""

    def key(df: DataFrame, p: str) -> DataFrame:
        return df.select(
            "doc_id",
            F.col("source").alias(f"{p}source"),
            F.col("content_hash").alias(f"{p}hash"),
            # maps cannot be compared with =; sorted entries can
            F.array_sort(F.map_entries(F.coalesce("metadata", F.create_map()))).alias(f"{p}meta"),
            F.lit(1).alias(f"{p}in"),
        )

    j = key(docs, "n_").join(key(prev_docs, "p_"), "doc_id", "full_outer")
    same = (
        F.col("n_in").isNotNull()
        & F.col("p_in").isNotNull()
        & F.col("n_source").eqNullSafe(F.col("p_source"))
        & F.col("n_hash").eqNullSafe(F.col("p_hash"))
        & F.col("n_meta").eqNullSafe(F.col("p_meta"))
    )
    return j.agg(F.count(F.when(~same, 1)).alias("docs_differ"))
