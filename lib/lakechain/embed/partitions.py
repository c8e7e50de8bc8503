"""What the embed stage runs on executors, one partition at a time (pure: pandas, Arrow, numpy).

Failures are data, not exceptions: a document that cannot be chunked, or a batch the
embedding provider refuses after its retries, becomes a row whose ``error`` says why. The
stage splits those rows off by that column (Spark Connect has no Accumulators to collect
them), so one bad batch never fails the job and nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lakechain.config import EmbeddingConfig
from lakechain.embed.chunking import chunk_text, sha256_hex, tokenizer_for, vector_id
from lakechain.storage.schemas import EMBEDDED_COLUMNS, EXPECTED_COLUMNS, names

EXPECTED_NAMES = names(EXPECTED_COLUMNS)
EMBEDDED_NAMES = names(EMBEDDED_COLUMNS)
MAX_REASON = 2000


def chunker(
    provider: str, chunk_tokens: int, overlap: int
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas function: (doc_id, source, text) → the document's chunk rows, or one error row."""

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
                    rows.append(
                        (None, doc_id, source, -1, None, None, f"chunking failed: {exc!r}"[:MAX_REASON])
                    )
            yield pd.DataFrame(rows, columns=EXPECTED_NAMES)

    return fn


def embedder_fn(
    cfg: EmbeddingConfig, name: str, embedded_at: datetime, threads: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: expected chunk rows → chunk rows with vectors (``EMBEDDED_COLUMNS``);
    a batch that fails after the provider's retries yields its rows with ``error`` set."""

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from lakechain.embed.embedders import cached_embedder

        embedder = cached_embedder(cfg, threads=threads)
        for batch in batches:
            if batch.num_rows:
                yield _embed_batch(embedder, batch, name, embedded_at)

    return fn


def _embed_batch(embedder: Any, batch: pa.RecordBatch, name: str, embedded_at: datetime) -> pa.RecordBatch:
    n = batch.num_rows
    error: str | None = None
    try:
        vecs = np.asarray(embedder.embed(batch.column("text").to_pylist()), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != n:
            raise RuntimeError(f"embedder returned shape {vecs.shape} for {n} texts")
        dim = int(vecs.shape[1])
        offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
        emb = pa.ListArray.from_arrays(offsets, pa.array(vecs.reshape(-1), type=pa.float32()))
    except Exception as exc:
        error = f"embedding failed after retries: {type(exc).__name__}: {exc}"[:MAX_REASON]
        dim = 0
        emb = pa.nulls(n, type=pa.list_(pa.float32()))
    ids = batch.column("chunk_id")
    columns = {
        "chunk_id": ids,
        "doc_id": batch.column("doc_id"),
        "chunk_index": batch.column("chunk_index"),
        "text": batch.column("text"),
        "content_hash": batch.column("content_hash"),
        "embedding": emb,
        "model": pa.array([name] * n, type=pa.string()),
        "dim": pa.array([dim if error is None else None] * n, type=pa.int32()),
        "embedded_at": pa.array([embedded_at] * n, type=pa.timestamp("us", tz="UTC")),
        "vector_id": pa.array([vector_id(c) for c in ids.to_pylist()], type=pa.int64()),
        "source": batch.column("source"),
        "error": pa.array([error] * n, type=pa.string()),
    }
    return pa.RecordBatch.from_arrays([columns[c] for c in EMBEDDED_NAMES], names=EMBEDDED_NAMES)
