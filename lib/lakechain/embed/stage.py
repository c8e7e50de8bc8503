"""Embed stage: corpus → ``documents`` → ``chunks`` with vectors (+ ``ingest_errors``).

Incremental and crash-safe by construction: the work is derived from ``documents`` and
``chunks`` themselves (snapshots pinned at the start), never from bookkeeping a crash could
leave behind. ``documents`` records per document its content hash, the settings its chunks
were made with (``embed_settings``) and its ``chunk_count``; a run

1. skips, before chunking, every document whose hash and settings match and whose chunks are
   all in ``chunks`` for the current model (one join on doc_id in Spark); every other
   document is chunked (chunking is deterministic, so chunk ids are stable);
2. embeds only the expected chunks that ``chunks`` lacks for the current model: the UDF's
   output is staged once (model calls are never re-evaluated), then inserted with a MERGE
   on ``chunk_id`` that never duplicates, even against a concurrent run;
3. removes what the new rows replace: stale chunks of changed or deleted documents in the
   same commit as the last batch's new chunks, chunks of another model after it. No delete
   is committed before its replacement, and a run that would delete most of the corpus
   refuses (``corpus.max_delete_fraction``);
4. writes ``documents`` last, so a crash before it leaves the old rows and the next run
   redoes the same documents (finding their committed chunks, embedding nothing twice).

A corpus table with Delta's change data feed on is read as ``documents`` plus its changes
since the version the last run recorded in ``embed_state`` (in full when that is unsafe).
A provider failure on a batch becomes ``ingest_errors`` rows (stage "embed") and those
chunks are retried by the next run (their document's ``chunk_count`` is not met). Errors
are rows split off by a column, and counts come from aggregates, so the stage runs
unchanged on Spark Connect.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from lakechain.config import Settings
from lakechain.embed import embedders
from lakechain.embed.corpus import read_corpus, read_corpus_changes
from lakechain.embed.incremental import FeedState, change_feed_start, settings_fingerprint
from lakechain.embed.partitions import chunker, embedder_fn
from lakechain.errors import UserError
from lakechain.runtime.ids import new_run_id
from lakechain.runtime.progress import Progress
from lakechain.runtime.timer import Timer
from lakechain.storage.schemas import (
    CHUNK_COLUMNS,
    CHUNKS,
    DOCUMENT_STATE_COLUMNS,
    DOCUMENTS,
    EMBED_STAGING,
    EMBED_STATE,
    EMBED_STATE_COLUMNS,
    EMBEDDED_COLUMNS,
    ERRORS_DDL,
    EXPECTED_COLUMNS,
    INGEST_ERRORS,
    ddl,
    names,
)
from lakechain.storage.session import arrow_batch, default_parallelism, persisted

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from lakechain.storage.tables import InputTable, Tables


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
    documents_chunked: int = 0
    changes_since: int | None = None
    """Set when the corpus table was read as its change data feed since this version."""
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
            f"{d.documents_unchanged} unchanged, {d.documents_deleted} deleted, {d.document_errors} errors"
            + (
                f" (corpus table read as its changes since v{d.changes_since})"
                if d.changes_since is not None
                else ""
            ),
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
class _Base:
    """The tables this run derives its work from, at versions pinned at its start."""

    chunks: int | None
    documents: int | None
    documents_current: bool
    """``documents`` has the ``embed_settings`` and ``chunk_count`` columns (else: re-chunk all once)."""


@dataclass
class _Source:
    """The corpus as this run reads it; ``table`` is set for a Delta corpus table."""

    parsed: DataFrame
    table: InputTable | None = None
    state: FeedState | None = None
    changes_since: int | None = None


@dataclass
class _Plan:
    """What this run must do, all of it lazy DataFrames over pinned table versions."""

    parse_errors: DataFrame
    chunk_errors: DataFrame
    to_embed: DataFrame
    stale: DataFrame | None
    doc_rows: DataFrame
    counts: dict[str, Any]


def run_embed(
    spark: SparkSession, settings: Settings, tables: Tables, *, full: bool = False, progress: bool = True
) -> EmbedReport:
    """Ingest ``corpus.path`` and bring ``chunks`` up to date (see the module doc)."""
    timer = Timer()
    name = check_model(settings)
    report = EmbedReport(run_id=new_run_id("embed"), model=name)
    now = datetime.now(timezone.utc)
    with contextlib.ExitStack() as cached:  # frames read several times, dropped at the end
        keep = _keeper(cached)
        with timer.step("plan"):
            base = _pin(tables, full)
            source, plan = _read_and_plan(
                spark, settings, tables, base, name, now, full, keep, cached, report
            )
            _count(plan, report)
            refuse_destructive(settings, plan.counts, full)
        with timer.step("embed"):
            _embed(spark, settings, tables, plan, name, now, report, full, progress)
        with timer.step("remove_replaced"):
            _remove_replaced(tables, plan, name, report)
        with timer.step("write_documents"):
            report.documents_version = _write_documents(tables, plan, base)
        with timer.step("write_errors"):
            report.errors_version = _write_errors(tables, plan, report.run_id, now)
        if source.table is not None:
            with timer.step("write_state"):
                _write_state(tables, source, report, now)
        report.chunks_version = tables.version(CHUNKS)
    report.seconds, report.step_seconds = timer.elapsed, timer.steps
    return report


def check_model(settings: Settings) -> str:
    """Check the embedding model before anything is written, so a wrong ``embedding.model``
    fails at start; returns the name stored with the vectors."""
    embedders.check_model(settings.embedding)
    return embedders.model_name(settings.embedding)


def _keeper(cached: contextlib.ExitStack) -> Callable[[DataFrame], DataFrame]:
    """Persist a frame until ``cached`` closes (newest first: see ``persisted``)."""
    return lambda df: cached.enter_context(persisted(df))


def _pin(tables: Tables, full: bool) -> _Base:
    chunks = None if full else tables.version(CHUNKS)
    documents = tables.version(DOCUMENTS)
    current = documents is not None and set(DOCUMENT_STATE_COLUMNS) <= set(tables.read(DOCUMENTS).columns)
    return _Base(chunks, documents, current)


def _read_and_plan(
    spark: SparkSession,
    settings: Settings,
    tables: Tables,
    base: _Base,
    name: str,
    now: datetime,
    full: bool,
    keep: Callable[[DataFrame], DataFrame],
    cached: contextlib.ExitStack,
    report: EmbedReport,
) -> tuple[_Source, _Plan]:
    """The corpus (only its changes where the table's change data feed allows) and the plan.
    Change data that turns out to be gone (vacuumed, or recorded only later) → a full read."""
    source = _source(spark, settings, tables, base, full, report)
    try:
        return source, _plan(settings, tables, keep(source.parsed), base, name, now, full, keep)
    except Exception as exc:
        if source.changes_since is None or not _FEED_GONE.search(str(exc)):
            raise
        cached.close()
        source = _read_in_full(spark, settings, tables, source, report)
        return source, _plan(settings, tables, keep(source.parsed), base, name, now, full, keep)


def _read_in_full(
    spark: SparkSession, settings: Settings, tables: Tables, source: _Source, report: EmbedReport
) -> _Source:
    """The corpus table read in full at its pinned version, after its change data failed."""
    assert source.table is not None
    report.notes.append(
        f"change data of {source.table['name']} since version {source.changes_since} is not available: "
        "read in full"
    )
    report.changes_since = None
    return _Source(read_corpus(spark, settings, tables, source.table["version"]), source.table, source.state)


_FEED_GONE = re.compile(
    r"DELTA_MISSING_CHANGE_DATA|DELTA_CHANGE_DATA_FILE_NOT_FOUND|DELTA_VERSION_NOT_FOUND|VersionNotFound|"
    r"FileNotFound|FILE_NOT_EXIST|change data was not recorded",
    re.IGNORECASE,
)


def _source(
    spark: SparkSession, settings: Settings, tables: Tables, base: _Base, full: bool, report: EmbedReport
) -> _Source:
    """The corpus: a directory or non-Delta table in full; a Delta table at a pinned version,
    as ``documents`` plus its change data feed when the last run's state allows."""
    path = settings.corpus.path
    table = None if os.path.isdir(path) else tables.describe_input(path)
    if table is None:
        return _Source(read_corpus(spark, settings, tables))
    state = _read_state(tables)
    start, note = change_feed_start(
        state, table["name"], table["table_id"], table["version"], table["change_feed"],
        base.documents if base.documents_current and not full else None,
    )  # fmt: skip
    if note:
        report.notes.append(note)
    if start is None:
        return _Source(read_corpus(spark, settings, tables, table["version"]), table, state)
    report.changes_since = start
    previous = tables.read(DOCUMENTS, version=base.documents)
    try:  # analysing the feed fails at once when a version's change data was never recorded
        parsed = read_corpus_changes(settings, tables, table["name"], start, table["version"], previous)
    except Exception as exc:
        if not _FEED_GONE.search(str(exc)):
            raise
        return _read_in_full(spark, settings, tables, _Source(previous, table, state, start), report)
    return _Source(parsed, table, state, start)


def _read_state(tables: Tables) -> FeedState | None:
    if not tables.exists(EMBED_STATE):
        return None
    row = tables.read(EMBED_STATE).first()
    if row is None:
        return None
    return {
        "corpus": row["corpus"],
        "table_id": row["table_id"],
        "source_version": int(row["source_version"]),
        "documents_version": None if row["documents_version"] is None else int(row["documents_version"]),
    }


def _plan(
    settings: Settings,
    tables: Tables,
    parsed: DataFrame,
    base: _Base,
    name: str,
    now: datetime,
    full: bool,
    keep: Callable[[DataFrame], DataFrame],
) -> _Plan:
    """Which documents to chunk (the others are decided by a join, unchunked), their expected
    chunks, what to embed and what is stale, and every count the run needs in ONE Spark
    action (each action is a round of jobs and Python tasks)."""
    ch = settings.chunking
    fingerprint = settings_fingerprint(settings)
    docs = parsed.filter("kind = 'doc'").select("doc_id", "source", "content_hash", "text", "metadata")
    docs = docs.withColumn("_now", F.lit(True))
    existing = None
    if base.chunks is not None:
        snap = tables.read(CHUNKS, version=base.chunks).select("chunk_id", "doc_id", "model")
        existing = snap.filter(F.col("model") == F.lit(name)).select("chunk_id", "doc_id")
    judged = keep(_judge(docs, _previous(tables, base), existing, fingerprint, full))
    todo = judged.filter("status IN ('new', 'changed')")
    chunked = keep(
        todo.select("doc_id", "source", "text").mapInPandas(
            chunker(settings.embedding.provider, ch.chunk_tokens, ch.overlap_tokens), ddl(EXPECTED_COLUMNS)
        )
    )
    expected = chunked.filter("error IS NULL").drop("error")
    chunk_errors = chunked.filter("error IS NOT NULL").select(
        "source", "doc_id", F.col("error").alias("reason"), F.lit("chunk").alias("stage")
    )
    unchanged = F.col("status") == "unchanged"
    summary = (
        parsed.agg(F.count(F.when(F.col("kind") == "error", 1)).alias("doc_errors"))
        .crossJoin(
            judged.agg(
                F.count(F.when(F.col("status") != "deleted", 1)).alias("docs"),
                F.count(F.when(F.col("status") == "deleted", 1)).alias("d_deleted"),
                F.count(F.when(F.col("p_hash").isNotNull(), 1)).alias("prev_docs"),
                F.count(F.when(F.col("status") == "new", 1)).alias("d_new"),
                F.count(F.when(F.col("status") == "changed", 1)).alias("d_changed"),
                F.count(F.when(unchanged, 1)).alias("d_unchanged"),
                F.sum(F.when(unchanged, F.col("p_count")).otherwise(0)).alias("kept_unchanged"),
                F.count(F.when(~F.col("same_row"), 1)).alias("docs_differ"),
            )
        )
        .crossJoin(
            chunked.agg(
                F.count(F.when(F.col("error").isNull(), 1)).alias("expected"),
                F.count(F.when(F.col("error").isNotNull(), 1)).alias("failed"),
            )
        )
    )
    to_embed, stale = expected, None
    if existing is not None:
        to_embed = expected.join(existing.select("chunk_id"), "chunk_id", "left_anti")
        # every chunk of the current model that no unchanged document owns and no expected chunk is
        stale = existing.join(judged.filter(unchanged).select("doc_id"), "doc_id", "left_anti").join(
            expected.select("chunk_id"), "chunk_id", "left_anti"
        )
        summary = (
            summary.crossJoin(to_embed.agg(F.count(F.lit(1)).alias("new")))
            .crossJoin(stale.agg(F.count(F.lit(1)).alias("stale")))
            .crossJoin(
                snap.groupBy("chunk_id")
                .agg(
                    F.count(F.lit(1)).alias("n"), F.count(F.when(F.col("model") != F.lit(name), 1)).alias("o")
                )
                .agg(F.sum("o").alias("other"), F.count(F.when(F.col("n") > 1, 1)).alias("dupes"))
            )
        )
    with arrow_batch(tables.spark, 16):  # documents can be megabytes each
        counts = summary.first().asDict()  # type: ignore[union-attr]
    counts.setdefault("new", counts["expected"])
    doc_rows = _document_rows(judged, chunked, fingerprint, now)
    return _Plan(parsed.filter("kind = 'error'"), chunk_errors, to_embed, stale, doc_rows, counts)


def _previous(tables: Tables, base: _Base) -> DataFrame | None:
    """``documents`` at the pinned version as ``p_*`` columns (state columns null on a table
    written before they existed, so every document counts as changed once)."""
    if base.documents is None:
        return None
    prev = tables.read(DOCUMENTS, version=base.documents)
    state = [F.col(c) if base.documents_current else F.lit(None) for c in DOCUMENT_STATE_COLUMNS]
    return prev.select(
        "doc_id",
        F.col("source").alias("p_source"),
        F.col("content_hash").alias("p_hash"),
        _sorted_map("metadata").alias("p_meta"),
        F.col("ingested_at").alias("p_at"),
        state[0].cast("string").alias("p_settings"),
        state[1].cast("int").alias("p_count"),
    )


def _sorted_map(col: str) -> Column:
    """Maps cannot be compared with =; their sorted entries can."""
    return F.array_sort(F.map_entries(F.coalesce(col, F.create_map())))


def _judge(
    docs: DataFrame, prev: DataFrame | None, existing: DataFrame | None, fingerprint: str, full: bool
) -> DataFrame:
    """Each document with ``status``: "new", "changed", "unchanged" (same hash and settings,
    all ``chunk_count`` chunks present for this model) or "deleted" (in ``documents`` only);
    ``same_row``: its ``documents`` row would be rewritten as it is. Decided by joins on doc_id alone,
    before any chunking."""
    judged = docs
    if prev is None:
        meta = "array<struct<key:string,value:string>>"
        for c, kind in [("p_source", "string"), ("p_hash", "string"), ("p_meta", meta),
                        ("p_at", "timestamp"), ("p_settings", "string"), ("p_count", "int")]:  # fmt: skip
            judged = judged.withColumn(c, F.lit(None).cast(kind))
    else:
        judged = judged.join(prev, "doc_id", "full_outer")
    if existing is None:
        judged = judged.withColumn("n_have", F.lit(None).cast("long"))
    else:
        have = existing.groupBy("doc_id").agg(F.count(F.lit(1)).alias("n_have"))
        judged = judged.join(have, "doc_id", "left")
    same = (
        (F.col("p_hash") == F.col("content_hash"))
        & (F.col("p_settings") == F.lit(fingerprint))
        & (F.col("p_count") == F.coalesce(F.col("n_have"), F.lit(0)))
        & F.lit(not full)
    )
    status = (
        F.when(F.col("_now").isNull(), "deleted")
        .when(F.col("p_hash").isNull(), "new")
        .when(F.coalesce(same, F.lit(False)), "unchanged")
    )
    # Same text and settings chunk alike, so the row's chunk_count stands too (even when a
    # forced or retried run chunks it again).
    same_row = (
        F.col("content_hash").eqNullSafe(F.col("p_hash"))
        & F.lit(fingerprint).eqNullSafe(F.col("p_settings"))
        & F.col("source").eqNullSafe(F.col("p_source"))
        & _sorted_map("metadata").eqNullSafe(F.col("p_meta"))
    )
    return judged.withColumn("status", status.otherwise("changed")).withColumn("same_row", same_row)


def _document_rows(judged: DataFrame, chunked: DataFrame, fingerprint: str, now: datetime) -> DataFrame:
    """The next ``documents`` snapshot: unchanged documents keep their count; the others get the
    count just chunked (null when chunking failed, so they are retried). ``ingested_at`` is kept
    for an unchanged (doc_id, content_hash)."""
    per_doc = chunked.groupBy("doc_id").agg(
        F.count(F.when(F.col("error").isNull(), 1)).alias("_ok"),
        F.count(F.when(F.col("error").isNotNull(), 1)).alias("_failed"),
    )
    count = F.when(F.col("status") == "unchanged", F.col("p_count")).when(
        F.coalesce("_failed", F.lit(0)) == 0, F.coalesce("_ok", F.lit(0)).cast("int")
    )
    kept = judged.filter("status <> 'deleted'")
    return kept.join(per_doc, "doc_id", "left").select(
        "doc_id",
        "source",
        "content_hash",
        "text",
        "metadata",
        F.when(F.col("p_hash") == F.col("content_hash"), F.col("p_at"))
        .otherwise(F.lit(now))
        .alias("ingested_at"),
        F.lit(fingerprint).alias("embed_settings"),
        count.alias("chunk_count"),
    )


def _count(plan: _Plan, report: EmbedReport) -> None:
    c = plan.counts
    report.documents_seen = int(c["docs"])
    report.document_errors = int(c["doc_errors"])
    report.documents_new = int(c["d_new"])
    report.documents_changed = int(c["d_changed"])
    report.documents_unchanged = int(c["d_unchanged"])
    report.documents_deleted = int(c["d_deleted"])
    report.documents_chunked = report.documents_new + report.documents_changed
    kept = int(c["kept_unchanged"] or 0)
    report.chunks_expected = kept + int(c["expected"])
    report.chunks_kept = report.chunks_expected - int(c["new"])


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
    recorded, so a killed run keeps every finished batch and the rerun embeds the rest. The
    last batch's commit also deletes the stale chunks: the replacements and what they
    replace change together."""
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
    stale = int(plan.counts.get("stale") or 0)
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
        last = b == batches - 1 and stale and plan.stale is not None
        ok, err = _commit_batch(tables, staged, full, report.run_id, now, plan.stale if last else None)
        report.chunks_removed += stale if last else 0
        report.chunks_embedded += ok
        report.chunk_errors += err
        meter.update(ok + err, f"{report.chunk_errors} failed")
    tables.truncate(EMBED_STAGING)  # a completed run leaves no staged vectors behind


def _drop_stale_staging(tables: Tables) -> None:
    """Empty a batch a killed run staged but never cleared. Its chunks were embedded again or
    were already committed, so the rows are only stale vectors taking space."""
    if tables.exists(EMBED_STAGING) and not tables.is_empty(EMBED_STAGING):
        tables.truncate(EMBED_STAGING)


def _commit_batch(
    tables: Tables, staged: DataFrame, full: bool, run_id: str, now: datetime, stale: DataFrame | None
) -> tuple[int, int]:
    """A staged batch's chunks into ``chunks`` (and ``stale`` out of it, in the same commit),
    its failures into ``ingest_errors``; (ok, failed)."""
    rows = staged.filter("error IS NULL").select(*names(CHUNK_COLUMNS))
    if full:
        tables.write(rows, CHUNKS, "overwrite", "overwrite")
    else:
        # Upsert on chunk_id: replaces another model's vector of the same chunk in place,
        # and never duplicates a chunk, even against a concurrent run.
        tables.merge(rows, CHUNKS, ["chunk_id"], delete=stale)
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
    """After the new vectors are committed: drop other models' chunks, then stale chunks
    (when there was nothing to embed; else they went with the last batch)."""
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
    if stale and plan.stale is not None and not int(plan.counts["new"]):
        _remove_stale(tables, plan.stale)
        report.chunks_removed += stale


def _remove_stale(tables: Tables, stale: DataFrame) -> None:
    tables.delete_where(CHUNKS, "chunk_id", stale.select("chunk_id"))


def _write_documents(tables: Tables, plan: _Plan, base: _Base) -> int | None:
    """One overwrite (the table is the corpus snapshot), skipped when nothing differs; a table
    written before the state columns existed gets them (its schema is replaced)."""
    if base.documents is not None and base.documents_current and not int(plan.counts["docs_differ"]):
        return base.documents
    if base.documents is not None and not base.documents_current:
        return tables.write(plan.doc_rows, DOCUMENTS, mode="overwrite", schema_mode="overwrite")
    return tables.write(plan.doc_rows, DOCUMENTS, mode="overwrite")


def _write_state(tables: Tables, source: _Source, report: EmbedReport, now: datetime) -> None:
    """Record which version of the corpus table ``documents`` now reflects (skipped when unchanged)."""
    table, prev = source.table, source.state
    assert table is not None
    row = (table["name"], table["table_id"], table["version"], report.documents_version)
    if (
        prev is not None
        and (prev["corpus"], prev["table_id"], prev["source_version"], prev["documents_version"]) == row
    ):
        return
    df = tables.spark.createDataFrame([(*row, report.run_id, now)], ddl(EMBED_STATE_COLUMNS))
    tables.write(df, EMBED_STATE, mode="overwrite")


def _write_errors(tables: Tables, plan: _Plan, run_id: str, now: datetime) -> int | None:
    """Ingest and chunking errors of this run in one append; the table always exists."""
    errors = plan.parse_errors.select("source", "doc_id", "reason", F.lit("ingest").alias("stage"))
    errors = errors.unionByName(plan.chunk_errors).select(
        "source", "doc_id", "reason", "stage", F.lit(run_id).alias("run_id"), F.lit(now).alias("created_at")
    )
    if int(plan.counts["doc_errors"]) or int(plan.counts["failed"]):
        return tables.write(errors, INGEST_ERRORS, mode="append")
    return tables.create_empty(INGEST_ERRORS, ERRORS_DDL)
