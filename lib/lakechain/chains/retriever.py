"""A LangChain retriever over the Lakechain FAISS index (or any ``ChunkSearcher``).

Why a custom retriever rather than ``langchain_community``'s FAISS store: the index is built
by Spark with global int64 ids and lives next to a parquet id map, and the task stage asks
thousands of questions at once. ``retrieve_many`` embeds every question in one call and
searches them as ONE matrix, which is far faster than a per-question ``invoke`` loop;
``invoke``/``batch`` go through the same code so behaviour is identical.

``mode`` (``settings.retrieval.mode``) picks the ranking: ``dense`` (cosine of L2-normalised
vectors; hits below ``score_threshold`` are dropped, so a question with nothing relevant
retrieves nothing and the QA chain can say "not in context" instead of guessing),
``keyword`` (BM25 from the build's keyword side, one pass for the whole batch) or
``hybrid`` (both, fused by weighted reciprocal rank fusion, ``lakechain.index.fusion``;
a document's ``score`` is then the fused score, its cosine and BM25 scores are in
``dense_score``/``keyword_score``). A build without a keyword side serves ``hybrid`` as
``dense`` with one warning naming the fix, and refuses ``keyword``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from pydantic import ConfigDict, Field, PrivateAttr

from lakechain.index.errors import KeywordIndexMissingError
from lakechain.index.fusion import fuse_hits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """Same fields as ``lakechain.index``'s ``Hit``: any object with these attributes works."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    vector_id: int


@runtime_checkable
class ChunkSearcher(Protocol):
    """What the retriever needs from an index: batched top-k search returning chunk hits."""

    def search_chunks(self, matrix: np.ndarray, k: int) -> list[list[Any]]: ...


@runtime_checkable
class KeywordSearcher(Protocol):
    """What hybrid and keyword retrieval need besides ``search_chunks``: BM25 in one batch."""

    has_keyword: bool

    def search_keyword(self, queries: list[str], k: int) -> list[list[Any]]: ...


