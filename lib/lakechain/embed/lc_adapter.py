"""An ``Embedder`` as a LangChain ``Embeddings``; apart so that embedding needs no langchain_core."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from lakechain.embed.embedders import Embedder


class LakechainEmbeddings(Embeddings):
    """An ``Embedder`` seen as a LangChain ``Embeddings`` (vector stores, retrievers)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed([text])[0].tolist()

    def __repr__(self) -> str:
        return f"LakechainEmbeddings({self.inner.name!r})"
