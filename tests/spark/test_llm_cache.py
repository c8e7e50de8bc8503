"""The response cache (``llm_cache``) through the task stage, counted at the model server."""

from __future__ import annotations

import pytest
from test_tasks_stage import remote, save_index, write_lines

from lakechain.cli import main
from lakechain.embed.embedders import make_embedder
from lakechain.tasks.stage import run_tasks

CHAT = "/v1/chat/completions"


def setup(settings, srv, tmp_path, questions: list[str]) -> None:
    """Every model on the test server, an index, and one task per question."""
    remote(settings, srv)
    settings.tasks.partitions = 2
    save_index(settings, make_embedder(settings.embedding))
    records = [{"task_id": f"t{i}", "question": q} for i, q in enumerate(questions)]
    settings.tasks.path = write_lines(tmp_path / "tasks.jsonl", records)
    srv.reset()  # count only the run's requests


@pytest.fixture
def results_rows(delta_rows):
    """``tables`` → the ``results`` rows, read as a third-party Delta reader would."""
    return lambda tables: delta_rows(tables, "results")


def cache_rows(tables) -> list[dict]:
    return [r.asDict() for r in tables.read("llm_cache").collect()] if tables.exists("llm_cache") else []


def test_identical_questions_in_one_run_make_one_model_call(
    spark, settings, tables, tmp_path, results_rows, srv
):
    same = "What is Delta Lake?"
    setup(settings, srv, tmp_path, [same, "What is FAISS?", same, same, same])
    settings.tasks.commit_every = 2  # three batches: equal questions still share one
    report = run_tasks(spark, settings, tables, progress=False)
    assert len(srv.requests_for(CHAT)) == 2
    assert (report.ok, report.cache_on, report.cache_hits, report.calls_saved) == (5, True, 3, 3)
    rows = {r["task_id"]: r for r in results_rows(tables)}
    dup = [rows[t] for t in ("t0", "t2", "t3", "t4")]
    assert len({r["cache_key"] for r in dup}) == 1 and len({r["answer"] for r in dup}) == 1
    assert sorted(r["cache_hit"] for r in dup) == [False, True, True, True]
    assert sorted(r["calls_saved"] for r in dup) == [0, 1, 1, 1]
    assert sum(r["prompt_tokens"] for r in dup) == max(r["prompt_tokens"] for r in dup) > 0  # paid once
    assert rows["t1"]["cache_hit"] is False and rows["t1"]["cache_key"] != dup[0]["cache_key"]
    entries = cache_rows(tables)
    assert sorted(e["cache_key"] for e in entries) == sorted(
        {rows["t0"]["cache_key"], rows["t1"]["cache_key"]}
    )
    assert all(e["provider"] == "openai_compatible" and e["model"] == "fake-chat" for e in entries)
    assert all(e["response"] and e["run_id"] == report.run_id for e in entries)


def test_a_forced_rerun_makes_no_model_call_for_cached_prompts(
    spark, settings, tables, tmp_path, results_rows, srv
):
    setup(settings, srv, tmp_path, ["What is Spark?", "What is FAISS?", "What are embeddings?"])
    first = run_tasks(spark, settings, tables, progress=False)
    answers = {r["task_id"]: r["answer"] for r in results_rows(tables)}
    assert (first.ok, first.cache_hits, len(srv.requests_for(CHAT))) == (3, 0, 3)
    srv.reset()
    again = run_tasks(spark, settings, tables, force=True, progress=False)
    assert srv.requests_for(CHAT) == []
    assert (again.ok, again.cache_hits, again.calls_saved, again.prompt_tokens) == (3, 3, 3, 0)
    rows = results_rows(tables)
    assert {r["task_id"]: r["answer"] for r in rows} == answers
    assert all(r["cache_hit"] and r["run_id"] == again.run_id for r in rows)
    assert len(cache_rows(tables)) == 3  # nothing stored twice


def test_an_error_is_never_cached_and_the_next_run_calls_again(
    spark, settings, tables, tmp_path, results_rows, srv
):
    setup(settings, srv, tmp_path, ["What is Spark?"])
    settings.tasks.partitions = 1
    settings.tasks.max_attempts = 1
    srv.script("ok", "500")  # the retrieval's embedding call succeeds, the answer call fails
    failed = run_tasks(spark, settings, tables, progress=False)
    assert (failed.error, len(srv.requests_for(CHAT))) == (1, 1)
    (row,) = results_rows(tables)
    assert row["status"] == "error" and row["cache_hit"] is False and row["cache_key"]
    assert cache_rows(tables) == []
    retried = run_tasks(spark, settings, tables, retry_failed=True, progress=False)
    assert (retried.ok, retried.cache_hits, len(srv.requests_for(CHAT))) == (1, 0, 2)
    assert [e["cache_key"] for e in cache_rows(tables)] == [row["cache_key"]]


def test_with_the_cache_off_every_task_calls_every_time(spark, settings, tables, tmp_path, results_rows, srv):
    setup(settings, srv, tmp_path, ["What is Spark?"] * 3)
    settings.tasks.cache = "off"
    first = run_tasks(spark, settings, tables, progress=False)
    again = run_tasks(spark, settings, tables, force=True, progress=False)
    assert len(srv.requests_for(CHAT)) == 6
    assert (first.cache_on, first.cache_hits, again.cache_hits) == (False, 0, 0)
    assert all(r["cache_key"] is None and r["cache_hit"] is False for r in results_rows(tables))
    assert cache_rows(tables) == []


def test_cache_stats_and_clear_from_the_cli(spark, settings, tables, tmp_path, srv, capsys):
    setup(settings, srv, tmp_path, ["What is Spark?", "What is FAISS?", "What is Spark?"])
    run_tasks(spark, settings, tables, progress=False)
    root = [
        "--set",
        f"storage.root={settings.storage.root}",
        "--set",
        f"storage.schema={settings.storage.schema_}",
    ]
    capsys.readouterr()
    assert main(["cache", "stats", "--config", "conf/local.yaml", *root]) == 0
    out = capsys.readouterr().out
    assert "llm_cache: 2 entries" in out and "1 tasks answered from the cache, 1 model calls saved" in out
    assert "openai_compatible/fake-chat: 2 entries" in out
    assert main(["cache", "clear", "--model", "gpt-4o", *root]) == 0
    assert "0 entries of model gpt-4o deleted" in capsys.readouterr().out
    assert main(["cache", "clear", "--model", "fake-chat", *root]) == 0
    assert "2 entries of model fake-chat deleted" in capsys.readouterr().out
    assert cache_rows(tables) == []
