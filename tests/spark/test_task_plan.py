"""Which tasks a run executes: the join of ``tasks`` with ``results`` (the exactly-once rule)."""

from __future__ import annotations

import pytest

from lakechain.storage.schemas import RESULTS, TASKS, TASKS_DDL
from lakechain.storage.tables import Tables
from lakechain.tasks.parse import parse_lines
from lakechain.tasks.stage import _pending

LINES = [
    '{"task_id": "new", "question": "Q new"}',
    '{"task_id": "ok", "question": "Q ok"}',
    '{"task_id": "failed", "question": "Q failed"}',
    '{"task_id": "changed", "question": "Q changed, new text"}',
    '{"task_id": "invalid", "question": ""}',
]


@pytest.fixture(scope="module")
def plan_tables(spark, base_settings, tmp_path_factory):
    """``tasks`` from LINES and ``results`` holding: ok (same input), failed (error), changed
    (another input hash), invalid (error) and a task no longer in the input."""
    s = base_settings.model_copy(deep=True)
    s.storage.root = str(tmp_path_factory.mktemp("plan") / "lake")
    s.storage.schema_ = "t_plan"
    tables = Tables(spark, s)
    tasks = {t.task_id: t for t in parse_lines(LINES, 100)}
    tables.write(spark.createDataFrame([t.as_dict() for t in tasks.values()], TASKS_DDL), TASKS)
    prev = [("ok", tasks["ok"].input_hash, "ok"), ("failed", tasks["failed"].input_hash, "error"),
            ("changed", "old-hash", "ok"), ("invalid", tasks["invalid"].input_hash, "error"),
            ("gone", "h", "ok")]  # fmt: skip
    tables.write(spark.createDataFrame(prev, "task_id string, input_hash string, status string"), RESULTS)
    return tables


def ids(plan) -> list[str]:
    return sorted(r["task_id"] for r in plan.pending.select("task_id").collect())


def test_default_run_does_new_and_changed_tasks_only(plan_tables):
    plan = _pending(plan_tables, retry_failed=False, force=False)
    assert ids(plan) == ["changed", "new"]
    assert (plan.counts["done_ok"], plan.counts["done_error"], plan.counts["total"]) == (1, 2, 5)


def test_retry_failed_adds_error_rows_but_never_ok_rows(plan_tables):
    plan = _pending(plan_tables, retry_failed=True, force=False)
    assert ids(plan) == ["changed", "failed", "invalid", "new"]
    assert (plan.counts["done_ok"], plan.counts["done_error"]) == (1, 0)


def test_force_redoes_everything(plan_tables):
    assert ids(_pending(plan_tables, retry_failed=False, force=True)) == [
        "changed",
        "failed",
        "invalid",
        "new",
        "ok",
    ]


def test_only_questions_that_parsed_need_the_index(plan_tables):
    assert _pending(plan_tables, retry_failed=True, force=False).counts["asking"] == 3
