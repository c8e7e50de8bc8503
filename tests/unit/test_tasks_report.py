"""The task stage's report and its grouping of errors."""

from __future__ import annotations

from lakechain.tasks.report import RunReport, error_kind


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


def test_error_kind_groups_bad_input_rows_whatever_their_line():
    a = error_kind("invalid task input: line 5: qa.question is empty")
    b = error_kind("invalid task input: line 12: qa.question is empty")
    assert a == b == "invalid task input: line N"
