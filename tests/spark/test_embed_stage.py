"""The Spark embed stage: seed texts, bad input, incremental runs, remote provider faults, crash safety."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lakechain.embed import stage as embed_stage
from lakechain.embed.chunking import vector_id
from lakechain.embed.stage import run_embed
from lakechain.errors import UserError
from lakechain.testing.openai_server import FakeOpenAIServer

SEED = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def chunks_table(delta_rows):
    """``tables`` → {"rows": chunks rows, "n": their count}, read as a third-party reader would."""

    def read(tables) -> dict:
        rows = delta_rows(tables, "chunks")
        return {"rows": rows, "n": len(rows)}

    return read


@pytest.fixture
def errors_of(delta_rows):
    """``(tables, run_id)`` → that run's ``ingest_errors`` rows."""
    return lambda tables, run_id: [r for r in delta_rows(tables, "ingest_errors") if r["run_id"] == run_id]


def test_seed_texts_bad_input_and_incremental(
    spark, settings, tables, tmp_path, chunks_table, errors_of, delta_rows
):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "seed.jsonl", [{"id": str(i + 1), "text": t} for i, t in enumerate(SEED)])
    with (corpus / "seed.jsonl").open("a") as fh:
        fh.write('{"id": "broken", "text": \n{"id": "1", "text": "dup"}\n')
    (corpus / "empty.txt").write_text("   \n\n ")
    (corpus / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (corpus / "big.md").write_text("word " * 400)
    settings.corpus.path = str(corpus)
    settings.corpus.max_document_bytes = 1000

    r1 = run_embed(spark, settings, tables, progress=False)
    assert r1.documents_seen == 3 and r1.documents_new == 3
    assert r1.chunks_embedded == 3 and r1.chunk_errors == 0
    chunks = chunks_table(tables)
    assert chunks["n"] == 3
    by_doc = {r["doc_id"]: r for r in chunks["rows"]}
    assert [by_doc[str(i + 1)]["text"] for i in range(3)] == SEED
    emb = np.array([by_doc[str(i + 1)]["embedding"] for i in range(3)], dtype=np.float32)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for r in chunks["rows"]:
        assert r["dim"] == 384 and r["model"] == "all-MiniLM-L6-v2"
        assert r["vector_id"] == vector_id(r["chunk_id"]) and r["chunk_index"] == 0
    # semantically sensible: the two LLM sentences are closer to each other than to Databricks
    sims = emb @ emb.T
    assert sims[1, 2] > sims[0, 2]

    errs = errors_of(tables, r1.run_id)
    reasons = {e["source"].split(":")[0] + "|" + e["reason"].split(" (")[0]: e for e in errs}
    assert r1.document_errors == len(errs) == 6, errs
    text = " ".join(e["reason"] for e in errs)
    for needle in (
        "malformed JSON",
        "duplicate doc_id",
        "empty document",
        "not valid UTF-8",
        "unsupported file type .png",
        "over corpus.max_document_bytes",
    ):
        assert needle in text, (needle, reasons)
    assert all(e["stage"] == "ingest" and e["created_at"] is not None for e in errs)

    # unchanged → nothing embedded, nothing removed
    r2 = run_embed(spark, settings, tables, progress=False)
    assert (r2.chunks_embedded, r2.chunks_removed, r2.documents_unchanged) == (0, 0, 3)
    assert r2.chunks_version == r1.chunks_version
    assert r2.documents_version == r1.documents_version  # identical snapshot: no commit

    # doc 2 changed and doc 3 deleted → only doc 2's chunk re-embedded; stale chunks removed
    write_jsonl(
        corpus / "seed.jsonl",
        [{"id": "1", "text": SEED[0]}, {"id": "2", "text": SEED[1] + " It is popular."}],
    )
    r3 = run_embed(spark, settings, tables, progress=False)
    assert r3.documents_version == r2.documents_version + 1
    counts = (r3.documents_changed, r3.documents_unchanged, r3.documents_deleted)
    assert counts == (1, 1, 1) and (r3.chunks_embedded, r3.chunks_removed, r3.chunks_kept) == (1, 2, 1)
    rows = {r["doc_id"]: r for r in chunks_table(tables)["rows"]}
    assert sorted(rows) == ["1", "2"] and rows["2"]["text"].endswith("popular.")
    assert rows["1"]["chunk_id"] == by_doc["1"]["chunk_id"]
    assert rows["1"]["embedded_at"] == by_doc["1"]["embedded_at"]  # kept, not re-embedded
    docs = delta_rows(tables, "documents")
    assert sorted(d["doc_id"] for d in docs) == ["1", "2"]
    assert all(d["content_hash"] and dict(d["metadata"])["path"] == "seed.jsonl" for d in docs)


def _remote_settings(settings, srv, corpus: Path, batch_size: int = 2):
    settings.corpus.path = str(corpus)
    settings.embedding.provider = "openai_compatible"
    settings.embedding.model = "fake-embed"
    settings.embedding.base_url = srv.url
    settings.embedding.batch_size = batch_size
    settings.embedding.max_retries = 2
    return settings


def test_openai_compatible_retry_failure_rows_and_crash_safety(
    spark, settings, tables, tmp_path, monkeypatch, chunks_table, errors_of
):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, t in enumerate(SEED):
        (corpus / f"doc{i}.txt").write_text(t)
    with FakeOpenAIServer(retry_after="0.01") as srv:
        _remote_settings(settings, srv, corpus, batch_size=8)
        srv.script("429")  # first request rate-limited, then success
        r1 = run_embed(spark, settings, tables, progress=False)
        assert r1.chunks_embedded == 3 and r1.chunk_errors == 0
        assert srv.fault_counts["429"] == 1 and srv.counts["/v1/embeddings"] >= 2
        rows = chunks_table(tables)["rows"]
        assert {r["model"] for r in rows} == {"fake-embed"} and {r["dim"] for r in rows} == {384}
        sent = [x for body in srv.requests_for("/v1/embeddings") for x in body["input"]]
        assert set(sent) == set(SEED)  # raw strings, not token ids

        # a batch failing after its retries → error rows, the rest committed, retried next run
        for i, t in enumerate(SEED):
            (corpus / f"doc{i}.txt").write_text(t + " Revised.")
        settings.embedding.batch_size = 1
        settings.embedding.max_retries = 0
        srv.reset()
        srv.script("500")
        r2 = run_embed(spark, settings, tables, progress=False)
        assert (r2.chunks_embedded, r2.chunk_errors) == (2, 1)
        errs = [e for e in errors_of(tables, r2.run_id) if e["stage"] == "embed"]
        assert len(errs) == 1 and "InternalServerError" in errs[0]["reason"]
        # A crash before the chunks commit leaves them as they were. The new chunk and the
        # removal of the replaced ones land in one commit: a crash after it, before
        # ``documents`` is written, leaves no duplicate and no stale chunk, and the rerun
        # converges (embedding the chunk that failed above, with nothing left to remove).
        (corpus / "doc0.txt").write_text("Completely new text about Delta Lake.")
        (corpus / "doc2.txt").unlink()
        before = sorted(r["chunk_id"] for r in chunks_table(tables)["rows"])

        def crash(*a, **k):
            raise RuntimeError("simulated crash")

        monkeypatch.setattr(tables, "merge", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_embed(spark, settings, tables, progress=False)
        assert sorted(r["chunk_id"] for r in chunks_table(tables)["rows"]) == before
        monkeypatch.undo()
        monkeypatch.setattr(embed_stage, "_write_documents", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_embed(spark, settings, tables, progress=False)
        after_crash = chunks_table(tables)["rows"]
        assert sorted(r["doc_id"] for r in after_crash) == ["doc0.txt", "doc1.txt"]
        monkeypatch.undo()
        r4 = run_embed(spark, settings, tables, progress=False)
        assert (r4.chunks_embedded, r4.chunks_removed, r4.documents_deleted) == (0, 0, 1)
        rows = chunks_table(tables)["rows"]
        assert max(Counter(r["chunk_id"] for r in rows).values()) == 1
        assert sorted(r["doc_id"] for r in rows) == ["doc0.txt", "doc1.txt"]
        assert {r["text"] for r in rows} == {"Completely new text about Delta Lake.", SEED[1] + " Revised."}


def test_table_corpus_and_model_switch(spark, settings, tables, tmp_path, chunks_table):
    src = spark.createDataFrame(
        [("a", SEED[0]), ("b", SEED[1]), ("b", "duplicate"), ("c", None)], "id string, text string"
    )
    tables.write(src, "raw_docs")
    with FakeOpenAIServer() as srv:
        _remote_settings(settings, srv, tmp_path)
        settings.corpus.path = "raw_docs"
        r1 = run_embed(spark, settings, tables, progress=False)
        assert (r1.documents_seen, r1.document_errors, r1.chunks_embedded) == (2, 2, 2)
        settings.embedding.dimensions = 16  # a different model name → old vectors replaced
        r2 = run_embed(spark, settings, tables, progress=False)
        rows = chunks_table(tables)["rows"]
        assert r2.chunks_embedded == 2 and {(r["model"], r["dim"]) for r in rows} == {("fake-embed@16", 16)}
        assert len(rows) == 2
        # Any catalog table works as the corpus too (on Databricks: main.sales.documents).
        spark.createDataFrame([("z", SEED[2])], "doc_id string, text string").createOrReplaceGlobalTempView(
            "lc_corpus"
        )
        settings.corpus.path = "global_temp.lc_corpus"
        settings.corpus.max_delete_fraction = 1.0  # this switch deletes both earlier documents on purpose
        r3 = run_embed(spark, settings, tables, progress=False)
        assert (r3.documents_seen, r3.chunks_embedded, r3.chunks_removed) == (1, 1, 2)


def _two_documents(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, t in enumerate(SEED[:2]):
        (corpus / f"doc{i}.txt").write_text(t)
    return corpus


def test_an_empty_corpus_is_refused_before_anything_is_deleted(
    spark, settings, tables, tmp_path, chunks_table
):
    settings.corpus.path = str(_two_documents(tmp_path))
    run_embed(spark, settings, tables, progress=False)
    before = tables.version("chunks")
    empty = tmp_path / "empty"
    empty.mkdir()
    settings.corpus.path = str(empty)
    with pytest.raises(
        UserError, match=r"holds no documents.*delete the 2 documents.*corpus.allow_empty=true"
    ):
        run_embed(spark, settings, tables, progress=False)
    assert tables.version("chunks") == before and chunks_table(tables)["n"] == 2


def test_deleting_most_of_the_corpus_needs_the_override(spark, settings, tables, tmp_path):
    corpus = _two_documents(tmp_path)
    settings.corpus.path = str(corpus)
    run_embed(spark, settings, tables, progress=False)
    for f in corpus.iterdir():
        f.unlink()
    (corpus / "new.txt").write_text("Only a new document.")
    with pytest.raises(UserError, match=r"would delete 2 of 2 documents.*corpus.max_delete_fraction=1"):
        run_embed(spark, settings, tables, progress=False)
    settings.corpus.max_delete_fraction = 1.0
    assert run_embed(spark, settings, tables, progress=False).documents_deleted == 2


def test_an_unknown_model_fails_before_any_write(spark, settings, tables, tmp_path):
    settings.corpus.path = str(_two_documents(tmp_path))
    run_embed(spark, settings, tables, progress=False)
    before = tables.version("chunks")
    settings.embedding.model = "all-mpnet-base-v2"
    with pytest.raises(UserError, match="embedding.model 'all-mpnet-base-v2'"):
        run_embed(spark, settings, tables, progress=False)
    assert tables.version("chunks") == before
