"""The driver's memory does not grow with the number of tasks: no result row crosses it.

    .venv/bin/python bench/bench_driver_memory.py [--sizes 1000,10000] [--images 200,2000] [--remote local[2]]

Each size runs in a fresh Python process (peak RSS is a high-water mark): QA tasks against
the OpenAI-compatible test server at 50 ms per call, then image tasks (PNG files written by
the executors). It prints the driver process's peak RSS for each size and the ratio of the
largest to the smallest; flat means the ratio stays near 1 while the task count grows 10×.
The baseline is the smallest size, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run(n: int, kind: str, remote: str | None) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_tasks import save_index

    from lakechain.config import load_settings
    from lakechain.embed.embedders import make_embedder
    from lakechain.storage.session import get_spark
    from lakechain.storage.tables import Tables
    from lakechain.tasks.stage import run_tasks
    from lakechain.testing.openai_server import FakeOpenAIServer

    root = tempfile.mkdtemp(prefix="bench-mem-")
    with FakeOpenAIServer(seed=0, latency_s=0.05) as srv:
        overrides = [f"storage.root={root}", "spark.master=local[2]", "spark.shuffle_partitions=2"]
        if remote:
            overrides.append(f"spark.remote={remote}")
        for section, model in (("embedding", "fake-embed"), ("chat", "fake-chat"), ("images", "fake-image")):
            overrides += [f"{section}.provider=openai_compatible", f"{section}.base_url={srv.url}",
                          f"{section}.model={model}"]  # fmt: skip
        overrides += ["retrieval.score_threshold=-1", "embedding.batch_size=1024", "tasks.max_concurrency=32",
                      "tasks.requests_per_minute=100000000", "tasks.tokens_per_minute=1000000000",
                      "images.size=256x256"]  # fmt: skip
        settings = load_settings("conf/local.yaml", overrides)
        spark = get_spark(settings)
        tables = Tables(spark, settings)
        save_index(settings, make_embedder(settings.embedding))
        path = Path(root) / "tasks.jsonl"
        field = "question" if kind == "qa" else "image_prompt"
        path.write_text("".join(json.dumps({"task_id": f"m{i:06d}", field: f"Item {i} about Spark"}) + "\n"
                                for i in range(n)))  # fmt: skip
        settings.tasks.path = str(path)
        t = time.perf_counter()
        report = run_tasks(spark, settings, tables, progress=False)
        wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "kind": kind, "ok": report.ok, "error": report.error, "wall_s": round(wall, 1),
            "peak_rss_mb": round(peak_mb, 1), "batches": report.batches}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--images", default="200,2000")
    ap.add_argument("--remote", default=None, help="spark.remote, e.g. local[2] for Spark Connect")
    ap.add_argument("--one", nargs=2, metavar=("N", "KIND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(int(args.one[0]), args.one[1], args.remote)))
        return
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for kind, sizes in (("qa", args.sizes), ("image", args.images)):
        results = []
        for n in (int(s) for s in sizes.split(",")):
            cmd = [sys.executable, __file__, "--one", str(n), kind] + (
                ["--remote", args.remote] if args.remote else []
            )
            out = (
                subprocess.run(cmd, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            results.append(json.loads(out))
            print(results[-1], flush=True)
        base, top = results[0], results[-1]
        print(
            f"{kind}: tasks {base['n']} -> {top['n']} ({top['n'] / base['n']:.0f}x); driver peak RSS "
            f"{base['peak_rss_mb']} -> {top['peak_rss_mb']} MB, "
            f"ratio {top['peak_rss_mb'] / base['peak_rss_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
