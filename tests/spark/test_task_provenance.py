"""Staleness (``tasks.recompute_on``) and the hard budget, on the Spark task stage."""

from __future__ import annotations

import pytest
from langchain_core.prompts import ChatPromptTemplate
from test_tasks_stage import remote, write_lines  # the suite's fake-server settings and input writer

from lakechain.chains import prompts
from lakechain.cli import _verdict, budget_stopped
from lakechain.config import PriceConfig
from lakechain.storage.schemas import RESULT_COLUMNS, RESULTS, TASKS, TASKS_DDL, ddl
from lakechain.tasks.parse import parse_lines
from lakechain.tasks.provenance import PART_COLUMNS, run_parts
from lakechain.tasks.stage import _pending, run_tasks

IMAGES = "/v1/images/generations"


def image_tasks(tmp_path, n: int) -> str:
    """``n`` image tasks: no index needed; with ``images.refine_prompts`` each also calls the chat model."""
    return write_lines(
        tmp_path / "tasks.jsonl", [{"task_id": f"t{i:02d}", "image_prompt": f"A lake {i}"} for i in range(n)]
    )


@pytest.fixture
def refine_run(settings, srv, tmp_path):
    """Settings on the fake server with 6 image tasks whose prompts the chat model refines."""
    remote(settings, srv)
    settings.images.refine_prompts = True
    settings.tasks.path = image_tasks(tmp_path, 6)
    return settings


def test_a_changed_chat_model_makes_done_tasks_pending_again(spark, refine_run, tables, srv, delta_rows):
    first = run_tasks(spark, refine_run, tables, progress=False)
    assert (first.ok, first.recomputed) == (6, {})
    before = {r["task_id"]: r for r in delta_rows(tables, RESULTS)}
    assert all(
        r["chat_fp"] and r["prompt_fp"] and r["image_fp"] and r["fingerprint"] for r in before.values()
    )

    assert run_tasks(spark, refine_run, tables, progress=False).pending == 0  # nothing changed
    refine_run.chat.model = "fake-chat-2"
    again = run_tasks(spark, refine_run, tables, progress=False)
    assert (again.pending, again.ok, again.recomputed) == (6, 6, {"model": 6})
    assert "pending again: 6 for model" in str(again)
    after = {r["task_id"]: r for r in delta_rows(tables, RESULTS)}
    assert all(after[t]["chat_fp"] != before[t]["chat_fp"] for t in before)
    assert all(after[t]["fingerprint"] != before[t]["fingerprint"] for t in before)


def test_a_changed_prompt_template_makes_done_tasks_pending_again(
    spark, refine_run, tables, monkeypatch, delta_rows
):
    run_tasks(spark, refine_run, tables, progress=False)
    edited = ChatPromptTemplate.from_messages(
        [("system", prompts.REFINE_SYSTEM + " Prefer watercolour."), ("human", prompts.REFINE_HUMAN)]
    )
    monkeypatch.setattr(prompts, "refine_prompt", edited)
    again = run_tasks(spark, refine_run, tables, progress=False)
    assert (again.pending, again.recomputed) == (6, {"prompt": 6})

    refine_run.tasks.recompute_on = ["input", "model"]  # prompts not a reason: nothing reruns
    monkeypatch.setattr(prompts, "refine_prompt", ChatPromptTemplate.from_messages([("human", "{prompt}")]))
    assert run_tasks(spark, refine_run, tables, progress=False).pending == 0


LINES = [
    '{"task_id": "q1", "question": "Q one"}',
    '{"task_id": "q2", "question": "Q two"}',
    '{"task_id": "img", "image_prompt": "A lake"}',
]


@pytest.fixture
def answered(spark, settings, tables):
    """``tasks`` from LINES and ``results`` as a run at index build ``idx-1`` left them (all ok)."""
    tasks = parse_lines(LINES, 100)
    tables.write(spark.createDataFrame([t.as_dict() for t in tasks], TASKS_DDL), TASKS)
    parts = run_parts(settings, "idx-1")
    rows = []
    for t in tasks:
        asks = t.question is not None
        rows.append(
            {
                "task_id": t.task_id,
                "input_hash": t.input_hash,
                "status": "ok",
                "chat_fp": parts.chat_fp if asks else None,
                "image_fp": None if asks else parts.image_fp,
                "prompt_fp": parts.prompt_fp if asks else None,
                "retrieval_fp": parts.retrieval_fp if asks else None,
                "index_checksum": "idx-1" if asks else None,
            }
        )
    cols = ["task_id", "input_hash", "status", *PART_COLUMNS, "index_checksum"]
    tables.write(spark.createDataFrame(rows, ddl([c for c in RESULT_COLUMNS if c[0] in cols])), RESULTS)
    return settings


