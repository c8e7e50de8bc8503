"""Export a build as a LangChain ``FAISS`` vector store directory (notebook interop).

LangChain's FAISS store assumes FAISS labels are positions 0..n-1 (it appends with
``index.add`` and maps labels through ``index_to_docstore_id``), while Lakechain labels
are global vector_ids. The export therefore re-labels: vectors are numbered by their rank
in vector_id order, and ``index_to_docstore_id[rank] = chunk_id``. Flat builds export a
plain ``IndexFlatIP`` of the same vectors; IVF builds keep their inverted lists
with the ids rewritten in place (on a copy). The directory is written with LangChain's own
``save_local`` so the pickle format is exactly what ``load_local`` expects::

    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    store = FAISS.load_local(out_dir, embeddings, allow_dangerous_deserialization=True,
                             distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)

The distance strategy is not part of LangChain's saved format: pass it to ``load_local``
as above, or scores still come back as inner products but relevance scores and
``score_threshold`` comparisons would be treated as distances.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lakechain.index import build
from lakechain.index.errors import IndexBuildError
from lakechain.index.search import LoadedIndex, load

EXPORT_NOTE = "lakechain_export.json"
_NOTE_KEYS = ("build_id", "model", "dim", "count", "source")


def _positional_index(loaded: LoadedIndex) -> tuple[faiss.Index, np.ndarray]:
    """A copy of the index labelled by rank, and the vector_id of each rank."""
    sorted_ids = loaded.rows.column("vector_id").to_numpy()
    if isinstance(loaded.index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        # The inner flat index stores vectors in id_map order: copy them into a plain one.
        inner = faiss.downcast_index(loaded.index.index)
        flat = faiss.IndexFlatIP(loaded.index.d)
        flat.add(inner.reconstruct_n(0, inner.ntotal))
        return flat, faiss.vector_to_array(loaded.index.id_map).astype(np.int64)
    copy = build.from_bytes(build.to_bytes(loaded.index))
    ivf = faiss.extract_index_ivf(copy)
    # The stubs type it Optional (a C++ pointer member), but an IVF index always owns its lists.
    assert ivf.invlists is not None
    invlists = faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(invlists, faiss.ArrayInvertedLists):
        raise IndexBuildError(f"cannot export inverted lists of type {type(invlists).__name__}")
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            view = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            view[:] = np.searchsorted(sorted_ids, view)
    return copy, sorted_ids


def export_langchain(source: LoadedIndex | str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``index.faiss`` + ``index.pkl`` (docstore, index_to_docstore_id) for LangChain.

    Documents carry the chunk text as ``page_content`` and ``chunk_id``, ``doc_id``,
    ``chunk_index`` and ``vector_id`` as metadata; docstore ids are chunk_ids.
    """
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings

    class _Unused(Embeddings):
        """Placeholder: save_local never embeds; users pass real embeddings to load_local."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            raise RuntimeError("this exported store was opened without embeddings")

        def embed_query(self, text: str) -> list[float]:
            raise RuntimeError("this exported store was opened without embeddings")

    loaded = source if isinstance(source, LoadedIndex) else load(source)
    index, label_ids = _positional_index(loaded)
    rows = loaded.lookup(label_ids)
    docs: dict[str, Any] = {}
    mapping: dict[int, str] = {}
    for rank, row in enumerate(rows):
        if row is None:
            raise IndexBuildError(f"vector_id {int(label_ids[rank])} has no chunk row in {loaded.path}")
        chunk_id = row["chunk_id"]
        docs[chunk_id] = Document(
            id=chunk_id,
            page_content=row["text"] or "",
            metadata={
                "chunk_id": chunk_id,
                "doc_id": row["doc_id"],
                "chunk_index": row["chunk_index"],
                "vector_id": int(row["vector_id"]),
            },
        )
        mapping[rank] = chunk_id
    store = FAISS(
        embedding_function=_Unused(),
        index=index,
        docstore=InMemoryDocstore(docs),
        index_to_docstore_id=mapping,
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )
    out = Path(out_dir)
    store.save_local(str(out))
    note = {
        "source_build": str(loaded.path),
        "source_manifest": {k: loaded.manifest.get(k) for k in _NOTE_KEYS},
        "distance_strategy": "MAX_INNER_PRODUCT",
        "load_with": "FAISS.load_local(dir, embeddings, allow_dangerous_deserialization=True, "
        "distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)",
    }
    (out / EXPORT_NOTE).write_text(json.dumps(note, indent=2, default=str), encoding="utf-8")
    return out
