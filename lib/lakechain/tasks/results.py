"""How a ``results`` row is built (pure; the schema is ``storage.schemas.RESULT_COLUMNS``).

Why one place: a row must be complete whichever way the task ended (ok, failed branch,
unparseable input), and every executor builds it the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from lakechain.storage.schemas import INPUT_COLUMNS, RESULT_COLUMNS, names
from lakechain.tasks.execute import ERROR, SKIPPED, TaskOutcome
from lakechain.tasks.pricing import Price, row_cost
from lakechain.tasks.provenance import RunParts, row_provenance

RESULT_NAMES = names(RESULT_COLUMNS)
INVALID_INPUT = "invalid task input"


@dataclass(frozen=True)
class RunContext:
    """Per-run facts stamped on every row (lineage: which models and index answered)."""

    run_id: str
    chat_model: str
    image_model: str
    embedding_model: str
    index_checksum: str | None
    index_table_version: int | None
    parts: RunParts | None = None
    """What determines a row besides its input (``provenance``); None: not recorded."""
    chat_price: Price | None = None
    image_price: Price | None = None


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


def png_size(png: bytes | None) -> tuple[int | None, int | None]:
    """(width, height) from a PNG's IHDR chunk, without decoding the image."""
    if not png or len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n":
        return None, None
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def outcome_row(
    task: dict[str, Any], out: TaskOutcome, ctx: RunContext, keep_png: bool = False
) -> dict[str, Any]:
    """The executor's row of a task (``EXECUTED_COLUMNS``: the results row and ``llm_reply``,
    a reply to store in ``llm_cache``). ``task`` holds ``INPUT_COLUMNS``. PNG bytes are kept
    in the row only with ``keep_png``: images live as files, the table holds their path."""
    qa_tried, image_tried = out.qa_status != SKIPPED, out.image_status != SKIPPED
    width, height = png_size(out.image_png)
    return {
        **{k: task.get(k) for k in INPUT_COLUMNS},
        "answer": out.answer,
        "sources": _sources(out.sources),
        "image_png": out.image_png if keep_png else None,
        "image_prompt_used": out.image_prompt_used,
        "image_path": out.image_path,
        "image_width": width,
        "image_height": height,
        "image_bytes": len(out.image_png) if out.image_png else None,
        "qa_status": out.qa_status,
        "qa_error": out.qa_error,
        "image_status": out.image_status,
        "image_error": out.image_error,
        "status": out.status,
        "error": out.error,
        "grounded_share": out.grounded_share,
        "not_grounded": out.not_grounded if qa_tried else None,
        "attempts": int(out.attempts),
        "prompt_tokens": int(out.prompt_tokens),
        "completion_tokens": int(out.completion_tokens),
        "latency_ms": int(out.latency_ms),
        "chat_model": (out.chat_model or ctx.chat_model) if qa_tried or task.get("illustrate") else None,
        "image_model": (out.image_model or ctx.image_model) if image_tried else None,
        "embedding_model": ctx.embedding_model if qa_tried else None,
        "index_checksum": ctx.index_checksum if qa_tried else None,
        "index_table_version": ctx.index_table_version if qa_tried else None,
        **row_provenance(
            ctx.parts,
            task.get("input_hash"),
            asks=qa_tried,
            draws=image_tried,
            illustrates=bool(task.get("illustrate")),
        ),
        "cost_usd": row_cost(
            out.prompt_tokens,
            out.completion_tokens,
            int(out.image_png is not None),
            ctx.chat_price,
            ctx.image_price,
        ),
        "run_id": ctx.run_id,
        "created_at": _now(),
        "cache_key": out.cache_key,
        "cache_hit": out.cache_hit,
        "calls_saved": int(out.calls_saved),
        "llm_reply": out.new_reply,
    }


def parse_error_row(task: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """The results row of a task whose input could not be parsed: an error with the reason."""
    reason = f"{INVALID_INPUT}: {task['parse_error']}"
    return {
        **{k: task.get(k) for k in INPUT_COLUMNS},
        "answer": None,
        "sources": None,
        "image_png": None,
        "image_prompt_used": None,
        "image_path": None,
        "image_width": None,
        "image_height": None,
        "image_bytes": None,
        "qa_status": ERROR,
        "qa_error": reason,
        "image_status": ERROR,
        "image_error": reason,
        "status": ERROR,
        "error": reason,
        "grounded_share": None,
        "not_grounded": None,
        "attempts": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_ms": 0,
        "chat_model": None,
        "image_model": None,
        "embedding_model": None,
        "index_checksum": None,
        "index_table_version": None,
        **row_provenance(None, None, asks=False, draws=False, illustrates=False),
        "cost_usd": 0.0,
        "run_id": ctx.run_id,
        "created_at": _now(),
        "cache_key": None,
        "cache_hit": False,
        "calls_saved": 0,
        "llm_reply": None,
    }