class InMemorySearcher:
    """A small exact FAISS (inner-product) index held in memory, for notebooks and tests.

    The production index (``lakechain.index``) offers the same ``search_chunks`` and is what
    ``build_chains`` loads; this one is built in-process from texts or vectors.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        texts: Sequence[str],
        chunk_ids: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> None:
        import faiss

        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if x.ndim != 2 or len(x) != len(texts):
            raise ValueError(f"vectors {x.shape} do not match {len(texts)} texts")
        self.texts = list(texts)
        self.chunk_ids = list(chunk_ids) if chunk_ids is not None else [f"chunk-{i}" for i in range(len(x))]
        self.doc_ids = list(doc_ids) if doc_ids is not None else [f"doc-{i}" for i in range(len(x))]
        self.vectors = x
        self.index = faiss.IndexFlatIP(x.shape[1])
        self.index.add(x)
        self._keyword: Any = None

    has_keyword = True

    def search_keyword(self, queries: list[str], k: int) -> list[list[SearchHit]]:
        """BM25 over the texts (the same ``lakechain.index.keyword`` as index builds)."""
        from lakechain.index.keyword import KeywordIndex

        if self._keyword is None:
            self._keyword = KeywordIndex.build(self.texts)
        scores, positions = self._keyword.search(queries, k)
        return [
            [
                SearchHit(self.chunk_ids[i], self.doc_ids[i], self.texts[i], float(s), int(i))
                for s, i in zip(row_s, row_i, strict=True)
                if i >= 0
            ]
            for row_s, row_i in zip(scores, positions, strict=True)
        ]

    @classmethod
    def from_texts(
        cls,
        embedder: Any,
        texts: Sequence[str],
        chunk_ids: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> InMemorySearcher:
        return cls(embedder.embed(list(texts)), texts, chunk_ids, doc_ids)

    def search_chunks(self, matrix: np.ndarray, k: int) -> list[list[SearchHit]]:
        q = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
        k = min(k, self.index.ntotal)
        if k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        scores, ids = self.index.search(q, k)
        return [
            [
                SearchHit(self.chunk_ids[i], self.doc_ids[i], self.texts[i], float(s), int(i))
                for s, i in zip(row_s, row_i, strict=True)
                if i >= 0
            ]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def reconstruct(self, vector_ids: Sequence[int]) -> np.ndarray:
        return self.vectors[np.asarray(vector_ids, dtype=np.int64)]


def hit_to_document(hit: Any) -> Document:
    """A LangChain ``Document`` with ``chunk_id``, ``doc_id``, ``score`` (and ids) in metadata."""
    metadata: dict[str, Any] = {
        "chunk_id": str(hit.chunk_id),
        "doc_id": "" if hit.doc_id is None else str(hit.doc_id),
        "score": float(hit.score),
        "vector_id": int(hit.vector_id),
    }
    chunk_index = getattr(hit, "chunk_index", None)
    if chunk_index is not None:
        metadata["chunk_index"] = int(chunk_index)
    for key in ("dense_score", "keyword_score"):
        value = getattr(hit, key, None)
        if value is not None:
            metadata[key] = float(value)
    return Document(page_content="" if hit.text is None else str(hit.text), metadata=metadata)


class LakechainRetriever(BaseRetriever):
    """Top-k chunks for a question: dense, keyword or hybrid ranking, a score floor, optional MMR."""

    embedder: Any = Field(exclude=True)
    """``embed(list[str]) -> (n, dim)`` L2-normalised float32 (``lakechain.embed.embedders.Embedder``)."""
    searcher: Any = Field(exclude=True)
    """A :class:`ChunkSearcher` (``lakechain.index`` ``LoadedIndex`` or :class:`InMemorySearcher`)."""
    k: int = 4
    score_threshold: float | None = 0.25
    mmr: bool = False
    fetch_k: int = 20
    mmr_lambda: float = 0.5
    mode: Literal["dense", "keyword", "hybrid"] = "dense"
    rrf_k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    doc_weight: float = 0.5

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _warned: bool = PrivateAttr(default=False)

    @classmethod
    def from_settings(cls, retrieval: Any, embedder: Any, searcher: Any) -> LakechainRetriever:
        """From ``settings.retrieval`` (mode, k, score floor, MMR, fetch_k, rrf_k and weights)."""
        return cls(
            embedder=embedder,
            searcher=searcher,
            k=retrieval.k,
            score_threshold=retrieval.score_threshold,
            mmr=retrieval.mmr,
            fetch_k=retrieval.fetch_k,
            mmr_lambda=retrieval.mmr_lambda,
            mode=retrieval.mode,
            rrf_k=retrieval.rrf_k,
            dense_weight=retrieval.dense_weight,
            keyword_weight=retrieval.keyword_weight,
            doc_weight=retrieval.doc_weight,
        )

    def effective_mode(self) -> Literal["dense", "keyword", "hybrid"]:
        """``mode``, or ``dense`` for hybrid on a searcher without a keyword side (warned once)."""
        if self.mode == "dense" or getattr(self.searcher, "has_keyword", False):
            return self.mode
        why = getattr(self.searcher, "keyword_missing", "") or "the searcher has no keyword search"
        if self.mode == "keyword":
            raise KeywordIndexMissingError(f"retrieval.mode is keyword but {why}")
        if not self._warned:
            log.warning("retrieval.mode is hybrid but %s; retrieving with dense vectors only", why)
            self._warned = True
        return "dense"

    def _hit_vectors(self, hits: list[Any]) -> np.ndarray:
        reconstruct = getattr(self.searcher, "reconstruct", None)
        if callable(reconstruct):
            try:
                return np.asarray(reconstruct([int(h.vector_id) for h in hits]), dtype=np.float32)
            except (RuntimeError, IndexError, ValueError):
                pass  # IVF-PQ etc. cannot reconstruct exactly: re-embed the texts instead
        return np.asarray(self.embedder.embed([str(h.text or "") for h in hits]), dtype=np.float32)

    def _select(
        self, mode: str, query_vec: np.ndarray | None, dense: list[Any], keyword: list[Any], fetch: int
    ) -> list[Document]:
        if self.score_threshold is not None:
            dense = [h for h in dense if float(h.score) >= self.score_threshold]
        if mode == "dense":
            hits = dense
        elif mode == "keyword":
            hits = keyword
        else:
            hits = list(
                fuse_hits(
                    dense, keyword, fetch, self.rrf_k, self.dense_weight, self.keyword_weight, self.doc_weight
                )
            )
        if self.mmr and len(hits) > 1 and query_vec is not None:
            vecs = self._hit_vectors(hits)
            order = maximal_marginal_relevance(
                query_vec, vecs.tolist(), lambda_mult=self.mmr_lambda, k=self.k
            )
            hits = [hits[i] for i in order]
        return [hit_to_document(h) for h in hits[: self.k]]

    def retrieve_many(self, questions: Sequence[str]) -> list[list[Document]]:
        """Retrieve for many questions with ONE embedding call, ONE matrix search and ONE
        keyword pass (each only where the mode needs it)."""
        questions = list(questions)
        if not questions:
            return []
        bad = [i for i, q in enumerate(questions) if not isinstance(q, str) or not q.strip()]
        if bad:
            raise ValueError(f"questions at positions {bad[:10]} are empty or not strings")
        mode = self.effective_mode()
        fetch = max(self.k, self.fetch_k) if (self.mmr or mode == "hybrid") else self.k
        none: list[list[Any]] = [[] for _ in questions]
        matrix = None
        if mode != "keyword" or self.mmr:
            matrix = np.asarray(self.embedder.embed(questions), dtype=np.float32)
        dense = self.searcher.search_chunks(matrix, fetch) if mode != "keyword" else none
        keyword = self.searcher.search_keyword(questions, fetch) if mode != "dense" else none
        return [
            self._select(mode, None if matrix is None else matrix[i], list(d), list(w), fetch)
            for i, (d, w) in enumerate(zip(dense, keyword, strict=True))
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return self.retrieve_many([query])[0]

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Batched retrieval through :meth:`retrieve_many` (one search, not one per input)."""
        if return_exceptions:
            return super().batch(inputs, config, return_exceptions=True, **kwargs)
        return self.retrieve_many(inputs)
