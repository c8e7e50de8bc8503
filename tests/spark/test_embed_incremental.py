"""The embed stage skips unchanged documents before chunking; settings and model changes,
failed chunks, pre-existing ``documents`` tables and corpus tables' change data feed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from pyspark import cloudpickle

from lakechain.embed import stage as embed_stage
from lakechain.embed.stage import run_embed

# The recording chunker below runs on Spark's Python workers, which cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TEXTS = {
    "a.txt": "Delta Lake is an open storage format with ACID transactions over Parquet files.",
    "b.txt": "Spark Connect separates the client from the Spark driver with a gRPC protocol.",
    "c.txt": "FAISS searches dense vectors by inner product; shards merge on the driver.",
}


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in TEXTS.items():
        (corpus / name).write_text(text)
    return corpus


@pytest.fixture
def chunked_ids(monkeypatch, tmp_path) -> Callable[[], list[str]]:
    """Doc ids the embed stage actually hands to its chunker, written by the executors to a
    file; calling the fixture returns (and clears) what was recorded since the last call."""
    log = tmp_path / "chunked.log"
    real = embed_stage.chunker

    def recording(*args):
        fn = real(*args)

        def wrapped(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for pdf in batches:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.writelines(f"{d}\n" for d in pdf["doc_id"])
                yield from fn(iter([pdf]))

        return wrapped

    monkeypatch.setattr(embed_stage, "chunker", recording)

    def read() -> list[str]:
        ids = sorted(set(log.read_text(encoding="utf-8").split())) if log.exists() else []
        log.unlink(missing_ok=True)
        return ids

    return read


def test_an_unchanged_document_is_not_chunked_again(spark, settings, tables, tmp_path, chunked_ids):
    corpus = _corpus(tmp_path)
    settings.corpus.path = str(corpus)
    r1 = run_embed(spark, settings, tables, progress=False)
    assert (r1.documents_new, r1.chunks_embedded) == (3, 3) and chunked_ids() == sorted(TEXTS)

    (corpus / "b.txt").write_text(TEXTS["b.txt"] + " It also runs on Databricks serverless.")
    r2 = run_embed(spark, settings, tables, progress=False)
    assert (r2.documents_unchanged, r2.documents_changed, r2.documents_chunked) == (2, 1, 1)
    assert (r2.chunks_embedded, r2.chunks_removed, r2.chunks_kept) == (1, 1, 2)
    assert chunked_ids() == ["b.txt"]

    r3 = run_embed(spark, settings, tables, progress=False)
    assert (r3.documents_unchanged, r3.documents_chunked, r3.chunks_embedded) == (3, 0, 0)
    assert chunked_ids() == []
    assert (r3.chunks_version, r3.documents_version) == (r2.chunks_version, r2.documents_version)


def test_a_chunking_change_rechunks_every_document(spark, settings, tables, tmp_path, delta_rows):
    corpus = _corpus(tmp_path)
    (corpus / "long.txt").write_text(" ".join(f"Sentence number {i} about Spark." for i in range(60)))
    settings.corpus.path = str(corpus)
    run_embed(spark, settings, tables, progress=False)
    before = {r["chunk_id"] for r in delta_rows(tables, "chunks")}

    settings.chunking.chunk_tokens = 64
    settings.chunking.overlap_tokens = 8
    r = run_embed(spark, settings, tables, progress=False)
    assert (r.documents_changed, r.documents_unchanged, r.documents_chunked) == (4, 0, 4)
    rows = delta_rows(tables, "chunks")
    long_chunks = [c for c in rows if c["doc_id"] == "long.txt"]
    assert len(long_chunks) > 2 and not {c["chunk_id"] for c in long_chunks} & before
    assert r.chunks_embedded == len(long_chunks)  # the short documents keep their single chunk
    docs = {d["doc_id"]: d for d in delta_rows(tables, "documents")}
    assert {d["embed_settings"] for d in docs.values()} == {
        "chunker=1;tokenizer=local;chunk_tokens=64;overlap_tokens=8;model=all-MiniLM-L6-v2"
    }
    assert docs["long.txt"]["chunk_count"] == len(long_chunks)


def _remote(settings, srv, batch_size: int = 8) -> None:
    settings.embedding.provider = "openai_compatible"
    settings.embedding.model = "fake-embed"
    settings.embedding.base_url = srv.url
    settings.embedding.batch_size = batch_size
    settings.embedding.max_retries = 0


def test_a_model_change_embeds_every_document_again(spark, settings, tables, tmp_path, srv, delta_rows):
    settings.corpus.path = str(_corpus(tmp_path))
    _remote(settings, srv)
    run_embed(spark, settings, tables, progress=False)
    settings.embedding.dimensions = 16
    r = run_embed(spark, settings, tables, progress=False)
    assert (r.documents_changed, r.chunks_embedded, r.chunks_removed) == (3, 3, 3)
    assert {(c["model"], c["dim"]) for c in delta_rows(tables, "chunks")} == {("fake-embed@16", 16)}
    assert r.chunks_version is not None


def test_a_failed_chunk_is_retried_though_its_document_is_unchanged(
    spark, settings, tables, tmp_path, srv, chunked_ids
):
    settings.corpus.path = str(_corpus(tmp_path))
    _remote(settings, srv, batch_size=1)
    srv.script("500")  # one of the three requests fails; its chunk becomes an ingest_errors row
    r1 = run_embed(spark, settings, tables, progress=False)
    assert (r1.chunks_embedded, r1.chunk_errors) == (2, 1)
    chunked_ids()
    r2 = run_embed(spark, settings, tables, progress=False)
    assert (r2.documents_unchanged, r2.documents_changed, r2.chunks_embedded) == (2, 1, 1)
    assert len(chunked_ids()) == 1


def test_a_documents_table_without_the_state_columns_is_migrated_once(
    spark, settings, tables, tmp_path, chunked_ids, delta_rows
):
    settings.corpus.path = str(_corpus(tmp_path))
    run_embed(spark, settings, tables, progress=False)
    old = tables.read("documents").drop("embed_settings", "chunk_count")  # as written before them
    tables.write(old.localCheckpoint(), "documents", "overwrite", "overwrite")
    chunked_ids()

    r2 = run_embed(spark, settings, tables, progress=False)
    assert (r2.documents_changed, r2.documents_chunked, r2.chunks_embedded) == (3, 3, 0)
    assert chunked_ids() == sorted(TEXTS)
    assert all(d["chunk_count"] == 1 and d["embed_settings"] for d in delta_rows(tables, "documents"))
    r3 = run_embed(spark, settings, tables, progress=False)
    assert (r3.documents_unchanged, r3.documents_chunked) == (3, 0) and chunked_ids() == []


def _corpus_table(spark, tables, change_feed: bool) -> str:
    rows = [(k, v) for k, v in TEXTS.items()]
    tables.write(spark.createDataFrame(rows, "doc_id string, text string"), "raw_docs")
    name = tables.full_name("raw_docs")
    if change_feed:
        spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    return name


def test_a_corpus_table_with_change_data_feed_is_read_as_its_changes(
    spark, settings, tables, chunked_ids, delta_rows
):
    name = _corpus_table(spark, tables, change_feed=True)
    settings.corpus.path = "raw_docs"
    r1 = run_embed(spark, settings, tables, progress=False)
    assert r1.changes_since is None and r1.documents_new == 3
    chunked_ids()

    v = tables.version("raw_docs")
    spark.sql(f"UPDATE {name} SET text = concat(text, ' Updated.') WHERE doc_id = 'a.txt'")
    spark.sql(f"DELETE FROM {name} WHERE doc_id = 'b.txt'")
    spark.sql(f"INSERT INTO {name} VALUES ('d.txt', 'A new document about Unity Catalog volumes.')")
    settings.corpus.max_delete_fraction = 1.0
    r2 = run_embed(spark, settings, tables, progress=False)
    assert r2.changes_since == v + 1 and not r2.notes
    counts = (r2.documents_new, r2.documents_changed, r2.documents_unchanged, r2.documents_deleted)
    assert counts == (1, 1, 1, 1)
    assert chunked_ids() == ["a.txt", "d.txt"]
    texts = {c["doc_id"]: c["text"] for c in delta_rows(tables, "chunks")}
    assert sorted(texts) == ["a.txt", "c.txt", "d.txt"] and texts["a.txt"].endswith("Updated.")
    assert sorted(d["doc_id"] for d in delta_rows(tables, "documents")) == ["a.txt", "c.txt", "d.txt"]

    r3 = run_embed(spark, settings, tables, progress=False)  # no commit since: nothing read, nothing written
    assert r3.changes_since == tables.version("raw_docs") + 1 and r3.documents_unchanged == 3
    assert (r3.documents_version, r3.chunks_version) == (r2.documents_version, r2.chunks_version)


def test_a_corpus_table_whose_changes_are_not_recorded_is_read_in_full(
    spark, settings, tables, chunked_ids, delta_rows
):
    name = _corpus_table(spark, tables, change_feed=False)
    settings.corpus.path = "raw_docs"
    r1 = run_embed(spark, settings, tables, progress=False)
    assert any("no change data feed" in n for n in r1.notes)
    spark.sql(f"INSERT INTO {name} VALUES ('d.txt', 'Written while the change data feed was off.')")
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    spark.sql(f"INSERT INTO {name} VALUES ('e.txt', 'Written after it was turned on.')")
    chunked_ids()
    r2 = run_embed(spark, settings, tables, progress=False)
    assert any("is not available: read in full" in n for n in r2.notes), r2.notes
    assert r2.changes_since is None and (r2.documents_new, r2.documents_unchanged) == (2, 3)
    assert chunked_ids() == ["d.txt", "e.txt"]
    assert sorted(d["doc_id"] for d in delta_rows(tables, "documents")) == [*sorted(TEXTS), "d.txt", "e.txt"]
