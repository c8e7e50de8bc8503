"""``run-tasks --estimate`` against the local OpenAI-compatible server, checked by the run that follows."""

from __future__ import annotations

import random
import time

from test_tasks_stage import remote, save_index, write_lines

from lakechain.config import PriceConfig
from lakechain.embed.embedders import make_embedder
from lakechain.tasks.estimate import completion_tokens
from lakechain.tasks.stage import run_tasks
from lakechain.testing.openai_server import default_chat_reply

CHAT = "/v1/chat/completions"
N_TASKS = 1000
WORDS = "delta lake spark table commit merge index vector passage answer batch cluster".split()


def seeded_lengths(seed: int):
    """Replies of the default (cited) answer padded with a seeded random number of words
    (uniform 10–150): a known output-length distribution, drawn in request order."""
    rng = random.Random(seed)

    def reply(body: dict) -> str:
        return (
            default_chat_reply(body) + " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 150)))
        )

    return reply


def test_an_estimate_on_1000_tasks_is_within_15_percent_of_the_next_run(
    spark, settings, tables, tmp_path, srv
):
    remote(settings, srv)
    settings.tasks.partitions = 2
    settings.prices = {"fake-chat": PriceConfig(input_per_1m=1.0, output_per_1m=4.0)}
    save_index(settings, make_embedder(settings.embedding))
    records = [
        {
            "task_id": f"t{i}",
            "question": f"Question {i}: what does {' '.join(WORDS[: 1 + i % len(WORDS)])} mean?",
        }
        for i in range(N_TASKS)
    ]
    settings.tasks.path = write_lines(tmp_path / "tasks.jsonl", records)
    srv.reset()
    srv.usage_tokenizer = "tiktoken"
    completion_tokens("warm up", "fake-chat")  # loaded before the first call, which times out at 0.5 s
    srv.chat_responder = seeded_lengths(7)

    t0 = time.monotonic()
    pilot = run_tasks(spark, settings, tables, progress=False, estimate=True)
    t_estimate = time.monotonic() - t0
    est = pilot.estimate
    assert est is not None and pilot.ok == settings.tasks.estimate_pilot == 20
    assert (est["pending"], est["pilot_tasks"], est["remaining"]) == (N_TASKS, 20, N_TASKS - 20)
    assert len(srv.requests_for(CHAT)) == 20  # counting the rest called no model

    srv.requests.clear()
    t0 = time.monotonic()
    run = run_tasks(spark, settings, tables, progress=False)
    t_run = time.monotonic() - t0
    print(f"\nestimate {t_estimate:.1f}s, run {t_run:.1f}s; estimate {est}; run prompt "
          f"{run.prompt_tokens} completion {run.completion_tokens} cost {run.cost_usd:.6f}; "
          f"phases: estimate {pilot.timings}, run {run.timings}")  # fmt: skip
    assert (run.pending, run.skipped) == (N_TASKS - 20, 20)  # the pilot's results are kept
    assert len(srv.requests_for(CHAT)) == N_TASKS - 20  # and not redone
    assert est["prompt_tokens"] == run.prompt_tokens  # counted exactly, after retrieval
    projected = est["prompt_tokens"] + est["completion_tokens"]
    actual = run.prompt_tokens + run.completion_tokens
    assert abs(projected - actual) <= 0.15 * actual
    assert abs(est["cost_usd"] - run.cost_usd) <= 0.15 * run.cost_usd
    assert est["completion_tokens_low"] <= run.completion_tokens <= est["completion_tokens_high"]

    rows = [r.asDict() for r in tables.read("run_estimates").collect()]
    assert len(rows) == 1
    row = rows[0]
    assert (row["run_id"], row["model"], row["pending"], row["pilot_tasks"]) == (
        pilot.run_id,
        "fake-chat",
        N_TASKS,
        20,
    )
    assert {k: row[k] for k in est} == est
    assert row["created_at"] is not None and row["wall_s_low"] <= row["wall_s"] <= row["wall_s_high"]


def test_cli_estimate_runs_only_the_pilot_and_counts_image_calls(
    settings, tmp_path, srv, capsys, delta_rows, tables
):
    """Image-only tasks: no index is needed; each left is one image call at the per-image price."""
    from lakechain.cli import main

    records = [{"task_id": f"i{i}", "image_generation": {"prompt": f"picture {i}"}} for i in range(30)]
    sets = {
        "storage.root": settings.storage.root, "storage.schema": settings.storage.schema_,
        "tasks.path": write_lines(tmp_path / "tasks.jsonl", records), "tasks.estimate_pilot": "5",
        "tasks.write_image_files": "false", "images.provider": "openai_compatible",
        "images.base_url": srv.url, "images.model": "dall-e-3", "images.size": "64x64",
    }  # fmt: skip
    capsys.readouterr()
    assert (
        main(["run-tasks", "--estimate", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]) == 0
    )
    out = capsys.readouterr().out
    assert "estimate: 30 pending tasks, 5 run as a pilot (kept), 25 left" in out
    assert "image calls 25" in out and "$1.0000" in out  # 25 × dall-e-3's $0.04
    assert len(srv.requests_for("/v1/images/generations")) == 5
    assert len(delta_rows(tables, "results")) == 5
