"""``lakechain pipeline --config conf/local-llm.yaml``: a real local LLM end to end, and a
SIGKILLed run that must leave no llama.cpp server behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lakechain.chains.grounding import echo_overlap
from lakechain.cli import main
from lakechain.runtime import llamacpp

REPO = Path(__file__).resolve().parents[2]
MODEL = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture(scope="module")
def llm_lake(tmp_path_factory, spark):
    base = tmp_path_factory.mktemp("local-llm")
    root, state = base / "lake", base / "llamacpp"
    args = [
        "--config",
        str(REPO / "conf" / "local-llm.yaml"),
        "--set",
        f"storage.root={root}",
        "--set",
        f"chat.llamacpp.state_dir={state}",
        "--set",
        f"corpus.path={REPO / 'data' / 'corpus'}",
        "--set",
        f"tasks.path={REPO / 'data' / 'tasks.jsonl'}",
        "--set",
        "storage.schema=local_llm",
    ]  # the suite's session: one metastore, a schema per root
    started = time.monotonic()
    assert main(["pipeline", *args]) == 0
    print(f"pipeline with the local LLM: {time.monotonic() - started:.1f}s")
    return root, state, args


def _rows(args, capsys, query: str) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["sql", *args, "--format", "json", query]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return {r["task_id"]: r for r in rows}


def test_pipeline_answers_every_sample_task_with_the_local_llm(llm_lake, capsys):
    root, state, args = llm_lake
    assert not llamacpp.supervisors_under(state), "the run's hold ended: its server must be stopped"
    columns = ("task_id, question, answer, sources, qa_status, image_status, image_prompt_used, "
               "image_bytes AS png, prompt_tokens, completion_tokens, chat_model, error, grounded_share, "
               "not_grounded")  # fmt: skip
    rows = _rows(args, capsys, f"SELECT {columns} FROM results")
    lines = [json.loads(x) for x in (REPO / "data" / "tasks.jsonl").read_text().splitlines() if x.strip()]
    assert len(rows) == len(lines)
    assert rows["bad-empty-question"]["qa_status"] == "error"
    asked = {t: r for t, r in rows.items() if r["question"] and t != "bad-empty-question"}
    assert len(asked) == 10
    for task_id, r in asked.items():
        assert r["qa_status"] == "ok", (task_id, r["error"])
        assert r["answer"].strip() and r["sources"], task_id
        assert r["chat_model"] == MODEL, task_id
        # Real token counts from llama.cpp: the prompt alone is hundreds of tokens.
        assert r["prompt_tokens"] > 50 and r["completion_tokens"] > 0, task_id
        # The guard's verdict is in the row: a share of supported sentences, and the flag.
        assert 0.0 <= r["grounded_share"] <= 1.0 and isinstance(r["not_grounded"], bool), task_id
    multi = next(r for r in rows.values() if r["question"] == "Tell me about LangChain.")
    assert (multi["qa_status"], multi["image_status"]) == ("ok", "ok") and multi["png"] > 0
    illustrated = rows["embeddings"]
    assert illustrated["image_status"] == "ok" and illustrated["png"] > 0
    written = illustrated["image_prompt_used"]
    assert written and echo_overlap(written, f"{illustrated['question']} {illustrated['answer']}") < 0.5


def test_ask_returns_a_cited_checked_answer(llm_lake, capsys):
    _, state, args = llm_lake
    capsys.readouterr()
    assert main(["ask", *args, "--json", "What is Azure Databricks?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == MODEL and out["sources"] and out["usage"]["completion_tokens"] > 0
    assert {s["ref"] for s in out["sources"] if s["cited"]} == set(out["citations"])
    assert out["grounded_share"] is not None and 0.0 <= out["grounded_share"] <= 1.0
    assert out["not_grounded"] == (out["grounded_share"] < 0.5)
    assert not llamacpp.supervisors_under(state)


def test_a_sigkilled_run_leaves_no_llama_server(llm_lake, tmp_path):
    root, _, args = llm_lake
    state = tmp_path / "llamacpp"
    args = [*args, "--set", f"chat.llamacpp.state_dir={state}", "--force"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakechain.cli", "run-tasks", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        # Mid-run: the server is up and a Spark Python worker has registered as its client.
        while proc.poll() is None and time.monotonic() < deadline:
            if llamacpp.supervisors_under(state) and any(state.glob("*/clients/*")):
                break
            time.sleep(0.1)
        time.sleep(1.0)  # model calls in flight
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run must be killed mid-way, not finish"
    killed = time.monotonic()
    while llamacpp.supervisors_under(state):
        assert time.monotonic() - killed < 10, "a llama.cpp server outlived the killed run"
        time.sleep(0.1)
    print(f"server gone {time.monotonic() - killed:.2f}s after the kill")
