"""Reciprocal rank fusion of dense and keyword rankings."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lakechain.index.fusion import fuse_hits, rrf_scores


@dataclass
class H:
    vector_id: int
    score: float
    chunk_id: str = ""
    doc_id: str | None = None
    text: str | None = None


def test_rrf_scores_sum_weighted_reciprocal_ranks():
    fused = dict(rrf_scores([["a", "b", "c"], ["c", "a"]], [1.0, 2.0], rrf_k=10))
    assert fused["a"] == pytest.approx(1 / 11 + 2 / 12)
    assert fused["b"] == pytest.approx(1 / 12)
    assert fused["c"] == pytest.approx(1 / 13 + 2 / 11)


def test_rrf_orders_best_first_and_breaks_ties_by_best_rank():
    order = [k for k, _ in rrf_scores([["a", "b"], ["b", "a"]], [1.0, 1.0], 60)]
    assert order == ["a", "b"]  # equal scores: a is first in the first ranking
    order = [k for k, _ in rrf_scores([["x", "y", "z"], ["z"]], [1.0, 1.0], 60)]
    assert order == ["z", "x", "y"]  # in both lists beats first in one


def test_a_key_counts_once_per_ranking_and_zero_weight_ignores_a_ranking():
    assert dict(rrf_scores([["a", "a"]], [1.0], 60))["a"] == pytest.approx(1 / 61)
    order = [k for k, _ in rrf_scores([["a", "b"], ["b"]], [1.0, 0.0], 60)]
    assert order == ["a", "b"]
    with pytest.raises(ValueError, match="2 rankings but 1 weights"):
        rrf_scores([[], []], [1.0], 60)


def test_fuse_hits_keeps_both_scores_and_top_k():
    dense = [H(1, 0.9, "c1"), H(2, 0.8, "c2"), H(3, 0.7, "c3")]
    keyword = [H(3, 12.0, "c3"), H(4, 7.5, "c4")]
    fused = fuse_hits(dense, keyword, k=3)
    assert [h.vector_id for h in fused] == [3, 1, 2]
    assert fused[0].dense_score == pytest.approx(0.7) and fused[0].keyword_score == pytest.approx(12.0)
    assert fused[1].keyword_score is None and fused[0].chunk_id == "c3"
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert fuse_hits([], [], k=5) == []


def test_document_evidence_lifts_a_document_both_sides_found_through_different_chunks():
    """The eval's q009, as measured: dense puts chunk a1 of A first, BM25 chunk a2 of A; a
    chunk of B is third in both lists, so chunk RRF alone ranks it first."""
    dense = [H(1, 0.50, "a1", "A"), H(2, 0.45, "t", "T"), H(3, 0.43, "b1", "B"), H(4, 0.4, "c", "C"),
             H(5, 0.4, "x", "X"), H(6, 0.39, "a2", "A")]  # fmt: skip
    keyword = [H(6, 5.2, "a2", "A"), H(7, 5.0, "z", "Z"), H(3, 4.7, "b1", "B"), H(8, 4.6, "s", "S")]
    assert fuse_hits(dense, keyword, k=1)[0].chunk_id == "b1"
    top = fuse_hits(dense, keyword, k=2, doc_weight=0.5)
    assert [h.chunk_id for h in top] == ["a2", "b1"]
    assert top[0].score == pytest.approx(1 / 66 + 1 / 61 + 0.5 * (1 / 61 + 1 / 61))


def test_chunks_without_a_document_get_no_document_evidence():
    dense = [H(1, 0.5, "x", None), H(2, 0.4, "a1", "A")]
    fused = fuse_hits(dense, [], k=2, doc_weight=1.0)
    assert [h.chunk_id for h in fused] == ["a1", "x"]
    assert fused[1].score == pytest.approx(1 / 61)
