"""Run planning (which tasks a run executes), the report and progress lines."""

from __future__ import annotations

import io

from lakechain.tasks.parse import parse_lines
from lakechain.tasks.report import Progress, RunReport, error_kind, plan_run

LINES = [
    '{"task_id": "new", "question": "Q new"}',
    '{"task_id": "ok", "question": "Q ok"}',
    '{"task_id": "failed", "question": "Q failed"}',
    '{"task_id": "changed", "question": "Q changed, new text"}',
    '{"task_id": "invalid", "question": ""}',
]


def tasks_and_existing():
    tasks = {t.task_id: t for t in parse_lines(LINES, 100)}
    existing = {
        "ok": (tasks["ok"].input_hash, "ok"),
        "failed": (tasks["failed"].input_hash, "error"),
        "changed": ("old-hash", "ok"),
        "invalid": (tasks["invalid"].input_hash, "error"),
        "gone": ("h", "ok"),  # a task no longer in the input is left alone
    }
    return list(tasks.values()), existing


def ids(plan) -> list[str]:
    return sorted(t.task_id for t in plan.pending)


def test_default_run_does_new_and_changed_tasks_only():
    tasks, existing = tasks_and_existing()
    plan = plan_run(tasks, existing)
    assert ids(plan) == ["changed", "new"]
    assert (plan.done_ok, plan.done_error) == (1, 2)


def test_retry_failed_adds_error_rows_but_never_ok_rows():
    tasks, existing = tasks_and_existing()
    plan = plan_run(tasks, existing, retry_failed=True)
    assert ids(plan) == ["changed", "failed", "invalid", "new"]
    assert (plan.done_ok, plan.done_error) == (1, 0)


def test_force_redoes_everything():
    tasks, existing = tasks_and_existing()
    assert ids(plan_run(tasks, existing, force=True)) == ["changed", "failed", "invalid", "new", "ok"]


def test_fixing_an_invalid_line_makes_it_pending_again():
    tasks, existing = tasks_and_existing()
    fixed = parse_lines(['{"task_id": "invalid", "question": "now fine"}'], 100)
    assert ids(plan_run(fixed, existing)) == ["invalid"]


def test_report_text_and_dict():
    r = RunReport(run_id="run-1", source="tasks.jsonl", tasks_total=10, pending=8, ok=6, error=2, skipped=2)
    r.wall_s, r.prompt_tokens, r.errors_by_reason = 4.0, 1234, {"qa: answer failed after 5 attempts": 2}
    text = str(r)
    assert "10 in input, 8 pending, 2 skipped" in text and "6 ok, 2 error" in text
    assert "2.00 tasks/s" in text and "2× qa: answer failed after 5 attempts" in text
    d = r.as_dict()
    assert d["processed"] == 8 and d["throughput"] == 2.0 and d["prompt_tokens"] == 1234


def test_error_kind_groups_messages_by_their_cause():
    a = error_kind("qa: answer failed after 5 attempts: ProviderError: rate limit (HTTP 429)")
    b = error_kind("qa: answer failed after 5 attempts: ProviderError: server (HTTP 500)")
    assert a == b == "qa: answer failed after 5 attempts"
    assert error_kind(None) == "unknown"


def test_progress_lines_show_counts_tokens_and_eta():
    now = [0.0]
    out = io.StringIO()
    p = Progress(100, stream=out, clock=lambda: now[0])
    now[0] = 10.0
    p.update(ok=18, error=2, tokens=500)
    line = out.getvalue().strip()
    assert "20/100 tasks, 18 ok, 2 error, 500 tokens" in line and "2.0 tasks/s" in line and "ETA 40s" in line
    now[0] = 50.0
    assert "ETA 0s" in p.update(ok=80, error=0, tokens=0)
