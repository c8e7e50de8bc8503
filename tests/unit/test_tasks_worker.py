"""Executor-side helpers without Spark: one retry layer, image files, result rows."""

from __future__ import annotations

import os

from lakechain.config import load_settings
from lakechain.storage.schemas import EXECUTED_COLUMNS
from lakechain.tasks.execute import TaskOutcome
from lakechain.tasks.parse import parse_lines
from lakechain.tasks.results import RunContext, outcome_row, parse_error_row
from lakechain.tasks.worker import image_file_path, save_png, worker_settings

CTX = RunContext("run-1", "chat-m", "image-m", "embed-m", "abc123", 7)
NAMES = [n for n, _ in EXECUTED_COLUMNS]


def test_worker_settings_leave_retries_to_the_task_stage():
    s = load_settings(
        None, ["chat.max_retries=6", "chat.timeout_s=120", "images.timeout_s=5", "tasks.timeout_s=30"]
    )
    w = worker_settings(s)
    assert (w.chat.max_retries, w.images.max_retries, w.embedding.max_retries) == (0, 0, 0)
    assert (w.chat.timeout_s, w.images.timeout_s, w.embedding.timeout_s) == (30, 5, 30)
    assert s.chat.max_retries == 6  # the caller's settings are untouched


def test_worker_services_are_rebuilt_when_an_api_key_changes(monkeypatch):
    from lakechain.tasks.worker import worker_services

    remote = ["provider=openai_compatible", "base_url=http://127.0.0.1:9/v1", "api_key=${env:LC_KEY}"]
    overrides = [f"{sec}.{kv}" for sec in ("embedding", "chat", "images") for kv in remote]
    overrides += ["embedding.dimensions=8", "chat.model=m", "images.model=m"]
    monkeypatch.setenv("LC_KEY", "key-one")
    first = worker_services(worker_settings(load_settings(None, overrides)), None)
    monkeypatch.setenv("LC_KEY", "key-two")  # a rotated secret, same worker process
    second = worker_services(worker_settings(load_settings(None, overrides)), None)
    assert second is not first
    assert second.chains.chat_model.openai_api_key.get_secret_value() == "key-two"


def test_image_paths_are_safe_and_unique(tmp_path):
    assert image_file_path("/x", "task-1.a") == "/x/task-1.a.png"
    a, b = image_file_path("/x", "../etc/passwd"), image_file_path("/x", "..-etc-passwd")
    assert os.path.dirname(a) == "/x" and "/" not in os.path.basename(a)
    assert image_file_path("/x", "a/b") != image_file_path("/x", "a_b") and a != b
    path = save_png(str(tmp_path / "images"), "t 1", b"\x89PNG data")
    assert open(path, "rb").read() == b"\x89PNG data"
    assert [p for p in os.listdir(tmp_path / "images") if p.endswith(".tmp")] == []


def test_outcome_row_is_complete_and_stamped_with_lineage():
    out = TaskOutcome("t1", answer="A [1]", qa_status="ok", attempts=2, prompt_tokens=10, completion_tokens=3)
    out.sources = [{"chunk_id": "c", "doc_id": "d", "score": 0.5, "snippet": "dropped"}]
    task = {"task_id": "t1", "question": "Q?", "image_prompt": None, "illustrate": False, "input_hash": "h"}
    row = outcome_row(task, out, CTX)
    assert list(row) == NAMES
    assert row["status"] == "ok" and row["image_status"] == "skipped" and row["error"] is None
    assert row["sources"] == [{"chunk_id": "c", "doc_id": "d", "score": 0.5}]
    assert (row["chat_model"], row["embedding_model"], row["index_checksum"], row["index_table_version"]) == (
        "chat-m",
        "embed-m",
        "abc123",
        7,
    )
    assert row["image_model"] is None and row["run_id"] == "run-1" and row["created_at"].tzinfo is not None


def test_failed_branch_makes_the_row_an_error_naming_the_branch():
    out = TaskOutcome("t2", qa_status="ok", answer="x", image_status="error", image_error="HTTP 500")
    row = outcome_row({"task_id": "t2", "image_prompt": "P"}, out, CTX)
    assert row["status"] == "error" and row["error"] == "image: HTTP 500" and row["image_model"] == "image-m"


def test_parse_error_row_carries_the_reason():
    (task,) = parse_lines(['{"qa": {"question": ""}}'], 100)
    row = parse_error_row(task.as_dict(), CTX)
    assert list(row) == NAMES
    assert row["status"] == row["qa_status"] == row["image_status"] == "error"
    assert "invalid task input: line 1: qa.question is empty" == row["error"]
    assert row["task_id"] == task.task_id and row["input_hash"] == task.input_hash


def test_outcome_row_carries_the_groundedness_verdict_and_image_facts():
    png = (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + (64).to_bytes(4, "big")
        + (32).to_bytes(4, "big")
        + b"rest"
    )
    out = TaskOutcome("t2", answer="A [1]", qa_status="ok", grounded_share=0.5, not_grounded=True)
    out.image_png, out.image_status = png, "ok"
    task = {"task_id": "t2", "question": "Q?", "image_prompt": "P", "illustrate": False, "input_hash": "h"}
    row = outcome_row(task, out, CTX)
    assert (row["grounded_share"], row["not_grounded"]) == (0.5, True)
    assert (row["image_width"], row["image_height"], row["image_bytes"], row["image_png"]) == (
        64,
        32,
        len(png),
        None,
    )
    assert outcome_row(task, out, CTX, keep_png=True)["image_png"] == png


def test_a_partition_of_only_bad_rows_converts_to_the_prepared_schema(tmp_path):
    """Columns no row sets must not become all-NaN floats: Spark's Arrow conversion of such a
    column to a string column fails the whole batch (found by tests/chaos)."""
    import pandas as pd
    from pyspark.sql.conversion import PandasToArrowConversion
    from pyspark.sql.types import BooleanType, StringType, StructField, StructType

    from lakechain.storage.schemas import PREPARED_COLUMNS
    from lakechain.tasks.worker import make_prepare_fn

    kinds = {"string": StringType(), "boolean": BooleanType()}
    schema = StructType([StructField(n, kinds[t]) for n, t in PREPARED_COLUMNS])
    bad = pd.DataFrame([{"task_id": "t1", "question": None, "image_prompt": None, "illustrate": False,
                         "input_hash": "h", "parse_error": "line 5: qa.question is empty"}])  # fmt: skip
    settings = worker_settings(load_settings(None, [f"storage.root={tmp_path}"]))
    [out] = list(make_prepare_fn(settings, None, False)(iter([bad])))
    batch = PandasToArrowConversion.convert(
        [out], StructType([StructField("_0", schema)]), timezone="UTC", safecheck=True,
        arrow_cast=True, prefers_large_types=False, assign_cols_by_name=True,
        int_to_decimal_coercion_enabled=False, ignore_unexpected_complex_type_values=False,
        is_legacy=False,
    )  # fmt: skip
    assert batch.num_rows == 1 and batch.column(0).field("cache_key").null_count == 1
