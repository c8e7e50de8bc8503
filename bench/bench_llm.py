"""Local LLM (``chat.provider: llamacpp``) throughput on the task stage's executor path.

    .venv/bin/python bench/bench_llm.py [--tasks 8] [--threads 1 2] [--slots 1 2 4] [--concurrency 1 2 4]
    .venv/bin/python bench/bench_llm.py --side-by-side     # extractive vs generative on data/tasks.jsonl

The sample corpus is chunked and embedded in memory; the sample questions (cycled to
``--tasks``) run through ``tasks.execute.run_partition`` with the run-tasks services
(``tasks.worker.ChainServices``: retrieval, QA with the groundedness guard, retries) at each
concurrency, against one llama.cpp server per (threads, slots) setting. Spark is left out:
its per-batch overhead is measured by bench_tasks.py. For each server the one model load
per machine is timed (``acquire`` to ready, and the load the server reports). The baseline,
measured in the same run, is the extractive model at concurrency 1; ratios are tasks/s
against it.

``--side-by-side`` runs every line of data/tasks.jsonl through the router with each
provider and prints answer, groundedness, tokens and time per task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def corpus_searcher(settings: Any, embedder: Any) -> Any:
    """An in-memory index of the sample corpus, chunked as the embed stage does."""
    from lakechain.chains.retriever import InMemorySearcher
    from lakechain.embed.chunking import chunk_text, tokenizer_for
    from lakechain.embed.ingest import Document, list_corpus_files, read_path

    root = str(REPO / "data" / "corpus")
    files, _ = list_corpus_files(root)
    counter = tokenizer_for(settings.embedding.provider)
    texts, ids, docs = [], [], []
    for rel in files:
        for doc in read_path(root, rel, settings.corpus.max_document_bytes):
            if isinstance(doc, Document):
                for c in chunk_text(doc.doc_id, doc.text, counter, settings.chunking.chunk_tokens,
                                    settings.chunking.overlap_tokens):  # fmt: skip
                    texts.append(c.text)
                    ids.append(c.chunk_id)
                    docs.append(doc.doc_id)
    return InMemorySearcher.from_texts(embedder, texts, ids, docs)


def sample_questions() -> list[str]:
    out = []
    for line in (REPO / "data" / "tasks.jsonl").read_text().splitlines():
        q = (json.loads(line).get("qa") or {}).get("question", "") if line.strip() else ""
        if q.strip():
            out.append(q.strip())
    return out


def settings_for(provider: str, state_root: str, threads: int = 1, slots: int = 2, max_tokens: int = 96
                 ) -> Any:  # fmt: skip
    """conf/local.yaml (extractive) or conf/local-llm.yaml, as executors see it (no client retries)."""
    from lakechain.config import load_settings
    from lakechain.tasks.worker import worker_settings

    if provider != "llamacpp":
        return worker_settings(load_settings(REPO / "conf" / "local.yaml"))
    sets = [f"chat.llamacpp.threads={threads}", f"chat.llamacpp.parallel={slots}",
            f"chat.llamacpp.state_dir={state_root}", f"chat.max_tokens={max_tokens}"]  # fmt: skip
    return worker_settings(load_settings(REPO / "conf" / "local-llm.yaml", sets))


def run_tasks_once(services: Any, questions: list[str], concurrency: int) -> dict[str, float]:
    from lakechain.tasks.execute import ExecConfig, TaskInput, run_partition
    from lakechain.tasks.retry import RetryPolicy

    tasks = [TaskInput(f"t{i}", q, None) for i, q in enumerate(questions)]
    cfg = ExecConfig(policy=RetryPolicy(3, 0.5, 5.0), max_concurrency=concurrency)
    start = time.perf_counter()
    run = run_partition(tasks, services, cfg)
    wall = time.perf_counter() - start
    ok = sum(o.qa_status == "ok" for o in run.outcomes)
    completion = sum(o.completion_tokens for o in run.outcomes)
    return {"wall_s": wall, "ok": ok, "tasks_s": len(tasks) / wall, "completion_tok_s": completion / wall}


def throughput(args: argparse.Namespace) -> None:
    from lakechain.chains import build_chains
    from lakechain.chains.chat_models import llamacpp_spec
    from lakechain.embed.embedders import cached_embedder
    from lakechain.runtime import llamacpp
    from lakechain.tasks.worker import ChainServices

    state_root = tempfile.mkdtemp(prefix="bench-llm-")
    base = settings_for("local", state_root)
    embedder = cached_embedder(base.embedding)
    searcher = corpus_searcher(base, embedder)
    questions = (sample_questions() * args.tasks)[: args.tasks]
    extractive = ChainServices(build_chains(base, searcher, embedder=embedder), base)
    run_tasks_once(extractive, questions[:2], 1)  # warm the embedder's code paths
    baseline = run_tasks_once(extractive, questions, 1)
    print(f"{args.tasks} QA tasks per run; baseline extractive, concurrency 1: "
          f"{baseline['tasks_s']:.2f} tasks/s ({baseline['wall_s']:.1f}s)")  # fmt: skip
    print(f"{'threads':>7} {'slots':>5} {'load_s':>7} {'acquire_s':>9} {'conc':>4} {'tasks/s':>8} "
          f"{'tok/s':>6} {'ok':>4} {'vs extractive':>13}")  # fmt: skip
    for threads in args.threads:
        for slots in args.slots:
            s = settings_for("llamacpp", state_root, threads, slots, args.max_tokens)
            spec = llamacpp_spec(s.chat)
            t0 = time.perf_counter()
            with llamacpp.held(spec) as endpoint:
                acquire_s = time.perf_counter() - t0
                services = ChainServices(build_chains(s, searcher, embedder=embedder), s)
                for conc in args.concurrency:
                    r = run_tasks_once(services, questions, conc)
                    print(f"{threads:>7} {slots:>5} {endpoint.load_s:>7.2f} {acquire_s:>9.2f} {conc:>4} "
                          f"{r['tasks_s']:>8.3f} {r['completion_tok_s']:>6.1f} {r['ok']:>4} "
                          f"{r['tasks_s'] / baseline['tasks_s']:>12.3f}x", flush=True)  # fmt: skip


def side_by_side(args: argparse.Namespace) -> None:
    from lakechain.chains import build_chains
    from lakechain.chains.chat_models import chat_server
    from lakechain.embed.embedders import cached_embedder

    state_root = tempfile.mkdtemp(prefix="bench-llm-")
    lines = [json.loads(x) for x in (REPO / "data" / "tasks.jsonl").read_text().splitlines() if x.strip()]
    for provider in ("local", "llamacpp"):
        s = settings_for(provider, state_root, max_tokens=args.max_tokens)
        embedder = cached_embedder(s.embedding)
        chains = build_chains(s, corpus_searcher(s, embedder), embedder=embedder, capture_errors=True)
        print(f"\n=== chat.provider: {provider} ({s.chat.model}) ===")
        with chat_server(s.chat):
            for line in lines:
                task = {k: v for k, v in line.items() if k in ("qa", "image_generation", "illustrate")}
                name = line.get("task_id") or (task.get("qa") or {}).get("question") or "image task"
                t0 = time.perf_counter()
                try:
                    out = chains.router.invoke(task)
                except Exception as exc:  # a bad input line is part of the sample
                    print(f"- {name}: input error: {exc}")
                    continue
                took = time.perf_counter() - t0
                qa = out.get("qa") or {}
                if "error" in qa:
                    print(f"- {name}: qa error: {qa['error']['message']}")
                    continue
                usage = qa.get("usage") or {}
                tokens = f"{usage.get('prompt_tokens', 0)}+{usage.get('completion_tokens', 0)} tok"
                print(f"- {name} [{took:.1f}s, {tokens}]")
                if qa:
                    print(f"    answer: {qa['answer']}")
                    share, flag = qa.get("grounded_share"), qa.get("not_grounded")
                    print(f"    grounded_share={share} not_grounded={flag} citations={qa.get('citations')}")
                if qa.get("image_prompt"):
                    print(f"    image prompt ({qa.get('image_prompt_source')}): {qa['image_prompt']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--side-by-side", action="store_true")
    args = ap.parse_args()
    side_by_side(args) if args.side_by_side else throughput(args)


if __name__ == "__main__":
    main()
