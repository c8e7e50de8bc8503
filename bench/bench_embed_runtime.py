"""all-MiniLM-L6-v2 runtimes against sentence-transformers on torch: load time and throughput.

    PYTHONPATH=lib .venv/bin/python bench/bench_embed_runtime.py [--threads 2] [--rounds 2]

sentence-transformers runs in a virtual environment of its own, ``.bench/st-venv``
(git-ignored), created on first use with ``pip install -c constraints.txt
sentence-transformers torch``: torch never enters the project's ``.venv``. One run, the same
texts for every candidate:

* load: a fresh ``python -c`` per sample that imports, loads the model and embeds one text
  (what every new Spark Python worker pays; Lakechain's graph already cached): time inside
  it, and the whole process's wall and CPU time;
* throughput: texts/s on the embed stage's own chunks (docstrings cut by Lakechain's chunker
  with ``conf/local.yaml``'s settings) and on short texts (docstring first lines). The
  candidates run in this process: ONNX Runtime fp32 at 1 and ``--threads`` intra-op threads
  and several padded-token budgets per run, int8, and the numpy runtime it replaced (its
  source read from git history); sentence-transformers runs in a worker process of its venv
  (``--threads`` torch threads, batch ``--batch-size``) driven round by round, so rounds of
  all candidates interleave and the best round of each is kept (the machine may be shared);
* ratios of every candidate against sentence-transformers and against the default runtime;
* agreement: max abs difference of each candidate's vectors from sentence-transformers'.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ST_VENV = REPO / ".bench" / "st-venv"
ST_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
          "TRANSFORMERS_VERBOSITY": "error"}  # fmt: skip
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import docstring_corpus  # noqa: E402  (bench/ is not a package)

LOAD_ORT = """
import json, sys, time
t = time.perf_counter()
from lakechain.config import EmbeddingConfig
from lakechain.embed.embedders import make_embedder
make_embedder(EmbeddingConfig(quantize={quantize!r}), threads={threads}).embed(["hello world"])
print(json.dumps({{"inner": time.perf_counter() - t, "torch": "torch" in sys.modules}}))
"""

LOAD_ST = """
import json, sys, time
t = time.perf_counter()
import torch
torch.set_num_threads({threads})
from sentence_transformers import SentenceTransformer
SentenceTransformer({model!r}, device="cpu").encode(["hello world"])
print(json.dumps({{"inner": time.perf_counter() - t, "torch": "torch" in sys.modules}}))
"""

ST_WORKER = """
import json, sys, time
import numpy as np, torch
from sentence_transformers import SentenceTransformer
setup = json.loads(sys.stdin.readline())
torch.set_num_threads(setup["threads"])
st = SentenceTransformer(setup["model"], device="cpu")
st.encode(["warm up"])
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    texts = setup["sets"][cmd["set"]]
    t = time.perf_counter()
    v = st.encode(texts, batch_size=setup["batch_size"], normalize_embeddings=True, convert_to_numpy=True)
    s = time.perf_counter() - t
    np.save(cmd["out"], v.astype(np.float32))
    print(json.dumps({"s": s}), flush=True)
"""


def st_python() -> Path:
    """The sentence-transformers venv's interpreter, created (minutes, ~5 GB) on first use."""
    py = ST_VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {ST_VENV} (sentence-transformers + torch; once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ST_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"),
             "sentence-transformers", "torch"],
            check=True,
        )  # fmt: skip
    return py


def load_times(python: Path | str, code: str, samples: int) -> tuple[float, float, float, bool]:
    """Medians over fresh interpreters: process wall s, process CPU s (user + sys: what a busy
    machine cannot inflate), import + load + first embed s; whether torch got imported."""
    walls, cpus, inners, torch_seen = [], [], [], False
    env = {**os.environ, **ST_ENV, "PYTHONPATH": str(REPO / "lib")}
    for _ in range(samples):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        inners.append(rec["inner"])
        torch_seen |= rec["torch"]
    return statistics.median(walls), statistics.median(cpus), statistics.median(inners), torch_seen


