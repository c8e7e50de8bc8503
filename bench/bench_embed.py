"""Embed stage throughput vs the raw model and vs the seed approach; incremental cost.

    .venv/bin/python bench/bench_embed.py [--chunks 2000] [--master local[2]] [--skip-seed] [--skip-st]

One run, one machine, the same chunk texts everywhere:

* raw: all-MiniLM-L6-v2 (Lakechain's ONNX Runtime model, every core of this process)
  encoding every chunk, model already loaded — the ceiling;
* sentence-transformers: the same model on torch, every core, in its own venv
  (``.bench/st-venv``, created on first use by ``bench_embed_runtime.StWorker``);
* seed: LangChain ``HuggingFaceEmbeddings`` over the same model (needs sentence-transformers),
  ``embed_documents`` called sequentially per document, then ``langchain_community``
  ``FAISS.from_embeddings``;
* stage: ``run_embed`` (ingest → documents → chunk → pandas/Arrow UDF embed → Delta), cold
  (workers load the model) and warm (``full=True`` rerun, models cached in reused workers);
* incremental: 1% of documents edited, rerun, as a fraction of the warm full run.

Each stage run also prints its Spark job count, read from the local session's status
tracker (a bench-only instrument: the stage itself never touches the SparkContext).

The corpus is real English technical prose: docstrings of installed libraries.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODULES = [
    "pandas",
    "pandas.core.frame",
    "pandas.core.series",
    "pandas.core.generic",
    "pandas.core.groupby.groupby",
    "numpy",
    "pyspark.sql.dataframe",
    "pyspark.sql.functions",
    "pyspark.sql.readwriter",
    "pyspark.rdd",
    "json",
    "os",
    "re",
    "collections",
    "itertools",
    "functools",
    "pathlib",
    "subprocess",
    "threading",
    "asyncio",
    "logging",
    "argparse",
    "datetime",
    "decimal",
    "statistics",
    "typing",
    "http.client",
    "email.message",
    "tarfile",
    "zipfile",
    "shutil",
    "socket",
    "ssl",
    "sqlite3",
    "unittest",
    "doctest",
    "pydoc",
    "inspect",
    "ast",
    "dataclasses",
    "enum",
    "heapq",
    "bisect",
    "random",
    "string",
    "textwrap",
]


def docstring_corpus() -> list[tuple[str, str]]:
    """(doc_id, text): one document per module/class/function docstring of ≥ 400 characters."""
    docs: dict[str, str] = {}
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except Exception:
            continue
        objs = [(mod_name, mod)] + [
            (f"{mod_name}.{n}", o) for n, o in sorted(vars(mod).items()) if not n.startswith("_")
        ]
        for name, obj in objs:
            doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or callable(obj)) else None
            if doc and len(doc) >= 400 and doc not in docs.values():
                docs[name] = doc
    return sorted(docs.items())


def counted(spark, label: str, fn):
    """``fn()`` and the number of Spark jobs it ran (its job group in the status tracker)."""
    sc = spark.sparkContext
    sc.setJobGroup(label, label)
    try:
        out = fn()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return out, len(sc.statusTracker().getJobIdsForGroup(label))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=2000, help="minimum number of chunks")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--skip-seed", action="store_true", help="needs sentence-transformers in this venv")
    ap.add_argument("--skip-st", action="store_true", help="sentence-transformers in .bench/st-venv")
    args = ap.parse_args()

    from lakechain.config import load_settings
    from lakechain.embed.chunking import chunk_text, tokenizer_for
    from lakechain.embed.ingest import normalize_text

    root = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    corpus = root / "corpus"
    corpus.mkdir()
    settings = load_settings(
        "conf/local.yaml",
        [
            f"spark.master={args.master}",
            "spark.shuffle_partitions=4",
            f"storage.root={root}/lake",
            f"corpus.path={corpus}",
        ],
    )
    counter = tokenizer_for("local")
    all_docs = docstring_corpus()
    random.Random(0).shuffle(all_docs)
    docs, per_doc = [], []
    for doc_id, raw_text in all_docs:
        text = normalize_text(raw_text)  # what ingest stores, so every path embeds the same chunks
        chunks = chunk_text(
            doc_id, text, counter, settings.chunking.chunk_tokens, settings.chunking.overlap_tokens
        )
        docs.append((doc_id, text))
        per_doc.append([c.text for c in chunks])
        if sum(len(p) for p in per_doc) >= args.chunks:
            break
    texts = [t for p in per_doc for t in p]
    tokens = counter.count_batch(texts)
    print(
        f"corpus: {len(docs)} docs, {len(texts)} chunks, mean {sum(tokens) / len(tokens):.0f} tokens/chunk "
        f"(chunk_tokens={settings.chunking.chunk_tokens}); {os.cpu_count()} cores, spark {args.master}"
    )
    for i, (_doc_id, text) in enumerate(docs):
        (corpus / f"{i:05d}.txt").write_text(text, encoding="utf-8")

    # --- raw model, one process -------------------------------------------------------
    from lakechain.embed.embedders import make_embedder
    from lakechain.embed.minilm import packaged_model_dir

    path = str(packaged_model_dir())
    t = time.perf_counter()
    model = make_embedder(settings.embedding)  # the stage's own runtime, every core of this process
    load_s = time.perf_counter() - t
    model.embed(texts[:32])  # warm-up
    t = time.perf_counter()
    raw = model.embed(texts)
    raw_s = time.perf_counter() - t
    print(
        f"raw model:      {raw_s:7.1f}s  {len(texts) / raw_s:6.1f} chunks/s  "
        f"(model load {load_s:.1f}s, excluded)"
    )

    # --- sentence-transformers on torch, in its own venv (what users would pick) ---------
    st_s = None
    if not args.skip_st:
        from bench_embed_runtime import StWorker

        from lakechain.embed.embedders import usable_cpus

        st = StWorker({"chunks": texts}, usable_cpus(), settings.embedding.batch_size)
        st_s, st_vecs = st.run("chunks")
        st.close()
        print(
            f"sentence-transformers: {st_s:7.1f}s  {len(texts) / st_s:6.1f} chunks/s  "
            f"({usable_cpus()} torch threads, own venv; max |raw - st| {float(abs(raw - st_vecs).max()):.1e})"
        )

    # --- seed approach: LangChain wrapper, sequential embed_documents, FAISS.from_embeddings
    seed_s = None
    if not args.skip_seed and importlib.util.find_spec("sentence_transformers") is None:
        print("seed approach:  skipped (sentence-transformers is not in this venv)")
    elif not args.skip_seed:
        import warnings

        warnings.filterwarnings("ignore")
        from langchain_community.embeddings import HuggingFaceEmbeddings
        from langchain_community.vectorstores import FAISS

        lc = HuggingFaceEmbeddings(
            model_name=path, model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
        )
        lc.embed_documents(texts[:32])
        t = time.perf_counter()
        pairs = []
        for chunk_texts in per_doc:
            pairs.extend(zip(chunk_texts, lc.embed_documents(chunk_texts), strict=True))
        store = FAISS.from_embeddings(pairs, lc)
        seed_s = time.perf_counter() - t
        assert store.index.ntotal == len(texts)
        print(f"seed approach:  {seed_s:7.1f}s  {len(texts) / seed_s:6.1f} chunks/s")
        del lc, store

    # --- Spark stage ------------------------------------------------------------------
    from lakechain.embed.stage import run_embed
    from lakechain.storage.session import get_spark
    from lakechain.storage.tables import Tables

    spark = get_spark(settings)
    tables = Tables(spark, settings)
    cold, cold_jobs = counted(spark, "cold", lambda: run_embed(spark, settings, tables, progress=True))
    assert cold.chunks_embedded == len(texts), (cold.chunks_embedded, len(texts))
    warm, warm_jobs = counted(
        spark, "warm", lambda: run_embed(spark, settings, tables, full=True, progress=True)
    )
    print(
        f"stage cold:     {cold.seconds:7.1f}s  {len(texts) / cold.seconds:6.1f} chunks/s  "
        f"{cold_jobs} jobs  steps {cold.step_seconds}"
    )
    print(
        f"stage warm:     {warm.seconds:7.1f}s  {len(texts) / warm.seconds:6.1f} chunks/s  "
        f"{warm_jobs} jobs  steps {warm.step_seconds}"
    )

    # vectors agree with the raw model (same texts → same embeddings)
    import numpy as np

    rows = [r.asDict() for r in tables.read("chunks").select("text", "embedding").collect()]
    by_text = {r["text"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}
    missing = sum(1 for tx in texts if tx not in by_text)
    max_err = max(float(np.abs(by_text[tx] - raw[i]).max()) for i, tx in enumerate(texts) if tx in by_text)
    print(f"max |stage - raw| over all vectors: {max_err:.2e} ({missing} chunk texts differ)")

    # the raw model once more, after Spark: the machine is shared, this brackets the noise
    t = time.perf_counter()
    model.embed(texts)
    raw2_s = time.perf_counter() - t
    print(f"raw model again:{raw2_s:7.1f}s  {len(texts) / raw2_s:6.1f} chunks/s")
    raw_s = (raw_s + raw2_s) / 2
    del model

    # --- incremental: 1% of documents edited -----------------------------------------
    n_edit = max(1, len(docs) // 100)
    for i in random.Random(1).sample(range(len(docs)), n_edit):
        p = corpus / f"{i:05d}.txt"
        p.write_text(
            p.read_text(encoding="utf-8") + "\n\nEdited for the incremental benchmark.", encoding="utf-8"
        )
    inc, inc_jobs = counted(spark, "incremental", lambda: run_embed(spark, settings, tables, progress=False))
    noop, noop_jobs = counted(spark, "noop", lambda: run_embed(spark, settings, tables, progress=False))
    print(
        f"incremental:    {inc.seconds:7.1f}s  ({n_edit} docs edited, {inc.chunks_embedded} chunks embedded, "
        f"{inc.chunks_removed} removed, {inc.documents_unchanged} docs unchanged)  {inc_jobs} jobs  "
        f"steps {inc.step_seconds}"
    )
    print(f"no-op rerun:    {noop.seconds:7.1f}s  ({noop.chunks_embedded} embedded)  {noop_jobs} jobs")

    print("\n== ratios (same run; raw = mean of its two measurements) ==")
    print(f"stage warm throughput / raw model : {raw_s / warm.seconds:.2f}x  (target >= 0.95x)")
    print(
        f"stage cold throughput / raw model : {raw_s / cold.seconds:.2f}x  "
        "(includes model load in each worker)"
    )
    if st_s:
        print(f"stage warm / sentence-transformers: {st_s / warm.seconds:.2f}x")
        print(f"raw model / sentence-transformers : {st_s / raw_s:.2f}x")
    if seed_s:
        print(f"stage warm / seed approach        : {seed_s / warm.seconds:.2f}x faster")
        print(f"raw model / seed approach         : {seed_s / raw_s:.2f}x faster")
    print(f"incremental (1% docs) / warm full : {inc.seconds / warm.seconds:.3f}  (target <= 0.05, aim 0.03)")
    print(f"no-op rerun / warm full           : {noop.seconds / warm.seconds:.2f}")
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
