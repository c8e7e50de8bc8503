"""Task stage throughput against the lower bound set by model latency and concurrency.

    .venv/bin/python bench/bench_tasks.py [--tasks 1000] [--latency 0.2] [--concurrency 16] [--cache off]

Every model (embeddings, chat) is the OpenAI-compatible test server answering after
``--latency`` seconds, so the run is bound by waiting, not by CPU. With ``P`` partitions
running at once and ``C`` calls in flight per partition, no scheduler can beat
``tasks × latency / (P × C)``; the ratio wall / bound says how much the stage adds
(Spark jobs, MERGE commits, retrieval, client overhead). Target (issue #15): ≤ 1.15×.

Two small warm-up runs first start the Spark Python workers (task workers load the
chains; the local Delta reader's workers start on the first read of ``results``), as a
long-lived session would have them; their time is printed too. The measured run then
reports its phases (plan, execute, commit wait) next to the end-to-end wall time.
``--cache off`` measures the stage without the response cache (on by default for a remote
chat model) to show what its lookups and writes cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa


def save_index(settings, embedder, n: int = 200) -> None:
    from lakechain.index import store

    texts = [f"Passage {i}: Spark, Delta Lake, FAISS and LangChain fact number {i}." for i in range(n)]
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    ids = np.arange(n, dtype=np.int64)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": [f"c{i}" for i in range(n)],
            "doc_id": [f"d{i}" for i in range(n)],
            "chunk_index": pa.array([0] * n, pa.int32()),
            "text": texts,
        }
    )
    manifest = {"kind": "flat", "description": "Flat", "metric": "inner_product", "nprobe": 1,
                "dim": int(vectors.shape[1]), "count": n, "model": embedder.name,
                "source": {"table": "chunks", "version": 0}}  # fmt: skip
    store.save_build(store.index_root(settings.storage.files_root), index, rows, manifest)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8, help="tasks.max_concurrency (per partition)")
    ap.add_argument("--partitions", type=int, default=None, help="default: Spark's default parallelism")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument(
        "--commit-every", type=int, default=None, help="tasks.commit_every (default: the stage's)"
    )
    ap.add_argument(
        "--embed-batch",
        type=int,
        default=1024,
        help="embedding.batch_size: texts per embeddings request (a partition's questions in one call)",
    )
    ap.add_argument("--cache", default="auto", choices=["auto", "on", "off"], help="tasks.cache")
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from lakechain.config import load_settings
    from lakechain.embed.embedders import make_embedder
    from lakechain.storage.session import get_spark
    from lakechain.storage.tables import Tables
    from lakechain.tasks.stage import run_tasks
    from lakechain.testing.openai_server import FakeOpenAIServer

    root = tempfile.mkdtemp(prefix="bench-tasks-")
    with FakeOpenAIServer(seed=0) as srv:
        overrides = [f"storage.root={root}", f"spark.master={args.master}", "spark.log_level=ERROR"]
        for section, model in (("embedding", "fake-embed"), ("chat", "fake-chat"), ("images", "fake-image")):
            overrides += [f"{section}.provider=openai_compatible", f"{section}.base_url={srv.url}",
                          f"{section}.model={model}"]  # fmt: skip
        overrides += [
            "retrieval.score_threshold=-1",
            f"embedding.batch_size={args.embed_batch}",
            f"tasks.max_concurrency={args.concurrency}",
            "tasks.requests_per_minute=10000000",
            "tasks.tokens_per_minute=1000000000",
            "tasks.timeout_s=30",
            f"tasks.cache={args.cache}",
        ]
        if args.commit_every:
            overrides.append(f"tasks.commit_every={args.commit_every}")
        if args.partitions:
            overrides.append(f"tasks.partitions={args.partitions}")
        settings = load_settings("conf/local.yaml", overrides)
        spark = get_spark(settings)
        tables = Tables(spark, settings)
        save_index(settings, make_embedder(settings.embedding))

        warm = Path(root) / "warm.jsonl"
        warm.write_text("".join(json.dumps({"question": f"Warm-up {i}?"}) + "\n" for i in range(64)))
        settings.tasks.path = str(warm)
        t = time.perf_counter()
        run_tasks(spark, settings, tables, progress=False)  # starts the task workers
        run_tasks(spark, settings, tables, force=True, progress=False)  # and the Delta reader's
        warm_s = time.perf_counter() - t

        path = Path(root) / "tasks.jsonl"
        path.write_text(
            "".join(
                json.dumps({"task_id": f"b{i:05d}", "question": f"Question {i} about Spark?"}) + "\n"
                for i in range(args.tasks)
            )  # fmt: skip
        )
        settings.tasks.path = str(path)
        srv.latency_s = args.latency
        chat_before = srv.counts["/v1/chat/completions"]
        t = time.perf_counter()
        report = run_tasks(spark, settings, tables, progress=False)
        wall = time.perf_counter() - t
        chat_calls = srv.counts["/v1/chat/completions"] - chat_before

    from lakechain.storage.session import default_parallelism

    parallel = default_parallelism(spark)
    partitions = min(args.partitions or parallel, parallel)
    total_concurrency = partitions * args.concurrency
    bound = args.tasks * args.latency / total_concurrency
    print(f"tasks={args.tasks} latency={args.latency}s partitions={partitions} "
          f"concurrency/partition={args.concurrency} (total {total_concurrency})")  # fmt: skip
    print(f"warm-up: 2 runs of 64 tasks (Python workers start, chains load, first Delta read): {warm_s:.2f}s")
    print(f"run: {report.ok} ok, {report.error} error, {chat_calls} chat calls, {report.batches} commit(s)")
    print(f"bound = tasks × latency / total concurrency = {bound:.2f}s")
    print(f"wall (run_tasks end to end: input, tasks table, planning, MERGE) = {wall:.2f}s")
    execute = report.timings.get("execute", 0.0)
    if bound > 0:
        print(f"ratio wall / bound = {wall / bound:.2f}x (target <= 1.15x)")
        print(f"execute phase (Spark batch jobs only) = {execute:.2f}s, ratio {execute / bound:.2f}x")
    else:  # --latency 0: what the stage itself costs
        print(f"execute phase (Spark batch jobs only) = {execute:.2f}s")
    print(report)


if __name__ == "__main__":
    main()