class StWorker:
    """sentence-transformers in a worker process of its venv: ``run(set)`` encodes one text set
    (``threads`` torch threads) and returns (seconds, vectors)."""

    def __init__(self, sets: dict[str, list[str]], threads: int, batch_size: int) -> None:
        from lakechain.embed.minilm import packaged_model_dir

        self.proc = subprocess.Popen(
            [str(st_python()), "-c", ST_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, **ST_ENV},
        )  # fmt: skip
        self.out = Path(tempfile.mkdtemp(prefix="st-vectors-")) / "v.npy"
        setup = {
            "model": str(packaged_model_dir()),
            "threads": threads,
            "batch_size": batch_size,
            "sets": sets,
        }
        self._send(setup)

    def _send(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sentence-transformers worker exited ({self.proc.wait()})")
        return dict(json.loads(line))

    def run(self, name: str) -> tuple[float, np.ndarray]:
        s = float(self._send({"set": name, "out": str(self.out)})["s"])
        return s, np.load(self.out)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def bench_texts(n_short: int, n_long: int) -> dict[str, list[str]]:
    """Stage chunks (``conf/local.yaml``'s chunking, as bench_embed.py makes them) and
    docstring first lines."""
    import random

    from lakechain.config import load_settings
    from lakechain.embed.chunking import chunk_text, tokenizer_for
    from lakechain.embed.ingest import normalize_text

    ch = load_settings(REPO / "conf" / "local.yaml").chunking
    counter = tokenizer_for("local")
    docs = docstring_corpus()
    random.Random(0).shuffle(docs)
    short: list[str] = []
    chunks: list[str] = []
    for doc_id, text in docs:
        first = text.strip().splitlines()[0].strip()
        if len(first) >= 20:
            short.append(first)
        if len(chunks) < n_long:
            norm = normalize_text(text)
            chunks += [c.text for c in chunk_text(doc_id, norm, counter, ch.chunk_tokens, ch.overlap_tokens)]
    return {"chunks": chunks[:n_long], "short": short[:n_short]}


def numpy_runtime() -> tuple[Any, str] | None:
    """The numpy MiniLM this runtime replaced, imported from its last version in git history."""
    rel = "lib/lakechain/embed/minilm.py"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout

    try:
        rev = git("rev-parse", "--short", "HEAD").strip()
        src = git("show", f"{rev}:{rel}")
        if "def gelu_" not in src:  # the commit that removed it, then its parent
            removed = git("log", "-1", "--format=%h", "-S", "def gelu_", "--", rel).strip()
            if not removed:
                return None
            rev = git("rev-parse", "--short", f"{removed}^").strip()
            src = git("show", f"{rev}:{rel}")
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp(prefix="minilm-numpy-")) / "minilm_numpy.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("minilm_numpy", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MiniLM(), rev


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load-samples", type=int, default=3)
    ap.add_argument("--short", type=int, default=512)
    ap.add_argument("--long", type=int, default=512, help="stage chunks")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy runtime from git history")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from lakechain.config import EmbeddingConfig
    from lakechain.embed import minilm
    from lakechain.embed.embedders import LocalEmbedder

    model_dir = str(minilm.packaged_model_dir())
    st_py = st_python()
    print(f"load {os.getloadavg()[0]:.2f} (1-min average) at start; {os.cpu_count()} cores")

    # --- load ---------------------------------------------------------------------------
    for q in (None, "int8"):  # the graphs are cached before any load is timed
        LocalEmbedder(EmbeddingConfig(quantize=q), threads=1)
    n = args.load_samples
    loads = {
        "onnxruntime fp32": load_times(sys.executable, LOAD_ORT.format(quantize=None, threads=1), n),
        "onnxruntime int8": load_times(sys.executable, LOAD_ORT.format(quantize="int8", threads=1), n),
        "sentence-transformers": load_times(st_py, LOAD_ST.format(threads=1, model=model_dir), n),
    }
    print(f"load, 1 thread (fresh process, median of {args.load_samples}; import + load + first embed):")
    st_load = loads["sentence-transformers"][2]
    for name, (wall, cpu, inner, torch_seen) in loads.items():
        print(
            f"  {name:22s} {inner:5.2f} s  (process: wall {wall:5.2f} s, cpu {cpu:5.2f} s; torch loaded: "
            f"{torch_seen})  / st {inner / st_load:5.2f}"
        )

    # --- throughput ---------------------------------------------------------------------
    sets = bench_texts(args.short, args.long)
    T = args.threads  # noqa: N806
    cands: dict[str, tuple[Callable[[list[str]], np.ndarray], int | None]] = {}

    def ort(threads: int, quantize: str | None = None) -> Callable[[list[str]], np.ndarray]:
        return LocalEmbedder(
            EmbeddingConfig(batch_size=args.batch_size, quantize=quantize), threads=threads
        ).embed

    default = f"ort fp32 {T}t"  # what make_embedder gives a process with T cores; the reference
    cands[default] = (ort(T), None)
    for budget in (512, 4096):
        cands[f"ort fp32 {T}t, {budget} tok/run"] = (cands[default][0], budget)
    cands["ort fp32 1t (a stage worker)"] = (ort(1), None)
    cands[f"ort int8 {T}t"] = (ort(T, "int8"), None)
    numpy_rt = None if args.no_numpy else numpy_runtime()
    if numpy_rt is not None and importlib.util.find_spec("threadpoolctl") is None:
        print("numpy runtime skipped: it needs threadpoolctl (pip install threadpoolctl)")
        numpy_rt = None
    if numpy_rt is not None:
        old, rev = numpy_rt
        from threadpoolctl import threadpool_limits

        def run_numpy(texts: list[str]) -> np.ndarray:
            with threadpool_limits(limits=1, user_api="blas"):
                return old.encode(texts, args.batch_size, threads=T)

        cands[f"numpy {T}t (git {rev})"] = (run_numpy, None)

    worker = StWorker(sets, T, args.batch_size)

    st_name = f"sentence-transformers {T}t"
    base_budget = minilm.TOKENS_PER_RUN
    print(f"throughput (texts/s; batch {args.batch_size}; best of {args.rounds} interleaved rounds):")
    for set_name, texts in sets.items():
        tokens = [len(ids) for ids in LocalEmbedder(EmbeddingConfig()).model.token_ids(texts)]
        best: dict[str, float] = {}
        vecs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            s, vecs[st_name] = worker.run(set_name)
            best[st_name] = min(best.get(st_name, float("inf")), s)
            for name, (fn, budget) in cands.items():
                minilm.TOKENS_PER_RUN = budget or base_budget
                t = time.perf_counter()
                vecs[name] = fn(texts)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
            minilm.TOKENS_PER_RUN = base_budget
        print(
            f"  {set_name}: {len(texts)} texts, mean {statistics.mean(tokens):.1f} tokens "
            f"(load {os.getloadavg()[0]:.2f})"
        )
        ref = vecs[st_name]
        for name in [st_name, *cands]:
            rate = len(texts) / best[name]
            print(
                f"    {name:34s} {rate:7.1f}/s  / st {best[st_name] / best[name]:5.2f}x  "
                f"/ {default} {best[default] / best[name]:5.2f}x  "
                f"max|v - st| {np.abs(vecs[name] - ref).max():.1e}"
            )
    worker.close()
    print(f"load {os.getloadavg()[0]:.2f} (1-min average) at the end")


if __name__ == "__main__":
    main()
