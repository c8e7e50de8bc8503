"""Hybrid retrieval in the retriever and the extractive answerer (stub embedder: no model)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lakechain.chains.local_chat import ExtractiveChatModel
from lakechain.chains.prompts import NOT_IN_CONTEXT
from lakechain.chains.retriever import InMemorySearcher, LakechainRetriever
from lakechain.config import RetrievalConfig
from lakechain.index.errors import KeywordIndexMissingError

VAGUE = "Test cases report failures through an exception class."
EXACT = "failureException is AssertionError: the exception raised when an assertion fails."
OTHER = "Templates substitute $name placeholders in strings."
QUESTION = "Which exception signals an AssertionError in a test?"


class StubEmbedder:
    """Fixed unit vectors per text: VAGUE is nearest the question, EXACT a little further."""

    name, dim = "stub", 3

    def __init__(self):
        self.calls = []
        self.table = {
            QUESTION: [1.0, 0.0, 0.0],
            VAGUE: [0.9, 0.43, 0.0],
            EXACT: [0.8, 0.6, 0.0],
            OTHER: [0.0, 0.0, 1.0],
        }

    def embed(self, texts):
        self.calls.append(list(texts))
        x = np.array([self.table.get(t, [0.0, -1.0, 0.0]) for t in texts], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


class Counting:
    def __init__(self, inner, keyword=True):
        self.inner, self.dense_calls, self.keyword_calls = inner, [], []
        self.has_keyword = keyword
        self.keyword_missing = "" if keyword else "build X has no keyword side: run `lakechain index`"

    def search_chunks(self, matrix, k):
        self.dense_calls.append(np.asarray(matrix).shape)
        return self.inner.search_chunks(matrix, k)

    def search_keyword(self, queries, k):
        self.keyword_calls.append(len(queries))
        return self.inner.search_keyword(queries, k)


def retriever(mode, keyword=True, **kw):
    emb = StubEmbedder()
    texts = [VAGUE, EXACT, OTHER]
    searcher = Counting(
        InMemorySearcher(emb.embed(texts), texts, doc_ids=["vague", "exact", "other"]), keyword
    )
    emb.calls.clear()
    cfg = RetrievalConfig(mode=mode, k=2, score_threshold=0.5, fetch_k=3, **kw)
    return LakechainRetriever.from_settings(cfg, emb, searcher), emb, searcher


def doc_ids(docs):
    return [d.metadata["doc_id"] for d in docs]


def test_modes_rank_differently_and_hybrid_fuses_both():
    dense, _, _ = retriever("dense")
    assert doc_ids(dense.invoke(QUESTION)) == ["vague", "exact"]
    keyword, emb, _ = retriever("keyword")
    assert doc_ids(keyword.invoke(QUESTION))[0] == "exact"
    assert emb.calls == []  # keyword mode without MMR embeds nothing
    hybrid, _, _ = retriever("hybrid", keyword_weight=2.0)
    docs = hybrid.invoke(QUESTION)
    assert doc_ids(docs) == ["exact", "vague"]
    top = docs[0].metadata
    assert top["keyword_score"] > 0 and top["dense_score"] == pytest.approx(0.8, abs=1e-3)
    # one chunk per document: the document's fused score (doc_weight 0.5) equals the chunk's
    assert top["score"] == pytest.approx(1.5 * (2 / 61 + 1 / 62))


def test_hybrid_respects_the_dense_floor_but_keeps_keyword_matches():
    hybrid, _, _ = retriever("hybrid")
    docs = hybrid.invoke("Which placeholders does a Template substitute?")
    # dense: every text is below the 0.5 floor for this (unknown) question; keyword finds OTHER
    assert doc_ids(docs) == ["other"]


def test_one_embedding_one_matrix_search_one_keyword_pass_per_batch():
    hybrid, emb, searcher = retriever("hybrid")
    out = hybrid.retrieve_many([QUESTION, "Template placeholders?", "nothing at all here"])
    assert len(out) == 3 and len(emb.calls) == 1 and len(emb.calls[0]) == 3
    assert searcher.dense_calls == [(3, 3)] and searcher.keyword_calls == [3]


def test_builds_without_keyword_side(caplog):
    hybrid, _, searcher = retriever("hybrid", keyword=False)
    with caplog.at_level(logging.WARNING):
        assert doc_ids(hybrid.invoke(QUESTION)) == ["vague", "exact"]
        hybrid.invoke(QUESTION)
    warnings = [r for r in caplog.records if "retrieving with dense vectors only" in r.getMessage()]
    assert len(warnings) == 1 and "lakechain index" in warnings[0].getMessage()
    assert searcher.keyword_calls == []
    keyword, _, _ = retriever("keyword", keyword=False)
    with pytest.raises(KeywordIndexMissingError, match="retrieval.mode is keyword but build X"):
        keyword.invoke(QUESTION)


def test_extractive_answerer_quotes_the_sentence_naming_the_exact_term():
    passages = [(1, f"{VAGUE} {OTHER}"), (2, EXACT)]
    dense_only = ExtractiveChatModel(embedder=StubEmbedder(), max_sentences=1)
    assert dense_only.answer(QUESTION, passages) == f"{VAGUE} [1]"
    hybrid = ExtractiveChatModel(embedder=StubEmbedder(), max_sentences=1, keyword_weight=2.0)
    assert hybrid.answer(QUESTION, passages) == f"{EXACT} [2]"
    two = ExtractiveChatModel(embedder=StubEmbedder(), max_sentences=2, keyword_weight=2.0, margin=0.2)
    assert two.answer(QUESTION, passages) == f"{EXACT} [2] {VAGUE} [1]"
    # the floor still decides "not in context": a shared word alone is not an answer
    assert hybrid.answer("Which exception is it?", [(1, OTHER)]) == NOT_IN_CONTEXT


def test_chat_model_follows_the_retrieval_mode():
    from lakechain.chains.chat_models import make_chat_model
    from lakechain.config import ChatConfig

    for mode, weights in [("dense", (1.0, 0.0)), ("keyword", (0.0, 1.0)), ("hybrid", (1.0, 3.0))]:
        cfg = RetrievalConfig(mode=mode, keyword_weight=3.0)
        model = make_chat_model(ChatConfig(), embedder=StubEmbedder(), retrieval=cfg)
        assert (model.dense_weight, model.keyword_weight) == weights


def test_sentences_end_at_margin_paragraph_breaks():
    from lakechain.chains.local_chat import split_sentences

    pydoc = (
        "Data inherited from TestCase:\n |\n |  failureException = <class 'AssertionError'>\n"
        " |      Assertion failed.\n |\n |  maxDiff = 640"
    )
    assert split_sentences(pydoc) == [
        "Data inherited from TestCase:",
        "failureException = <class 'AssertionError'> | Assertion failed.",
        "maxDiff = 640",
    ]
    assert split_sentences("Same as a | b. Not a break | here.") == ["Same as a | b.", "Not a break | here."]
