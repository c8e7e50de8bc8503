"""Fixed costs of small work: the seed pipeline, ``lakechain sql`` and ``lakechain ask``, from a
cold CLI and against a warm ``lakechain server``, each as a user runs it (a new process).

    .venv/bin/python bench/bench_fixed_costs.py [--repeat 3] [--port 15051] [--json out.json]

Seed-sized input: the tutorial's three texts (``examples/seed_walkthrough.py``) and two
questions. Runs, in one process tree, on two fresh roots:

* cold: ``lakechain pipeline`` then ``lakechain sql`` on root A, each starting its own JVM
  (the baseline the warm numbers are divided by);
* warm: ``lakechain server start`` on root B, then the same pipeline and ``sql`` through it;
  ``pipeline`` is timed on its first run after the start (fresh tables, as cold) and again
  with ``--force`` (every task re-answered);
* ``ask`` needs no Spark: "cold" is its first run after the index build, "warm" the median
  of the next runs (the OS file cache and Python's bytecode cache are then hot; the page
  cache is not dropped, which needs root and would slow every other process).

Targets (issue #15): pipeline ≤ 30 s cold and ≤ 8 s warm, ``sql`` ≤ 2 s warm, ``ask`` ≤ 2 s
warm and ≤ 5 s cold. Each line prints seconds, the ratio to its target and, for warm
numbers, the ratio to the cold run of the same command.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is Azure Databricks?", "Tell me about LangChain."]


def seed_texts() -> list[str]:
    spec = importlib.util.spec_from_file_location("seed", REPO / "examples" / "seed_walkthrough.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.SEED_TEXTS)


def write_inputs(base: Path) -> tuple[Path, Path]:
    corpus = base / "corpus"
    corpus.mkdir()
    for i, text in enumerate(seed_texts()):
        (corpus / f"seed_{i}.txt").write_text(text + "\n", encoding="utf-8")
    tasks = base / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"qa": {"question": q}}) + "\n" for q in QUESTIONS), encoding="utf-8")
    return corpus, tasks


class Lakechain:
    """The CLI on one root, timed; a failed command stops the benchmark with its output."""

    def __init__(self, root: Path, corpus: Path, tasks: Path) -> None:
        self.settings = ["--config", str(REPO / "conf" / "local.yaml"), "--set", f"storage.root={root}",
                         "--set", f"corpus.path={corpus}", "--set", f"tasks.path={tasks}",
                         "--set", "spark.master=local[2]", "--set", "spark.shuffle_partitions=2"]  # fmt: skip
        drop = ("SPARK_REMOTE", "SPARK_CONNECT_AUTHENTICATE_TOKEN", "LAKECHAIN_CONFIG")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])

    def run(self, *argv: str) -> float:
        cmd = [sys.executable, "-m", "lakechain.cli", *argv, *self.settings]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
        return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="runs per warm measurement (median)")
    ap.add_argument("--port", type=int, default=15051, help="the warm server's port")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` still stops the server below
    base = Path(tempfile.mkdtemp(prefix="bench-fixed-costs-"))
    corpus, tasks = write_inputs(base)
    cold = Lakechain(base / "cold", corpus, tasks)
    warm = Lakechain(base / "warm", corpus, tasks)
    query = "SELECT task_id, qa_status FROM results ORDER BY task_id"
    r: dict[str, float] = {}
    try:
        r["pipeline_cold"] = cold.run("pipeline")
        r["sql_cold"] = cold.run("sql", query)
        r["ask_cold"] = cold.run("ask", QUESTIONS[0])
        r["ask_warm"] = statistics.median(cold.run("ask", QUESTIONS[0]) for _ in range(args.repeat))
        r["server_start"] = warm.run("server", "start", "--port", str(args.port))
        r["pipeline_warm"] = warm.run("pipeline")
        r["pipeline_warm_force"] = warm.run("pipeline", "--force")
        r["sql_warm"] = statistics.median(warm.run("sql", query) for _ in range(args.repeat))
    finally:
        r["server_stop"] = warm.run("server", "stop")
        shutil.rmtree(base, ignore_errors=True)
    rows = [  # name, seconds, target, cold baseline
        ("seed pipeline, cold CLI", r["pipeline_cold"], 30.0, None),
        ("seed pipeline, warm server (first run)", r["pipeline_warm"], 8.0, r["pipeline_cold"]),
        ("seed pipeline, warm server (--force)", r["pipeline_warm_force"], 8.0, r["pipeline_cold"]),
        ("lakechain sql, cold CLI", r["sql_cold"], None, None),
        ("lakechain sql, warm server", r["sql_warm"], 2.0, r["sql_cold"]),
        ("lakechain ask, cold (first after build)", r["ask_cold"], 5.0, None),
        ("lakechain ask, warm", r["ask_warm"], 2.0, r["ask_cold"]),
        ("server start (once)", r["server_start"], None, None),
        ("server stop", r["server_stop"], None, None),
    ]
    print(f"{'measure':44} {'seconds':>8} {'target':>7} {'/target':>8} {'/cold':>6}")
    for name, secs, target, baseline in rows:
        t = f"{target:7.1f} {secs / target:7.2f}x" if target else f"{'':7} {'':8}"
        b = f"{secs / baseline:5.2f}x" if baseline else ""
        print(f"{name:44} {secs:8.2f} {t} {b}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
