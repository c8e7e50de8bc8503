"""The LangChain FAISS export opens with load_local and answers like Lakechain's search."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.embeddings import Embeddings

from lakechain.index import build, export, search, store

DIM = 16


def vectors(seed: int, n: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def save(root, n: int, kind: str = "flat"):
    """A saved build of n random unit vectors under scattered global ids."""
    x = vectors(0, n)
    ids = np.random.default_rng(1).permutation(10**6)[:n].astype(np.int64) * 1_000_003
    plan = build.plan_index(n, DIM, kind, train_sample=n)
    index = build.train(plan, x if plan.needs_training else None)
    build.add(index, x, ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": [f"chunk-{i}" for i in ids],
            "doc_id": [f"doc-{i % 7}" for i in ids],
            "chunk_index": pa.array([int(i % 3) for i in ids], pa.int32()),
            "text": [f"the text of chunk {i}" for i in ids],
        }
    )
    source = {"table": "chunks", "name": "chunks", "path": "/lake/chunks", "version": 1}
    manifest = store.make_manifest(plan, index, "mini", source, shards=1, nprobe=8)
    return store.save_build(root, index, rows, manifest), x, ids


class FixedEmbeddings(Embeddings):
    """Embeds the texts it was built with into known vectors (stands in for the real model)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text].tolist()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_export_loads_in_langchain_and_agrees(tmp_path, kind):
    build_dir, x, ids = save(tmp_path / "index", n=1500, kind=kind)
    loaded = search.load(build_dir)
    out = export.export_langchain(loaded, tmp_path / "lc")
    assert {p.name for p in out.iterdir()} == {"index.faiss", "index.pkl", "lakechain_export.json"}

    queries = np.vstack([x[:3], vectors(99, 5)])
    emb = FixedEmbeddings({f"q{i}": v for i, v in enumerate(queries)})
    ip = DistanceStrategy.MAX_INNER_PRODUCT
    lc = FAISS.load_local(str(out), emb, allow_dangerous_deserialization=True, distance_strategy=ip)
    assert lc.index.ntotal == 1500 and len(lc.index_to_docstore_id) == 1500
    ours = loaded.search_chunks(queries, 6)
    for i, q in enumerate(queries):
        theirs = lc.similarity_search_with_score_by_vector(q.tolist(), k=6)
        assert [d.metadata["chunk_id"] for d, _ in theirs] == [h.chunk_id for h in ours[i]]
        assert [d.id for d, _ in theirs] == [h.chunk_id for h in ours[i]]
        assert [d.page_content for d, _ in theirs] == [h.text for h in ours[i]]
        assert [d.metadata["doc_id"] for d, _ in theirs] == [h.doc_id for h in ours[i]]
        np.testing.assert_allclose([s for _, s in theirs], [h.score for h in ours[i]], rtol=1e-5)
    # the text path and score thresholds work with the inner-product strategy
    first = lc.similarity_search_with_relevance_scores("q0", k=1)[0][0]
    assert first.metadata["vector_id"] == int(ids[0])
    # LangChain-native appends keep working (labels are positions, not vector ids)
    lc.add_embeddings([("a new text", queries[3].tolist())], metadatas=[{"chunk_id": "new"}])
    top = lc.similarity_search_with_score_by_vector(queries[3].tolist(), k=1)[0][0]
    assert top.page_content == "a new text"
    # the loaded Lakechain index was not modified by the export
    assert loaded.search_chunks(x[:1], 1)[0][0].vector_id == ids[0]
    assert build.ids_of(loaded.index).min() == ids.min()


def test_export_from_a_directory(tmp_path):
    root = tmp_path / "index"
    save(root, n=50)
    out = export.export_langchain(root, tmp_path / "lc")
    lc = FAISS.load_local(str(out), FixedEmbeddings({}), allow_dangerous_deserialization=True)
    assert lc.index.ntotal == 50
    assert store.read_pointer(root) is not None
