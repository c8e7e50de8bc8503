"""Index stage: sharded build + merge vs a single-process build; IVF build/search figures.

    .venv/bin/python bench/bench_index.py [--flat-n 200000] [--dim 384] [--partitions 4]
                                          [--ivf-n 1000000] [--queries 1000] [--skip-spark]

Every ratio is against a baseline measured in the same run on the same vectors:

* flat, in process: ``IndexIDMap2(IndexFlatIP).add_with_ids`` of the whole matrix (baseline)
  vs the per-partition function (``shards.build_shard``: Arrow → validated matrix → shard →
  serialised) run on ``--partitions`` slices one after another, then ``merge_shard_rows``;
* flat, through Spark (``local[2]``): the same vectors in a Parquet table. Baseline: collect
  them to the driver (``toArrow``) and build one index there. Sharded: ``build_and_merge``,
  i.e. ``mapInArrow`` with the per-partition function, shards written to a staging
  directory (``index.shard_transport=files``, the default) or returned in the result rows
  (``spark``), then assembled on the driver;
* IVF (``IVF{nlist},Flat``, nlist from the stage's default rule): training on the driver
  sample, adding by shards (merged) vs adding in one index, batched search QPS at several
  nprobe values, recall@10 against exact (flat) search of the same queries.

Vectors are synthetic unit vectors. Flat timings do not depend on their distribution; the
IVF recall does: ``--clusters`` (default) draws them around random centres as real
embeddings cluster, ``--uniform`` gives the worst case (no structure, low recall).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from lakechain.index import build, shards  # noqa: E402


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def unit_vectors(rng: np.random.Generator, n: int, dim: int, clustered: bool) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    centres = rng.standard_normal((max(1, n // 200), dim)).astype(np.float32) if clustered else None
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        x = rng.standard_normal((m, dim)).astype(np.float32)
        if centres is not None:
            x = centres[rng.integers(0, len(centres), m)] + 0.6 * x
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def chunk_table(x: np.ndarray, ids: np.ndarray) -> pa.Table:
    n, dim = x.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    emb = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))
    return pa.table(
        {
            "vector_id": ids,
            "chunk_id": pa.array([f"c{i}" for i in range(n)]),
            "doc_id": pa.array([f"d{i // 8}" for i in range(n)]),
            "chunk_index": pa.array(np.arange(n, dtype=np.int32) % 8),
            "text": pa.array([f"chunk text {i}" for i in range(n)]),
            "embedding": emb,
        }
    )


def ranges(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, parts + 1).astype(int).tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def slices(table: pa.Table, parts: int, batch: int = 10_000) -> list[list[pa.RecordBatch]]:
    return [table.slice(a, b - a).to_batches(max_chunksize=batch) for a, b in ranges(table.num_rows, parts)]


def flat_in_process(x: np.ndarray, ids: np.ndarray, table: pa.Table, parts: int) -> dict[str, float]:
    dim = x.shape[1]
    template = build.to_bytes(build.train(build.IndexPlan("flat", dim)))

    def single() -> faiss.Index:
        index = build.train(build.IndexPlan("flat", dim))
        build.add(index, x, ids)
        return index

    def single_arrow() -> faiss.Index:
        index = build.train(build.IndexPlan("flat", dim))
        vb = shards.vectors_from_arrow(table.column("embedding"), dim)
        build.add(index, vb.matrix, ids[vb.rows])
        return index

    def sharded() -> shards.Merged:
        built = [shards.build_shard(b, template, dim, p) for p, b in enumerate(slices(table, parts))]
        return shards.merge_shard_rows(shards.rows_of(pa.Table.from_batches(built)), template)

    t_single, ref = min((timed(single) for _ in range(2)), key=lambda r: r[0])
    t_arrow, _ = min((timed(single_arrow) for _ in range(2)), key=lambda r: r[0])
    t_sharded, merged = min((timed(sharded) for _ in range(2)), key=lambda r: r[0])
    q = x[:50]
    same = np.array_equal(ref.search(q, 10)[1], merged.index.search(q, 10)[1])
    return {"single_s": t_single, "single_from_arrow_s": t_arrow, "sharded_s": t_sharded, "same_topk": same}


def flat_spark(table: pa.Table, x: np.ndarray, parts: int, workdir: str) -> dict[str, float]:
    dim = x.shape[1]
    from lakechain.config import load_settings
    from lakechain.index import stage as index_stage
    from lakechain.storage.session import get_spark

    path = os.path.join(workdir, "chunks_parquet")
    os.makedirs(path)
    for p, (a, b) in enumerate(ranges(table.num_rows, parts)):
        pq.write_table(table.slice(a, b - a), os.path.join(path, f"part-{p:03d}.parquet"))
    settings = load_settings(None, ["spark.master=local[2]", f"spark.shuffle_partitions={parts}"])
    settings.spark.conf = {
        "spark.driver.memory": "6g",
        "spark.driver.maxResultSize": "4g",
        "spark.sql.files.maxPartitionBytes": str(max(1, table.nbytes // parts + 1)),
        "spark.sql.files.openCostInBytes": "0",
    }
    spark = get_spark(settings)
    df = spark.read.parquet(path)
    n_parts = df.rdd.getNumPartitions()
    template = build.to_bytes(build.train(build.IndexPlan("flat", dim))).tobytes()

    def collect_then_build() -> faiss.Index:
        t = df.select(*shards.INPUT_COLUMNS).toArrow()
        index = build.train(build.IndexPlan("flat", dim))
        vb = shards.vectors_from_arrow(t.column("embedding"), dim)
        build.add(index, vb.matrix, t.column("vector_id").to_numpy()[vb.rows])
        return index

    stage_root = os.path.join(workdir, "staging")

    def sharded_files() -> shards.Merged:
        stage = os.path.join(stage_root, str(time.perf_counter_ns()))
        os.makedirs(stage)
        return index_stage.build_and_merge(df, template, dim, stage_dir=stage)

    def sharded_rows() -> shards.Merged:
        return index_stage.build_and_merge(df, template, dim)

    df.select("vector_id").count()  # warm the reader and the Python workers
    out: dict[str, Any] = {"spark_partitions": n_parts}
    best: dict[str, float] = {}
    results: dict[str, Any] = {}
    for _ in range(2):  # interleaved, best of two: the machine is shared
        for name, fn in (("collect", collect_then_build), ("files", sharded_files), ("rows", sharded_rows)):
            t, res = timed(fn)
            best[name] = min(best.get(name, t), t)
            results[name] = res
    out.update({f"{k}_s": v for k, v in best.items()})
    out["shards"] = results["files"].shards
    ref = results["collect"].search(x[:50], 10)[1]
    out["same_topk"] = all(
        np.array_equal(ref, results[k].index.search(x[:50], 10)[1]) for k in ("files", "rows")
    )
    spark.stop()
    return out


def ivf(x: np.ndarray, ids: np.ndarray, parts: int, n_queries: int, nprobes: list[int], train_sample: int):
    n, dim = x.shape
    plan = build.plan_index(n, dim, "ivf", train_sample=train_sample)
    rng = np.random.default_rng(7)
    sample = x[rng.choice(n, min(n, train_sample), replace=False)]
    t_train, trained = timed(lambda: build.train(plan, sample))
    template = build.to_bytes(trained)

    def single() -> faiss.Index:
        index = build.from_bytes(template)
        build.add(index, x, ids)
        return index

    def sharded() -> faiss.Index:
        merged = None
        for a, b in ranges(n, parts):  # what each partition does, then the driver's merge
            shard = build.from_bytes(template)
            build.add(shard, x[a:b], ids[a:b])
            data = build.to_bytes(shard)
            shard.reset()
            if merged is None:
                merged = build.from_bytes(data)
            else:
                build.merge_into(merged, build.from_bytes(data))
        return merged

    t_single, ref = timed(single)
    ref.reset()  # free it before the sharded build
    t_sharded, merged = timed(sharded)
    noise = 0.05 * rng.standard_normal((n_queries, dim)).astype(np.float32)
    q = x[rng.choice(n, n_queries, replace=False)] + noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    t_exact, (_, exact) = timed(lambda: flat.search(q, 10))
    flat.reset()  # free the exact index's memory
    result: dict[str, Any] = {
        "plan": plan.description,
        "train_vectors": len(sample),
        "train_s": t_train,
        "add_single_s": t_single,
        "add_sharded_merge_s": t_sharded,
        "exact_qps": n_queries / t_exact,
        "nprobe": {},
    }
    for nprobe in nprobes:
        build.set_nprobe(merged, nprobe)
        t, (_, got) = timed(lambda: merged.search(q, 10))
        rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ids[exact], strict=True)]))
        result["nprobe"][nprobe] = {"qps": n_queries / t, "recall@10": rec}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flat-n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--ivf-n", type=int, default=1_000_000, help="0 skips the IVF part")
    ap.add_argument("--train-sample", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nprobe", default="4,8,16,32,64")
    ap.add_argument("--uniform", action="store_true", help="IVF data without cluster structure")
    ap.add_argument("--skip-spark", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"faiss {faiss.__version__}, {os.cpu_count()} CPUs, OpenMP threads {faiss.omp_get_max_threads()}")

    if args.flat_n:
        x = unit_vectors(rng, args.flat_n, args.dim, clustered=True)
        ids = np.arange(args.flat_n, dtype=np.int64) * 7919 + 3  # global ids, not positions
        table = chunk_table(x, ids)
        print(f"\n== flat, {args.flat_n:,} × {args.dim}, {args.partitions} shards ==")
        r = flat_in_process(x, ids, table, args.partitions)
        print(
            f"in process: single add {r['single_s']:.2f} s | single from Arrow "
            f"{r['single_from_arrow_s']:.2f} s | sharded+merge {r['sharded_s']:.2f} s | "
            f"same top-10: {r['same_topk']}"
        )
        print(f"  ratio sharded / single add        = {r['sharded_s'] / r['single_s']:.2f}x")
        print(f"  ratio sharded / single from Arrow = {r['sharded_s'] / r['single_from_arrow_s']:.2f}x")
        if not args.skip_spark:
            with tempfile.TemporaryDirectory() as work:
                s = flat_spark(table, x, args.partitions, work)
            print(
                f"spark local[2], {s['spark_partitions']} partitions, {s['shards']} shards: "
                f"collect+single build {s['collect_s']:.2f} s | mapInArrow shards, staged files "
                f"{s['files_s']:.2f} s | shards in result rows {s['rows_s']:.2f} s | "
                f"same top-10: {s['same_topk']}"
            )
            print(f"  ratio sharded (files) / collect+single = {s['files_s'] / s['collect_s']:.2f}x")
            print(f"  ratio sharded (rows)  / collect+single = {s['rows_s'] / s['collect_s']:.2f}x")
        del x, table

    if args.ivf_n:
        x = unit_vectors(rng, args.ivf_n, args.dim, clustered=not args.uniform)
        ids = np.arange(args.ivf_n, dtype=np.int64) * 7919 + 3
        nprobes = [int(v) for v in args.nprobe.split(",")]
        print(
            f"\n== IVF, {args.ivf_n:,} × {args.dim} ({'uniform' if args.uniform else 'clustered'}), "
            f"{args.partitions} shards, {args.queries} queries =="
        )
        r = ivf(x, ids, args.partitions, args.queries, nprobes, args.train_sample)
        print(
            f"{r['plan']}: train {r['train_s']:.1f} s on {r['train_vectors']:,} vectors | add single "
            f"{r['add_single_s']:.1f} s | add by shards+merge {r['add_sharded_merge_s']:.1f} s "
            f"({r['add_sharded_merge_s'] / r['add_single_s']:.2f}x)"
        )
        print(f"exact (flat) batched: {r['exact_qps']:.0f} QPS")
        for nprobe, m in r["nprobe"].items():
            print(
                f"  nprobe {nprobe:>3}: {m['qps']:>8.0f} QPS ({m['qps'] / r['exact_qps']:.0f}x exact), "
                f"recall@10 {m['recall@10']:.3f}"
            )


if __name__ == "__main__":
    main()
