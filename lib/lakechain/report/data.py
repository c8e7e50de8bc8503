"""What the HTML run report shows, as one compact, JSON-ready dict (pure: no pyspark).

Why compact: the page embeds every task row so it sorts and pages client-side with no
server, and it must stay a few MB for 10,000 tasks. Rows are arrays (column names once),
texts are capped, and each cited chunk's text is stored once however many answers cite it.
``report/stage.py`` does the aggregates in Spark and hands bounded rows to these functions.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict
from urllib.parse import quote

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
"""A path with a scheme (``dbfs:``, ``abfss://``): not a local file (one letter is a drive)."""

ROW_COLUMNS = [
    "task_id",
    "status",
    "question",
    "answer",
    "error",
    "tokens",
    "latency_ms",
    "model",
    "cache_hit",
    "sources",
    "image",
]
"""Columns of each embedded row; ``sources`` is ``[[chunk index, score], ...]`` into ``chunks``."""


class Limits(TypedDict):
    """Caps that bound the page's size whatever the run's size."""

    rows: int
    question_chars: int
    answer_chars: int
    error_chars: int
    chunk_chars: int
    chunks: int
    thumbnails: int
    thumb_px: int
    gallery: int


DEFAULT_LIMITS: Limits = {
    "rows": 20_000,
    "question_chars": 300,
    "answer_chars": 700,
    "error_chars": 300,
    "chunk_chars": 360,
    "chunks": 5_000,
    "thumbnails": 120,
    "thumb_px": 176,
    "gallery": 2_000,
}


class Figures(TypedDict):
    """The run's headline numbers; None where the run did not record it."""

    tasks_total: int | None
    pending: int | None
    ok: int
    error: int
    skipped: int | None
    invalid: int | None
    cache_hits: int | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    wall_s: float | None


class ModelRow(TypedDict):
    model: str
    role: Literal["chat", "image"]
    tasks: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms_avg: float | None


class ErrorExample(TypedDict):
    task_id: str
    error: str


class ErrorGroup(TypedDict):
    reason: str
    count: int
    examples: list[ErrorExample]


class Image(TypedDict):
    task_id: str
    status: str
    prompt: str | None
    prompt_used: str | None
    error: str | None
    width: int | None
    height: int | None
    thumb: str | None
    """A downscaled data: URI (the first ``Limits.thumbnails`` images), else None."""
    href: str | None
    """The full-size file, relative to the report's folder when on the same disk."""


class Histogram(TypedDict):
    lo: float
    hi: float
    counts: list[int]
    n: int


class ReportData(TypedDict):
    run_id: str
    command: str | None
    source: str | None
    started_at: str | None
    generated_at: str
    figures: Figures
    stages: dict[str, float]
    phases: dict[str, float]
    models: list[ModelRow]
    errors: list[ErrorGroup]
    images: list[Image]
    images_total: int
    histogram: Histogram | None
    columns: list[str]
    rows: list[list[Any]]
    rows_total: int
    chunks: list[list[str | None]]
    """``[chunk_id, doc_id, capped text or None]``, referenced by index from rows' sources."""
    notes: list[str]
    details: dict[str, Any]


def cap(text: Any, n: int) -> str | None:
    """``text`` cut to ``n`` characters (an ellipsis marks the cut); None stays None."""
    if text is None:
        return None
    s = str(text)
    return s if len(s) <= n else s[: max(0, n - 1)].rstrip() + "…"


def compact_rows(
    rows: Iterable[Mapping[str, Any]], chunk_text: Mapping[str, str], limits: Limits
) -> tuple[list[list[Any]], list[list[str | None]]]:
    """Result rows → (``ROW_COLUMNS`` arrays, the chunk table their sources point into).

    ``rows`` hold results columns (``sources`` as dicts with chunk_id, doc_id, score) plus
    an optional ``cache_hit``; ``chunk_text`` maps a chunk id to its text, for at most
    ``limits.chunks`` chunks: others are listed without a snippet.
    """
    chunks: list[list[str | None]] = []
    where: dict[str, int] = {}
    out = []
    for r in rows:
        refs = []
        for s in r.get("sources") or []:
            cid = str(s.get("chunk_id"))
            if cid not in where:
                where[cid] = len(chunks)
                text = chunk_text.get(cid)
                chunks.append([cid, s.get("doc_id"), cap(text, limits["chunk_chars"])])
            refs.append([where[cid], round(float(s.get("score") or 0.0), 4)])
        tokens = int(r.get("prompt_tokens") or 0) + int(r.get("completion_tokens") or 0)
        image = r.get("image_status")
        out.append(
            [
                r.get("task_id"),
                r.get("status"),
                cap(r.get("question") or r.get("image_prompt"), limits["question_chars"]),
                cap(r.get("answer"), limits["answer_chars"]),
                cap(r.get("error"), limits["error_chars"]),
                tokens,
                r.get("latency_ms"),
                r.get("chat_model") or r.get("image_model"),
                r.get("cache_hit"),
                refs,
                None if image in (None, "skipped") else image,
            ]
        )
    return out, chunks


def thumbnail(png: bytes, px: int) -> str | None:
    """A ``px``-bounded JPEG of ``png`` as a data: URI (a few KB); None if it does not decode."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(png)) as im:
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=78, optimize=True)
    except (OSError, ValueError, SyntaxError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_href(path: str | None, out_dir: str) -> str | None:
    """How the page links a full-size image: a URL relative to the report's folder (the report
    and the images move together under the storage root), else a file: URI (another drive)."""
    if not path:
        return None
    if URI.match(path):
        return path
    try:
        rel = os.path.relpath(path, out_dir)
    except ValueError:  # another drive (Windows)
        return Path(path).resolve().as_uri()
    return quote(rel.replace(os.sep, "/"))  # a folder named "a #1" must not end the URL


def image_entry(r: Mapping[str, Any], out_dir: str, png: bytes | None, limits: Limits) -> Image:
    """One gallery card from a results row; ``png`` (the file's or the row's bytes) only for
    the first images, which get an embedded thumbnail."""
    return {
        "task_id": str(r.get("task_id")),
        "status": str(r.get("image_status")),
        "prompt": cap(r.get("image_prompt") or r.get("question"), limits["question_chars"]),
        "prompt_used": cap(r.get("image_prompt_used"), limits["question_chars"]),
        "error": cap(r.get("image_error"), limits["error_chars"]),
        "width": r.get("image_width"),
        "height": r.get("image_height"),
        "thumb": thumbnail(png, limits["thumb_px"]) if png else None,
        "href": image_href(r.get("image_path"), out_dir),
    }


def read_png(path: str | None) -> bytes | None:
    """The bytes of a local image file, or None (missing, unreadable, or remote)."""
    if not path or URI.match(path):
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def histogram(lo: float, hi: float, counts: Mapping[int, int], bins: int) -> Histogram:
    """Bin counts (bin index → count, as Spark grouped them) as a dense list of ``bins``."""
    dense = [int(counts.get(i, 0)) for i in range(bins)]
    return {"lo": float(lo), "hi": float(hi), "counts": dense, "n": sum(dense)}


def details(report: Mapping[str, Any], shown: Iterable[str]) -> dict[str, Any]:
    """Fields of the run's report JSON not shown elsewhere on the page (e.g. ones a newer
    version adds), so nothing recorded is hidden."""
    skip = set(shown)
    return {k: v for k, v in report.items() if k not in skip and v not in (None, "", [], {})}
