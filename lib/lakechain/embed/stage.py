"""Spark layer of the embed stage: corpus → ``documents`` → ``chunks`` (+ ``ingest_errors``).

Incremental and crash-safe by construction: the work is derived from the ``chunks``
table itself (a snapshot read at the start), never from bookkeeping that a crash could
leave behind. Chunking is deterministic, so every run recomputes each document's
expected chunk ids (cheap next to embedding) and then

1. embeds only expected chunk ids that ``chunks`` lacks for the current model, and
   appends them in one commit (an insert-only MERGE on ``chunk_id``: the anti-join
   guarantees no id is already present, so executors stream rows straight to files);
2. deletes stale rows: chunks of changed or deleted documents, by ``chunk_id``.

Unchanged documents therefore embed nothing, a changed document re-embeds only chunks
whose text or position changed, and a run interrupted between commits leaves valid
tables (at worst with stale rows still present) that the next run converges from
without duplicates. Rows of another model are removed before embedding (vectors of two
models cannot share an index); ``full=True`` re-embeds everything in one overwrite.

A provider failure on a batch (after the provider's own retries) turns that batch's
chunks into ``ingest_errors`` rows (stage "embed"); the other batches are committed and
the failed chunks are retried by the next run.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from lakechain.config import Settings
from lakechain.embed.embedders import check_model, model_name
from lakechain.runtime.progress import ProgressReporter

CHUNKS = "chunks"
DOCUMENTS = "documents"
ERRORS = "ingest_errors"

CHUNKS_DDL = (
    "chunk_id string, doc_id string, chunk_index int, text string, content_hash string, "
    "embedding array<float>, model string, dim int, embedded_at timestamp, vector_id bigint"
)
EXPECTED_DDL = (
    "chunk_id string, doc_id string, source string, chunk_index int, text string, content_hash string"
)
ERRORS_DDL = "source string, doc_id string, reason string, stage string, run_id string, created_at timestamp"
DELETE_BATCH = 5000


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

    def _lap(self, step: str, t0: float) -> float:
        """Record the seconds since ``t0`` under ``step``; returns now (the next t0)."""
        import time

        now = time.perf_counter()
        self.step_seconds[step] = round(self.step_seconds.get(step, 0.0) + now - t0, 3)
        return now

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

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
        lines += [f"  note: {n}" for n in d.notes]
        return "\n".join(lines)


# --- executor-side functions (pure apart from the embedder cache) ----------------------


def _chunk_partition(provider: str, chunk_tokens: int, overlap: int):  # noqa: ANN202 - Spark closure
    """mapInPandas function: (doc_id, source, text) → expected chunk rows (or an error row)."""
    import pandas as pd

    from lakechain.embed.chunking import chunk_text, sha256_hex, tokenizer_for

    cols = ["chunk_id", "doc_id", "source", "chunk_index", "text", "content_hash", "error"]

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        counter = tokenizer_for(provider)
        for pdf in batches:
            rows: list[tuple[Any, ...]] = []
            for doc_id, source, text in zip(pdf["doc_id"], pdf["source"], pdf["text"], strict=True):
                try:
                    for c in chunk_text(doc_id, text, counter, chunk_tokens, overlap):
                        rows.append(
                            (c.chunk_id, doc_id, source, c.chunk_index, c.text, sha256_hex(c.text), None)
                        )
                except Exception as exc:  # one bad document must not fail the partition
                    rows.append((None, doc_id, source, -1, None, None, f"chunking failed: {exc!r}"[:2000]))
            yield pd.DataFrame(rows, columns=cols)

    return fn


def _embed_partition(cfg: Any, name: str, embedded_at: datetime, done_acc: Any, errors_acc: Any):  # noqa: ANN202
    """mapInArrow function: chunk rows → chunk rows with embeddings. A failed batch becomes
    error entries in ``errors_acc`` and produces no rows."""
    import numpy as np
    import pyarrow as pa

    from lakechain.embed.chunking import vector_id

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        from lakechain.embed.embedders import cached_embedder

        ctx = TaskContext.get()
        threads = ctx.cpus() if ctx is not None else None
        embedder = cached_embedder(cfg, threads=threads)
        for batch in batches:
            n = batch.num_rows
            if n == 0:
                continue
            texts = batch.column("text").to_pylist()
            try:
                vecs = np.asarray(embedder.embed(texts), dtype=np.float32)
                if vecs.shape[0] != n:
                    raise RuntimeError(f"embedder returned {vecs.shape[0]} vectors for {n} texts")
            except Exception as exc:
                reason = f"embedding failed after retries: {type(exc).__name__}: {exc}"[:2000]
                ids = batch.column("chunk_id").to_pylist()
                docs = batch.column("doc_id").to_pylist()
                srcs = batch.column("source").to_pylist()
                errors_acc.add(
                    [(s, d, f"chunk {c}: {reason}") for s, d, c in zip(srcs, docs, ids, strict=True)]
                )
                done_acc.add(n)
                continue
            dim = int(vecs.shape[1])
            offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
            emb = pa.ListArray.from_arrays(offsets, pa.array(vecs.reshape(-1), type=pa.float32()))
            chunk_ids = batch.column("chunk_id")
            yield pa.RecordBatch.from_arrays(
                [
                    chunk_ids,
                    batch.column("doc_id"),
                    batch.column("chunk_index"),
                    batch.column("text"),
                    batch.column("content_hash"),
                    emb,
                    pa.array([name] * n, type=pa.string()),
                    pa.array([dim] * n, type=pa.int32()),
                    pa.array([embedded_at] * n, type=pa.timestamp("us", tz="UTC")),
                    pa.array([vector_id(c) for c in chunk_ids.to_pylist()], type=pa.int64()),
                ],
                names=[f.split()[0] for f in CHUNKS_DDL.split(", ")],
            )
            done_acc.add(n)

    return fn


def _list_accumulator(spark: Any) -> Any:
    from pyspark.accumulators import AccumulatorParam

    class ListParam(AccumulatorParam):
        def zero(self, value: list[Any]) -> list[Any]:
            return []

        def addInPlace(self, a: list[Any], b: list[Any]) -> list[Any]:  # noqa: N802 - Spark API
            a.extend(b)
            return a

    return spark.sparkContext.accumulator([], ListParam())


# --- driver -----------------------------------------------------------------------------


class _ArrowBatchSize:
    """Temporarily set the Arrow batch size (rows per pandas/Arrow UDF batch)."""

    KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"

    def __init__(self, spark: Any, rows: int) -> None:
        self.spark, self.rows, self.old = spark, rows, None

    def __enter__(self) -> None:
        self.old = self.spark.conf.get(self.KEY, None)
        self.spark.conf.set(self.KEY, str(self.rows))

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            self.spark.conf.unset(self.KEY)
        else:
            self.spark.conf.set(self.KEY, self.old)


def _delete_chunk_ids(tables: Any, ids: list[str]) -> int | None:
    """Delete by chunk_id (hex only, so no quoting issues) in bounded predicate batches."""
    version = None
    for i in range(0, len(ids), DELETE_BATCH):
        part = ids[i : i + DELETE_BATCH]
        version = tables.delete(CHUNKS, "chunk_id IN (" + ", ".join(f"'{c}'" for c in part) + ")")
    return version


def run_embed(
    spark: Any, settings: Settings, tables: Any, *, full: bool = False, progress: bool = True
) -> EmbedReport:
    """Ingest ``settings.corpus.path`` and bring ``chunks`` up to date (see the module doc)."""
    import time

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from lakechain.embed.ingest import read_corpus

    t0 = time.perf_counter()
    cfg = settings.embedding
    check_model(cfg)  # bad embedding.model / provider keys fail here, before any table write
    name = model_name(cfg)
    now = datetime.now(timezone.utc)
    run_id = f"embed-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    report = EmbedReport(run_id=run_id, model=name)
    persisted: list[Any] = []

    try:
        # 1. ingest (parsed once, cached; nothing is counted yet: see step 3)
        parsed = read_corpus(spark, settings, tables).persist(StorageLevel.MEMORY_AND_DISK)
        persisted.append(parsed)
        docs = parsed.filter("kind = 'doc'")
        lap = report._lap("ingest", t0)

        # 2. state from chunks itself (a fixed snapshot: later commits must not change it)
        existing = snap = None
        if tables.exists(CHUNKS) and not full:
            v0 = tables.version(CHUNKS)
            snap = tables.read(CHUNKS, version=v0).select("chunk_id", "doc_id", "model")
            snap = snap.persist(StorageLevel.MEMORY_AND_DISK)
            persisted.append(snap)
            existing = snap.filter(F.col("model") == F.lit(name)).select("chunk_id", "doc_id")
        prev_docs = tables.read(DOCUMENTS) if tables.exists(DOCUMENTS) else None
        lap = report._lap("read_state", lap)

        # 3. expected chunks of every document (deterministic ids) and every count this run
        # needs, in ONE Spark action: each action costs a round of jobs and Python tasks,
        # which is most of an incremental run's time.
        ch = settings.chunking
        chunked = (
            docs.select("doc_id", "source", "text")
            .mapInPandas(
                _chunk_partition(cfg.provider, ch.chunk_tokens, ch.overlap_tokens),
                EXPECTED_DDL + ", error string",
            )
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        persisted.append(chunked)
        expected = chunked.filter("error IS NULL").drop("error")
        chunk_fail = chunked.filter("error IS NOT NULL").select(
            "source", "doc_id", F.col("error").alias("reason"), F.lit("chunk").alias("stage")
        )
        if existing is None:
            to_embed = stale = None
            flagged = chunked.withColumn("_have", F.lit(None).cast("int"))
        else:
            to_embed = expected.join(existing.select("chunk_id"), "chunk_id", "left_anti")
            stale = existing.join(expected.select("chunk_id"), "chunk_id", "left_anti")
            have = existing.select("chunk_id", F.lit(1).alias("_have"))
            flagged = chunked.join(have, "chunk_id", "left")
        summary = parsed.agg(
            F.count(F.when(F.col("kind") == "doc", 1)).alias("docs"),
            F.count(F.when(F.col("kind") == "error", 1)).alias("doc_errors"),
        ).crossJoin(
            flagged.agg(
                F.count(F.when(F.col("error").isNull(), 1)).alias("expected"),
                F.count(F.when(F.col("error").isNull() & F.col("_have").isNull(), 1)).alias("new"),
                F.count(F.when(F.col("error").isNotNull(), 1)).alias("failed"),
            )
        )
        if snap is not None:
            summary = summary.crossJoin(
                snap.agg(F.count(F.when(F.col("model") != F.lit(name), 1)).alias("other"))
            ).crossJoin(stale.agg(F.collect_set("chunk_id").alias("stale_ids")))
            summary = summary.crossJoin(_document_counts(docs, existing, to_embed, stale))
        if prev_docs is not None:
            summary = summary.crossJoin(_documents_diff(docs, prev_docs))
        with _ArrowBatchSize(spark, 16):  # documents can be megabytes each
            agg = summary.collect()[0].asDict()
        report.documents_seen = int(agg["docs"])
        report.document_errors = int(agg["doc_errors"])
        report.chunks_expected = int(agg["expected"])
        n_embed = int(agg["new"])
        n_chunk_fail = int(agg["failed"])
        report.chunks_kept = report.chunks_expected - n_embed
        lap = report._lap("chunk_and_diff", lap)

        # 4. documents: one overwrite commit (the table is the current corpus snapshot),
        # skipped when the snapshot is identical to the table's
        if prev_docs is not None and not agg["docs_differ"]:
            report.documents_version = tables.version(DOCUMENTS)
        else:
            doc_rows = docs.select("doc_id", "source", "content_hash", "text", "metadata")
            if prev_docs is not None:
                prev = prev_docs.select("doc_id", "content_hash", F.col("ingested_at").alias("_prev_at"))
                doc_rows = doc_rows.join(prev, ["doc_id", "content_hash"], "left").select(
                    "doc_id",
                    "source",
                    "content_hash",
                    "text",
                    "metadata",
                    F.coalesce("_prev_at", F.lit(now)).alias("ingested_at"),
                )
            else:
                doc_rows = doc_rows.withColumn("ingested_at", F.lit(now))
            report.documents_version = tables.write(doc_rows, DOCUMENTS, mode="overwrite")
        lap = report._lap("write_documents", lap)

        # 5. embed and append (one commit; executors write the files); rows of another
        # model are removed first (vectors of two models cannot share an index)
        other = int(agg.get("other") or 0)
        if other:
            report.notes.append(f"removed {other} chunks of another model before re-embedding with {name}")
            tables.delete(CHUNKS, "model <> '" + name.replace("'", "''") + "'")
            report.chunks_removed += other
        done_acc = spark.sparkContext.accumulator(0)
        errors_acc = _list_accumulator(spark)
        if n_embed:
            per_batch = cfg.batch_size
            parallel = spark.sparkContext.defaultParallelism
            # ≥ 4 batches per task for steady progress, all cores busy, no idle model loads;
            # a handful of chunks goes to one task (one warm worker, no extra model loads)
            parts = min(
                max(parallel, math.ceil(n_embed / (per_batch * 4))), 4096, math.ceil(n_embed / per_batch)
            )
            # Batches of similar length pad less (the raw model sorts its whole input by length).
            embedded = (
                (to_embed if to_embed is not None else expected)
                .repartition(parts)
                .sortWithinPartitions(F.length("text"))
            )
            embedded = embedded.mapInArrow(_embed_partition(cfg, name, now, done_acc, errors_acc), CHUNKS_DDL)
            with (
                _ArrowBatchSize(spark, per_batch),
                ProgressReporter("embed chunks", n_embed, lambda: done_acc.value, enabled=progress),
            ):
                tables.write(embedded, CHUNKS, mode="overwrite" if full else "append")
        elif full and tables.exists(CHUNKS):  # full rebuild of an empty corpus: empty table
            tables.delete(CHUNKS, "chunk_id IS NOT NULL OR chunk_id IS NULL")
        embed_errors = {(s, d, r) for s, d, r in errors_acc.value}
        report.chunk_errors = len(embed_errors)
        report.chunks_embedded = n_embed - report.chunk_errors
        lap = report._lap("embed_and_append", lap)

        # 6. remove stale chunks (changed and deleted documents)
        if existing is not None:
            stale_ids = sorted(agg["stale_ids"] or [])
            _delete_chunk_ids(tables, stale_ids)
            report.chunks_removed += len(stale_ids)
            if n_embed or stale_ids:
                report.documents_new = int(agg["d_new"] or 0)
                report.documents_changed = int(agg["d_changed"] or 0)
                report.documents_unchanged = int(agg["d_unchanged"] or 0)
                report.documents_deleted = int(agg["d_deleted"] or 0)
            else:  # nothing to embed and nothing stale: every document is unchanged
                report.documents_unchanged = report.documents_seen
        else:
            report.documents_new = report.documents_seen
        report.chunks_version = tables.version(CHUNKS)
        lap = report._lap("remove_stale", lap)

        # 7. errors of this run (ingest + chunking + embedding), one append
        err_df = parsed.filter("kind = 'error'").select(
            "source", "doc_id", "reason", F.lit("ingest").alias("stage")
        )
        err_df = err_df.unionByName(chunk_fail)
        if embed_errors:
            err_df = err_df.unionByName(
                spark.createDataFrame(
                    sorted(embed_errors), "source string, doc_id string, reason string"
                ).withColumn("stage", F.lit("embed"))
            )
        err_df = err_df.select(
            "source",
            "doc_id",
            "reason",
            "stage",
            F.lit(run_id).alias("run_id"),
            F.lit(now).alias("created_at"),
        )
        report.chunk_errors += n_chunk_fail
        if report.document_errors or report.chunk_errors:
            report.errors_version = tables.write(err_df, ERRORS, mode="append")
        elif not tables.exists(ERRORS):
            # Created empty so SQL users can always query it.
            report.errors_version = tables.write(spark.createDataFrame([], ERRORS_DDL), ERRORS)
        report._lap("write_errors", lap)
    finally:
        for df in persisted:
            df.unpersist()
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _document_counts(docs: Any, existing: Any, to_embed: Any, stale: Any) -> Any:
    """One-row DataFrame: new / changed / unchanged / deleted documents (``d_*`` columns)."""
    from pyspark.sql import functions as F

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


def _documents_diff(docs: Any, prev_docs: Any) -> Any:
    """One-row DataFrame, ``docs_differ``: rows of the new ``documents`` snapshot that the
    table lacks or holds differently, plus rows it holds that are gone (0 → skip the commit).

    ``ingested_at`` is carried over for unchanged (doc_id, content_hash) pairs, so equal
    ids, hashes, sources and metadata mean an identical snapshot.
    """
    from pyspark.sql import functions as F

    def key(df: Any, p: str) -> Any:
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
