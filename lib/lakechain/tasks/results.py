"""Schemas of the ``tasks`` and ``results`` tables and how a result row is built (pure).

Why one place: the executor (pandas rows on Spark workers), the driver (parse-error rows)
and the SQL views must agree on every column name and type, and a row must be complete
whichever way the task ended (ok, failed branch, unparseable input).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from lakechain.tasks.execute import ERROR, SKIPPED, TaskOutcome
from lakechain.tasks.parse import ParsedTask

TASK_COLUMNS: list[tuple[str, str]] = [
    ("task_id", "string"),
    ("question", "string"),
    ("image_prompt", "string"),
    ("illustrate", "boolean"),
    ("input_hash", "string"),
    ("raw", "string"),
    ("parse_error", "string"),
]

SOURCE_TYPE = "array<struct<chunk_id:string,doc_id:string,score:double>>"

RESULT_COLUMNS: list[tuple[str, str]] = [
    ("task_id", "string"),
    ("question", "string"),
    ("image_prompt", "string"),
    ("illustrate", "boolean"),
    ("input_hash", "string"),
    ("answer", "string"),
    ("sources", SOURCE_TYPE),
    ("image_png", "binary"),
    ("image_prompt_used", "string"),
    ("image_path", "string"),
    ("qa_status", "string"),
    ("qa_error", "string"),
    ("image_status", "string"),
    ("image_error", "string"),
    ("status", "string"),
    ("error", "string"),
    ("attempts", "int"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("latency_ms", "bigint"),
    ("chat_model", "string"),
    ("image_model", "string"),
    ("embedding_model", "string"),
    ("index_checksum", "string"),
    ("index_table_version", "bigint"),
    ("run_id", "string"),
    ("created_at", "timestamp"),
]

RESULTS = "results"
INPUT_COLUMNS = ["task_id", "question", "image_prompt", "illustrate", "input_hash"]
"""Columns the executor receives for each pending task."""


def ddl(columns: list[tuple[str, str]]) -> str:
    """Spark DDL schema string, e.g. for ``mapInPandas``."""
    return ", ".join(f"{name} {kind}" for name, kind in columns)


TASKS_DDL = ddl(TASK_COLUMNS)
RESULTS_DDL = ddl(RESULT_COLUMNS)
INPUT_DDL = ddl([c for c in TASK_COLUMNS if c[0] in INPUT_COLUMNS])


@dataclass(frozen=True)
class RunContext:
    """Per-run facts stamped on every row (lineage: which models and index answered)."""

    run_id: str
    chat_model: str
    image_model: str
    embedding_model: str
    index_checksum: str | None
    index_table_version: int | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sources(sources: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if sources is None:
        return None
    return [
        {
            "chunk_id": str(s.get("chunk_id")),
            "doc_id": str(s.get("doc_id")),
            "score": float(s.get("score") or 0.0),
        }
        for s in sources
    ]


def outcome_row(task: dict[str, Any], out: TaskOutcome, ctx: RunContext) -> dict[str, Any]:
    """The results row of an executed task (``task`` holds :data:`INPUT_COLUMNS`)."""
    qa_tried, image_tried = out.qa_status != SKIPPED, out.image_status != SKIPPED
    return {
        **{k: task.get(k) for k in INPUT_COLUMNS},
        "answer": out.answer,
        "sources": _sources(out.sources),
        "image_png": out.image_png,
        "image_prompt_used": out.image_prompt_used,
        "image_path": out.image_path,
        "qa_status": out.qa_status,
        "qa_error": out.qa_error,
        "image_status": out.image_status,
        "image_error": out.image_error,
        "status": out.status,
        "error": out.error,
        "attempts": int(out.attempts),
        "prompt_tokens": int(out.prompt_tokens),
        "completion_tokens": int(out.completion_tokens),
        "latency_ms": int(out.latency_ms),
        "chat_model": (out.chat_model or ctx.chat_model) if qa_tried or task.get("illustrate") else None,
        "image_model": (out.image_model or ctx.image_model) if image_tried else None,
        "embedding_model": ctx.embedding_model if qa_tried else None,
        "index_checksum": ctx.index_checksum if qa_tried else None,
        "index_table_version": ctx.index_table_version if qa_tried else None,
        "run_id": ctx.run_id,
        "created_at": _now(),
    }


def parse_error_row(task: ParsedTask, ctx: RunContext) -> dict[str, Any]:
    """The results row of a task whose input could not be parsed: an error with the reason."""
    reason = f"invalid task input: {task.parse_error}"
    return {
        "task_id": task.task_id,
        "question": task.question,
        "image_prompt": task.image_prompt,
        "illustrate": task.illustrate,
        "input_hash": task.input_hash,
        "answer": None,
        "sources": None,
        "image_png": None,
        "image_prompt_used": None,
        "image_path": None,
        "qa_status": ERROR,
        "qa_error": reason,
        "image_status": ERROR,
        "image_error": reason,
        "status": ERROR,
        "error": reason,
        "attempts": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_ms": 0,
        "chat_model": None,
        "image_model": None,
        "embedding_model": None,
        "index_checksum": None,
        "index_table_version": None,
        "run_id": ctx.run_id,
        "created_at": _now(),
    }


# --- SQL views -----------------------------------------------------------------------------

QA_VIEW = """
SELECT task_id, question, answer, sources, qa_status AS status, qa_error AS error,
       prompt_tokens, completion_tokens, latency_ms, attempts, chat_model, embedding_model,
       index_checksum, index_table_version, run_id, created_at
FROM {results} WHERE qa_status <> 'skipped'
"""

IMAGE_VIEW = """
SELECT task_id, question, image_prompt, illustrate, image_prompt_used, image_path, image_png,
       image_status AS status, image_error AS error, image_model, latency_ms, attempts, run_id, created_at
FROM {results} WHERE image_status <> 'skipped'
"""


def register_result_views(spark: Any, tables: Any) -> list[str]:
    """``qa_results`` and ``image_results`` over ``results``: temp views locally, real views in
    Unity Catalog. Returns the view names (none when ``results`` does not exist yet)."""
    if not tables.exists(RESULTS):
        return []
    if tables.storage.uses_catalog:
        source = tables.full_name(RESULTS)
        for name, body in (("qa_results", QA_VIEW), ("image_results", IMAGE_VIEW)):
            spark.sql(f"CREATE OR REPLACE VIEW {tables.full_name(name)} AS {body.format(results=source)}")
        return ["qa_results", "image_results"]
    tables.read(RESULTS).createOrReplaceTempView(RESULTS)
    for name, body in (("qa_results", QA_VIEW), ("image_results", IMAGE_VIEW)):
        spark.sql(f"CREATE OR REPLACE TEMP VIEW {name} AS {body.format(results=RESULTS)}")
    return ["qa_results", "image_results"]
