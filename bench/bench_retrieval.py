"""Batched retrieval (what each task partition does) against a per-question ``invoke`` loop.

    .venv/bin/python bench/bench_retrieval.py [--questions 1000] [--chunks 20000] [--latency 0.05]

Same index (a saved flat inner-product build of ``--chunks`` unit vectors, loaded the way
executors load it), same retriever, same questions, same run:

* batched: ``retriever.retrieve_many(questions)`` — one embedding batch, one matrix search;
* loop: ``retriever.invoke(q)`` for each question — the seed tutorial's per-question path.

Two embedders: ``remote`` (the OpenAI-compatible test server answering after ``--latency``
seconds, like a hosted embeddings endpoint; the target ≥ 20× is for this case) and
``local`` (all-MiniLM-L6-v2 on this CPU, where both paths pay the same per-text model cost
and batching can only save the per-call overhead). Results are checked to be identical.

Modes: the same batch retrieved with ``retrieval.mode`` dense, keyword and hybrid (the
build has its BM25 side, as ``lakechain index`` writes it), printed as ratios to dense,
with the remote embedder and, apart, the search alone (the keyword pass against the
matrix search) - what hybrid adds to a task partition's retrieval.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import faiss
import numpy as np
import pyarrow as pa


def build_index(root: str, n: int, dim: int, model: str):
    """Save a flat build of ``n`` random unit vectors under ``root`` and load it as executors do."""
    from lakechain.index import keyword, search, store

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index.add_with_ids(vectors, ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": [f"c{i}" for i in range(n)],
            "doc_id": [f"d{i // 10}" for i in range(n)],
            "chunk_index": pa.array(np.arange(n) % 10, pa.int32()),
            "text": chunk_texts(rng, n),
        }
    )
    manifest = {"kind": "flat", "description": "Flat", "metric": "inner_product", "nprobe": 1, "dim": dim,
                "count": n, "model": model, "source": {"table": "chunks", "version": 0}}  # fmt: skip
    build = store.save_build(store.index_root(root), index, rows, manifest, keyword=keyword.write_index)
    return search.load(build)


TOPICS = ["Spark", "Delta Lake", "FAISS", "LangChain", "GPT-4", "Azure Databricks", "embeddings"]


def chunk_texts(rng: np.random.Generator, n: int, words: int = 120) -> list[str]:
    """Chunk-sized texts over a 20k-word Zipf vocabulary plus topic names, so BM25 has
    realistic posting lists (common words everywhere, rare words in a few chunks)."""
    vocab = np.array([f"w{i}" for i in range(20_000)])
    ranks = np.minimum(rng.zipf(1.2, size=(n, words)), len(vocab)) - 1
    return [f"{TOPICS[i % len(TOPICS)]} handles case {i}: " + " ".join(vocab[ranks[i]]) for i in range(n)]


def compare(label: str, retriever, questions: list[str], loop_n: int) -> float:
    """Speed-up of batched over looped retrieval, as a ratio of questions per second.

    The loop runs over the first ``loop_n`` questions (all of them unless sampled).
    """
    retriever.retrieve_many(questions[:8])  # warm-up: clients, BLAS threads
    t = time.perf_counter()
    batched = retriever.retrieve_many(questions)
    batched_s = time.perf_counter() - t
    sample = questions[:loop_n]
    t = time.perf_counter()
    looped = [retriever.invoke(q) for q in sample]
    loop_s = time.perf_counter() - t
    same = [[d.metadata["chunk_id"] for d in a] for a in batched[:loop_n]] == [
        [d.metadata["chunk_id"] for d in b] for b in looped
    ]
    batched_qps, loop_qps = len(questions) / batched_s, len(sample) / loop_s
    ratio = batched_qps / loop_qps
    print(
        f"{label:7s} batched {len(questions)} q in {batched_s:6.2f}s ({batched_qps:7.1f} q/s)   "
        f"loop {len(sample)} q in {loop_s:6.2f}s ({loop_qps:6.1f} q/s)   "
        f"speed-up {ratio:5.1f}x   same results: {same}"
    )
    return ratio


def compare_modes(settings, embedder, index, questions: list[str]) -> float:
    """Batched retrieval in each mode, as ratios to dense; returns hybrid / dense time."""
    from lakechain.chains.retriever import LakechainRetriever

    times = {}
    for mode in ("dense", "keyword", "hybrid"):
        cfg = settings.retrieval.model_copy(update={"mode": mode})
        retriever = LakechainRetriever.from_settings(cfg, embedder, index)
        retriever.retrieve_many(questions[:8])
        t = time.perf_counter()
        retriever.retrieve_many(questions)
        times[mode] = time.perf_counter() - t
    matrix = np.asarray(embedder.embed(questions), dtype=np.float32)
    fetch = max(settings.retrieval.k, settings.retrieval.fetch_k)
    t = time.perf_counter()
    index.search_chunks(matrix, fetch)
    dense_search = time.perf_counter() - t
    t = time.perf_counter()
    index.search_keyword(questions, fetch)
    keyword_pass = time.perf_counter() - t
    print(
        "modes   "
        + "   ".join(f"{m} {s:6.2f}s ({s / times['dense']:4.2f}x)" for m, s in times.items())
        + f"\nsearch only ({fetch} per side): matrix {dense_search * 1000:7.1f} ms, "
        f"keyword pass {keyword_pass * 1000:7.1f} ms ({keyword_pass / dense_search:5.1f}x)"
    )
    return times["hybrid"] / times["dense"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--latency", type=float, default=0.05, help="remote embeddings round trip (s)")
    ap.add_argument("--embed-batch", type=int, default=256, help="embedding.batch_size (texts per request)")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--local-loop", type=int, default=100, help="questions in the local per-question loop")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads of the local model; >1 on a busy machine makes single-text calls "
        "spin on OpenMP barriers (measured ~0.5 s per question at load 4 on 2 cores)",
    )
    args = ap.parse_args()

    from lakechain.chains.retriever import LakechainRetriever
    from lakechain.config import load_settings
    from lakechain.embed.embedders import make_embedder
    from lakechain.testing.openai_server import FakeOpenAIServer

    questions = [
        f"Question {i}: how does {TOPICS[i % len(TOPICS)]} handle case {i}?" for i in range(args.questions)
    ]
    print(f"questions={args.questions} index=flat {args.chunks} x 384, k=4")

    with FakeOpenAIServer(seed=0, latency_s=args.latency) as srv:
        settings = load_settings(
            "conf/local.yaml",
            [
                "embedding.provider=openai_compatible",
                f"embedding.base_url={srv.url}",
                "embedding.model=fake-embed",
                f"embedding.batch_size={args.embed_batch}",
                "embedding.max_retries=0",
                "retrieval.score_threshold=-1",
            ],
        )
        embedder = make_embedder(settings.embedding)
        index = build_index(tempfile.mkdtemp(prefix="bench-retrieval-"), args.chunks, 384, embedder.name)
        retriever = LakechainRetriever.from_settings(settings.retrieval, embedder, index)
        print(
            f"remote embeddings: {args.latency * 1000:.0f} ms per request, "
            f"{args.embed_batch} texts per request"
        )
        remote_ratio = compare("remote", retriever, questions, len(questions))
        hybrid_ratio = compare_modes(settings, embedder, index, questions)

    if not args.skip_local:
        settings = load_settings("conf/local.yaml", ["retrieval.score_threshold=-1"])
        embedder = make_embedder(settings.embedding, threads=args.torch_threads)
        index = build_index(
            tempfile.mkdtemp(prefix="bench-retrieval-"), args.chunks, embedder.dim, embedder.name
        )
        retriever = LakechainRetriever.from_settings(settings.retrieval, embedder, index)
        print(f"local embeddings: all-MiniLM-L6-v2 on CPU, {args.torch_threads} torch thread(s)")
        compare("local", retriever, questions, min(args.local_loop, len(questions)))
    print(
        f"target: remote speed-up >= 20x -> "
        f"{'met' if remote_ratio >= 20 else 'NOT met'} ({remote_ratio:.1f}x); "
        f"hybrid retrieval {hybrid_ratio:.2f}x the time of dense"
    )


if __name__ == "__main__":
    main()
