"""``lakechain eval`` end to end on Spark: questions in, one eval_results row per question and mode."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from lakechain.chains.retriever import InMemorySearcher
from lakechain.eval.metrics import EvalSetError
from lakechain.eval.stage import run_eval
from lakechain.storage.schemas import EVAL_RESULTS

TEXTS = {
    "unittest.txt": "failureException is AssertionError, raised when a test assertion fails.",
    "testing.txt": "Test cases report failures through an exception class of their own.",
    "string.txt": "Template strings substitute $name placeholders.",
}


class HashEmbedder:
    """Bag-of-words hashing into 1024 dims: deterministic and instant (no model download)."""

    name, dim = "hash-1024", 1024

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace("?", " ").replace(".", " ").replace(",", " ").split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        out[:, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_eval_writes_one_row_per_question_and_mode(spark, settings, tables, tmp_path):
    questions = tmp_path / "q.jsonl"
    rows = [
        {"id": "a", "question": "What is AssertionError for in a test?", "expected_docs": ["unittest"],
         "key_phrase": "AssertionError"},
        {"id": "b", "question": "How do Template strings substitute placeholders?",
         "expected_docs": ["string"],
         "key_phrase": "$name"},
        {"id": "c", "question": "What is the capital of France?", "key_phrase": "Paris"},
    ]  # fmt: skip
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    embedder = HashEmbedder()
    searcher = InMemorySearcher(
        embedder.embed(list(TEXTS.values())), list(TEXTS.values()), doc_ids=list(TEXTS)
    )
    settings.retrieval.score_threshold = 0.2
    report = run_eval(
        spark,
        settings,
        tables,
        str(questions),
        ["dense", "keyword", "hybrid"],
        searcher=searcher,
        embedder=embedder,
    )
    assert report.rows == 9 and report.errors == 0 and report.table_version is not None
    df = tables.read(EVAL_RESULTS)
    got = {(r["mode"], r["question_id"]): r for r in df.collect()}
    assert len(got) == 9 and {r["run_id"] for r in got.values()} == {report.run_id}
    a = got[("hybrid", "a")]
    assert a["retrieved_docs"][0] == "unittest.txt" and a["rank"] == 1 and a["hit_at_1"] is True
    assert "AssertionError" in a["answer"] and a["key_phrase_found"] is True
    assert a["cited_docs"] == ["unittest.txt"] and a["citation_precision"] == 1.0
    assert json.loads(a["config"])["mode"] == "hybrid"
    c = got[("dense", "c")]
    assert c["hit_at_1"] is None and c["rank"] is None  # no expected docs: not a retrieval miss
    assert c["not_in_context"] is True and c["key_phrase_found"] is False
    for mode in ("dense", "keyword", "hybrid"):
        assert report.summaries[mode]["questions"] == 3
    assert report.summaries["hybrid"]["hit_at_1"] == 1.0
    assert "hybrid" in str(report) and EVAL_RESULTS in str(report)
    # a second run appends: runs compare with SQL
    run_eval(spark, settings, tables, str(questions), ["dense"], searcher=searcher, embedder=embedder)
    assert tables.read(EVAL_RESULTS).count() == 12


def test_questions_from_a_table_and_bad_sources(spark, settings, tables):
    df = spark.createDataFrame(
        [("t1", "What substitutes $name placeholders?", ["string"], None)],
        "id string, question string, expected_docs array<string>, key_phrase string",
    )
    tables.write(df, "my_questions", mode="overwrite")
    embedder = HashEmbedder()
    searcher = InMemorySearcher(
        embedder.embed(list(TEXTS.values())), list(TEXTS.values()), doc_ids=list(TEXTS)
    )
    report = run_eval(
        spark,
        settings,
        tables,
        "my_questions",
        ["keyword"],
        write=False,
        searcher=searcher,
        embedder=embedder,
    )
    assert report.rows == 1 and report.table_version is None and not tables.exists(EVAL_RESULTS)
    assert report.summaries["keyword"]["hit_at_1"] == 1.0
    with pytest.raises(EvalSetError, match="no such file or table"):
        run_eval(
            spark, settings, tables, "no_such_questions", ["dense"], searcher=searcher, embedder=embedder
        )
