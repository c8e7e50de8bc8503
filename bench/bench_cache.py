"""Response cache: model calls and wall time with ``tasks.cache`` on, against the cache off.

    .venv/bin/python bench/bench_cache.py [--tasks 2000] [--duplicates 0.3] [--latency 0.2]

The chat model is the OpenAI-compatible test server answering after ``--latency`` seconds.
The input has ``--duplicates`` of its tasks repeating a question asked elsewhere in the
input (scattered over the input, hence over partitions and commit batches). With the cache
on, the server must see exactly one chat call per distinct prompt; with it off, one per
task. Both modes run in the same Spark session on their own storage root, each after a
warm-up run, and the ratio of their wall times is printed. A final forced rerun with the
cache on shows the cross-run case (no chat call at all).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

CHAT = "/v1/chat/completions"


def questions(n: int, duplicates: float, seed: int = 0) -> list[str]:
    """``n`` questions of which ``round(n × duplicates)`` repeat an earlier distinct one."""
    rng = random.Random(seed)
    distinct = [f"Question {i} about Spark and Delta Lake?" for i in range(n - round(n * duplicates))]
    out = distinct + [rng.choice(distinct) for _ in range(n - len(distinct))]
    rng.shuffle(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--duplicates", type=float, default=0.3, help="share of tasks repeating a question")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16, help="tasks.max_concurrency (per partition)")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    from bench_tasks import save_index

    from lakechain.config import load_settings
    from lakechain.embed.embedders import make_embedder
    from lakechain.storage.session import get_spark
    from lakechain.storage.tables import Tables
    from lakechain.tasks.stage import run_tasks
    from lakechain.testing.openai_server import FakeOpenAIServer

    base = tempfile.mkdtemp(prefix="bench-cache-")
    asked = questions(args.tasks, args.duplicates)
    distinct = len(set(asked))
    path = Path(base) / "tasks.jsonl"
    lines = [json.dumps({"task_id": f"b{i:05d}", "question": q}) + "\n" for i, q in enumerate(asked)]
    path.write_text("".join(lines))
    warm = Path(base) / "warm.jsonl"
    warm.write_text("".join(json.dumps({"question": f"Warm-up {i}?"}) + "\n" for i in range(64)))

    with FakeOpenAIServer(seed=0) as srv:

        def settings_for(mode: str):
            overrides = [
                f"storage.root={base}/{mode}",
                f"storage.schema=bench_{mode}_{uuid.uuid4().hex[:6]}",
                f"spark.master={args.master}",
                "spark.log_level=ERROR",
                "retrieval.score_threshold=-1",
                "embedding.batch_size=1024",
                f"tasks.max_concurrency={args.concurrency}",
                "tasks.requests_per_minute=10000000",
                "tasks.tokens_per_minute=1000000000",
                "tasks.timeout_s=30",
                f"tasks.cache={mode}",
            ]
            models = (("embedding", "fake-embed"), ("chat", "fake-chat"), ("images", "fake-image"))
            for section, model in models:
                overrides += [f"{section}.provider=openai_compatible", f"{section}.base_url={srv.url}",
                              f"{section}.model={model}"]  # fmt: skip
            return load_settings("conf/local.yaml", overrides)

        spark = get_spark(settings_for("off"))
        runs = {}
        for mode in ("off", "on"):
            settings = settings_for(mode)
            tables = Tables(spark, settings)
            save_index(settings, make_embedder(settings.embedding))
            settings.tasks.path = str(warm)
            srv.latency_s = 0.0
            run_tasks(spark, settings, tables, progress=False)  # workers start, chains load
            settings.tasks.path = str(path)
            srv.latency_s = args.latency
            before = srv.counts[CHAT]
            t = time.perf_counter()
            report = run_tasks(spark, settings, tables, progress=False)
            runs[mode] = (time.perf_counter() - t, srv.counts[CHAT] - before, report)
        before = srv.counts[CHAT]
        t = time.perf_counter()
        rerun = run_tasks(spark, settings, tables, force=True, progress=False)
        rerun_s, rerun_calls = time.perf_counter() - t, srv.counts[CHAT] - before

    (off_s, off_calls, off), (on_s, on_calls, on) = runs["off"], runs["on"]
    print(f"tasks={args.tasks} distinct prompts={distinct} duplicates={args.tasks - distinct} "
          f"latency={args.latency}s concurrency/partition={args.concurrency}")  # fmt: skip
    print(f"cache off: {off.ok} ok, {off_calls} chat calls, wall {off_s:.2f}s")
    print(f"cache on:  {on.ok} ok, {on_calls} chat calls, {on.cache_hits} hits, wall {on_s:.2f}s")
    print(f"chat calls with the cache == distinct prompts: {on_calls == distinct} ({on_calls} vs {distinct})")
    print(f"wall cache on / cache off = {on_s / off_s:.2f}x (calls on / off = {on_calls / off_calls:.2f}x)")
    print(f"forced rerun, cache on: {rerun.ok} ok, {rerun_calls} chat calls, {rerun.cache_hits} hits, "
          f"wall {rerun_s:.2f}s ({rerun_s / off_s:.2f}x the cache-off run)")  # fmt: skip
    print(on)


if __name__ == "__main__":
    main()
