"""The numpy all-MiniLM-L6-v2 runtime against sentence-transformers: load time and throughput.

    PYTHONPATH=lib .venv/bin/python bench/bench_embed_runtime.py [--threads 2] [--rounds 3]

Needs sentence-transformers and torch for the baseline (Lakechain no longer installs them).
One run, the same texts for both:

* load: a fresh ``python -c`` per sample that imports, loads the model and embeds one text
  (what every new Spark Python worker pays): time inside it, and the whole process's wall
  and CPU time;
* throughput: texts/s for short texts (docstring first lines) and ~200-token chunks, both
  models in this process, ``--threads`` threads each (torch intra-op; Lakechain's
  ``LocalEmbedder(threads=)``, as the embed stage builds it), rounds interleaved and the
  best round kept (the machine may be shared);
* agreement: max abs difference of the two runtimes' vectors on every benchmark text.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import docstring_corpus  # noqa: E402  (bench/ is not a package)

LOAD_NUMPY = """
import json, sys, time
t = time.perf_counter()
from lakechain.config import EmbeddingConfig
from lakechain.embed.embedders import make_embedder
make_embedder(EmbeddingConfig(), threads={threads}).embed(["hello world"])
print(json.dumps({{"inner": time.perf_counter() - t, "torch": "torch" in sys.modules}}))
"""

LOAD_ST = """
import json, sys, time
t = time.perf_counter()
import torch
torch.set_num_threads({threads})
from sentence_transformers import SentenceTransformer
from lakechain.embed.minilm import packaged_model_dir
SentenceTransformer(str(packaged_model_dir()), device="cpu").encode(["hello world"])
print(json.dumps({{"inner": time.perf_counter() - t, "torch": "torch" in sys.modules}}))
"""


def load_times(code: str, samples: int) -> tuple[float, float, float, bool]:
    """Medians over fresh interpreters: process wall s, process CPU s (user + sys: what a busy
    machine cannot inflate), import + load + first embed s; whether torch got imported."""
    walls, cpus, inners, torch_seen = [], [], [], False
    for _ in range(samples):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        inners.append(rec["inner"])
        torch_seen |= rec["torch"]
    return statistics.median(walls), statistics.median(cpus), statistics.median(inners), torch_seen


def bench_texts(n_short: int, n_long: int) -> tuple[list[str], list[str]]:
    """Short: docstring first lines; long: 180–200-token chunks cut by Lakechain's own chunker."""
    from lakechain.embed.chunking import chunk_text, tokenizer_for

    counter = tokenizer_for("local")
    short, long = [], []
    for doc_id, text in docstring_corpus():
        first = text.strip().splitlines()[0].strip()
        if len(first) >= 20:
            short.append(first)
        long += [c.text for c in chunk_text(doc_id, text, counter, 200, 0) if c.token_count >= 180]
    return short[:n_short], long[:n_long]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load-samples", type=int, default=3)
    ap.add_argument("--short", type=int, default=512)
    ap.add_argument("--long", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    np_wall, np_cpu, np_inner, np_torch = load_times(
        LOAD_NUMPY.format(threads=args.threads), args.load_samples
    )
    st_wall, st_cpu, st_inner, _ = load_times(LOAD_ST.format(threads=args.threads), args.load_samples)
    print(f"load (fresh process, median of {args.load_samples}; import + load + first embed):")
    print(
        f"  numpy runtime          {np_inner:6.2f} s  (process: wall {np_wall:5.2f} s, cpu {np_cpu:5.2f} s; "
        f"torch loaded: {np_torch})"
    )
    print(
        f"  sentence-transformers  {st_inner:6.2f} s  (process: wall {st_wall:5.2f} s, cpu {st_cpu:5.2f} s)"
    )
    print(f"  ratio numpy/st         {np_inner / st_inner:6.3f}  (process cpu {np_cpu / st_cpu:.3f})")

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from lakechain.config import EmbeddingConfig
    from lakechain.embed.embedders import LocalEmbedder
    from lakechain.embed.minilm import packaged_model_dir

    torch.set_num_threads(args.threads)
    st = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    rt = LocalEmbedder(EmbeddingConfig(batch_size=args.batch_size), threads=args.threads)

    def run_st(texts: list[str]) -> np.ndarray:
        return st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)

    def run_np(texts: list[str]) -> np.ndarray:
        return rt.embed(texts)

    short, long = bench_texts(args.short, args.long)
    print(f"throughput ({args.threads} threads, batch {args.batch_size}, best of {args.rounds} interleaved):")
    for label, texts in (("short", short), ("~200-token", long)):
        tokens = [len(ids) for ids in rt.model.token_ids(texts)]
        best = {"st": float("inf"), "np": float("inf")}
        vecs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for key, fn in (("st", run_st), ("np", run_np)):
                t = time.perf_counter()
                vecs[key] = fn(texts)
                best[key] = min(best[key], time.perf_counter() - t)
        diff = float(np.abs(vecs["np"] - vecs["st"]).max())
        st_rate, np_rate = len(texts) / best["st"], len(texts) / best["np"]
        print(
            f"  {label:10s} {len(texts):4d} texts, mean {statistics.mean(tokens):5.1f} tokens: "
            f"numpy {np_rate:7.1f}/s  st {st_rate:7.1f}/s  ratio numpy/st {np_rate / st_rate:5.2f}  "
            f"max|diff| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