def pending_ids(plan) -> list[str]:
    return sorted(r["task_id"] for r in plan.pending.select("task_id").collect())


def test_a_changed_index_reanswers_questions_only_when_configured(answered, tables):
    new_index = run_parts(answered, "idx-2")
    default = _pending(tables, False, False, new_index, ["input", "model", "prompt"])
    assert (default.counts["pending"], default.counts["stale_model"]) == (0, 0)

    plan = _pending(tables, False, False, new_index, ["input", "model", "prompt", "index"])
    assert pending_ids(plan) == ["q1", "q2"]  # the image task used no index
    assert plan.counts["stale_index"] == 2
    same = _pending(tables, False, False, run_parts(answered, "idx-1"), ["input", "index"])
    assert same.counts["pending"] == 0


def test_a_changed_retrieval_setting_counts_per_reason(answered, tables):
    answered.retrieval.k = 9
    answered.images.size = "128x128"
    plan = _pending(tables, False, False, run_parts(answered, "idx-1"), ["input", "model", "retrieval"])
    assert pending_ids(plan) == ["img", "q1", "q2"]
    assert (plan.counts["stale_retrieval"], plan.counts["stale_model"], plan.counts["stale_input"]) == (
        2,
        1,
        0,
    )


def test_results_from_before_provenance_are_migrated_not_recomputed(
    spark, settings, tables, srv, tmp_path, delta_rows
):
    remote(settings, srv)
    settings.tasks.path = image_tasks(tmp_path, 3)
    old = [c for c in RESULT_COLUMNS if c[0] not in {*PART_COLUMNS, "fingerprint", "cost_usd"}]
    t0 = parse_lines(['{"task_id": "t00", "image_prompt": "A lake 0"}'], 100)[0]
    tables.write(
        spark.createDataFrame([{"task_id": "t00", "input_hash": t0.input_hash, "status": "ok"}], ddl(old)),
        RESULTS,
    )

    report = run_tasks(spark, settings, tables, progress=False)
    assert (report.pending, report.skipped, report.recomputed) == (2, 1, {})
    rows = {r["task_id"]: r for r in delta_rows(tables, RESULTS)}
    assert rows["t00"]["fingerprint"] is None and rows["t01"]["fingerprint"] is not None
    assert len(srv.requests_for(IMAGES)) == 2


def test_a_budget_stops_at_a_batch_boundary_and_a_larger_one_resumes(
    spark, settings, tables, srv, tmp_path, delta_rows
):
    remote(settings, srv)
    # one cent a task, exactly (the chat model is unused, yet a cost budget needs its price)
    settings.prices = {"fake-image": PriceConfig(per_image=0.01), "fake-chat": PriceConfig()}
    settings.tasks.path = image_tasks(tmp_path, 40)
    settings.tasks.commit_every = 10
    settings.tasks.max_cost_usd = 0.25
    stopped = run_tasks(spark, settings, tables, progress=False)
    assert stopped.budget_stop and "budget reached" in stopped.budget_stop
    assert 0 < stopped.processed < 40 and stopped.cost_usd == pytest.approx(stopped.processed * 0.01)
    rows = delta_rows(tables, RESULTS)
    assert len(rows) == len({r["task_id"] for r in rows}) == stopped.processed  # every staged batch committed
    assert all(r["cost_usd"] == pytest.approx(0.01) for r in rows)
    assert tables.read("results_staging").count() == 0
    assert _verdict(budget_stopped(stopped)) == 1

    settings.tasks.max_cost_usd = 1.0
    resumed = run_tasks(spark, settings, tables, progress=False)
    assert (resumed.budget_stop, resumed.skipped, resumed.ok) == (
        None,
        stopped.processed,
        40 - stopped.processed,
    )
    assert len(delta_rows(tables, RESULTS)) == 40
    assert len(srv.requests_for(IMAGES)) == 40  # nothing was drawn twice
