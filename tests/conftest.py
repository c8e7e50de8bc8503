"""Shared fixtures. ``tests/unit`` needs none of the Spark ones; Spark tests share ONE session.

Set ``LAKECHAIN_TEST_REMOTE=local[2]`` to run the Spark tests on a local Spark Connect
session instead of a classic one (CI does both).
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_settings():
    """``conf/local.yaml`` with a small local[2] Spark: what every Spark test starts from."""
    from lakechain.config import load_settings

    overrides = ["spark.master=local[2]", "spark.shuffle_partitions=2"]
    if os.environ.get("LAKECHAIN_TEST_REMOTE"):
        overrides.append(f"spark.remote={os.environ['LAKECHAIN_TEST_REMOTE']}")
    return load_settings(REPO / "conf" / "local.yaml", overrides)


@pytest.fixture(scope="session")
def spark(base_settings, tmp_path_factory) -> Iterator[Any]:
    """The suite's one Spark session (native Delta; Spark Connect when asked), with its
    metastore in a session-wide temporary root."""
    from lakechain.storage.session import get_spark

    settings = base_settings.model_copy(deep=True)
    settings.storage.root = str(tmp_path_factory.mktemp("session-root"))
    session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture
def settings(base_settings, tmp_path):
    """Settings with a fresh storage root and a schema (database) of the test's own, so tests
    share the session's metastore without seeing each other's tables."""
    s = base_settings.model_copy(deep=True)
    s.storage.root = str(tmp_path / "lake")
    s.storage.schema_ = f"t_{uuid.uuid4().hex[:12]}"
    return s


@pytest.fixture
def tables(spark, settings):
    """The pipeline's tables for ``settings``."""
    from lakechain.storage.tables import Tables

    return Tables(spark, settings)


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[Any]:
    """One OpenAI-compatible test server per module (embeddings, chat, images, fault switches)."""
    from lakechain.testing.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(retry_after="0.01") as server:
        yield server


@pytest.fixture
def srv(fake_openai) -> Iterator[Any]:
    """The module's test server with its counters and fault switches reset around the test."""
    fake_openai.reset()
    yield fake_openai
    fake_openai.reset()


@pytest.fixture
def delta_rows() -> Callable[[Any, str], list[dict[str, Any]]]:
    """Rows of a table as an independent Delta reader (delta-rs) sees them, by its location:
    proof that what Spark wrote is plain Delta any reader opens, on the Spark Connect job too
    (see ``tables.plain_strings``)."""

    def read(tables: Any, name: str) -> list[dict[str, Any]]:
        from deltalake import DeltaTable

        return DeltaTable(tables.location(name)).to_pyarrow_table().to_pylist()

    return read


@pytest.fixture
def synthetic_report() -> Callable[..., Any]:
    """``synthetic_report(n)`` → a :class:`~lakechain.report.data.ReportData` of ``n`` tasks
    with realistic text lengths (a question, a 2-3 sentence answer, 4 cited chunks out of a
    corpus of 2,000, one task in 10 failed, one in 5 with an image): the HTML report's input
    at any size without Spark."""
    from PIL import Image

    from lakechain.report import data as rd

    def build(n: int, answer: str | None = None) -> Any:
        words = "spark delta lake table index vector chunk model token partition executor merge".split()
        rows, chunk_text = [], {}
        for i in range(n):
            w = [words[(i * k) % len(words)] for k in (1, 3, 7)]
            failed = i % 10 == 3
            cited = [f"chunk-{(i * 7 + j * 131) % 2000:04d}" for j in range(4)]
            for c in cited:
                chunk_text[c] = f"{c}: the {w[0]} and the {w[1]} work together; " * 8
            rows.append(
                {
                    "task_id": f"task-{i:05d}",
                    "status": "error" if failed else "ok",
                    "question": f"How does the {w[0]} relate to the {w[1]} and {w[2]} in question {i}?",
                    "answer": None
                    if failed
                    else (
                        answer
                        or f"The {w[0]} stores the {w[1]}. [1] "
                        f"A {w[2]} is kept per partition. [2] It scales. [3]"
                    ),
                    "error": f"qa: timeout: no answer after 60 s (task {i})" if failed else None,
                    "prompt_tokens": 400 + i % 97,
                    "completion_tokens": 40 + i % 13,
                    "latency_ms": 300 + i % 900,
                    "chat_model": "gpt-4o-mini",
                    "cache_hit": i % 4 == 0,
                    "sources": None
                    if failed
                    else [
                        {
                            "chunk_id": c,
                            "doc_id": f"doc-{c[-4:-2]}.txt",
                            "score": 0.9 - j * 0.1 - (i % 50) / 200,
                        }
                        for j, c in enumerate(cited)
                    ],
                    "image_status": "ok" if i % 5 == 0 else "skipped",
                }
            )
        compact, chunks = rd.compact_rows(rows, chunk_text, rd.DEFAULT_LIMITS)
        n_err = sum(r["status"] == "error" for r in rows)
        png = io.BytesIO()
        Image.new("RGB", (64, 64), (48, 86, 211)).save(png, "PNG")
        images = [
            rd.image_entry(
                {
                    "task_id": r["task_id"],
                    "image_status": "ok",
                    "image_prompt": f"A picture of {r['task_id']}",
                    "image_prompt_used": f"A detailed flat illustration of {r['task_id']}",
                    "image_width": 64,
                    "image_height": 64,
                    "image_path": f"/lake/images/{r['task_id']}.png",
                },
                "/lake/reports",
                png.getvalue() if i < 120 else None,
                rd.DEFAULT_LIMITS,
            )
            for i, r in enumerate(r for r in rows if r["image_status"] == "ok")
        ]
        return {
            "run_id": "run-20261130T120000-abcdef12",
            "command": "pipeline",
            "source": "/data/tasks.jsonl",
            "started_at": "2026-11-30 12:00:00",
            "generated_at": "2026-11-30 12:05:00 UTC",
            "figures": {
                "tasks_total": n + 5,
                "pending": n,
                "ok": n - n_err,
                "error": n_err,
                "skipped": 5,
                "invalid": 0,
                "cache_hits": sum(bool(r["cache_hit"]) for r in rows),
                "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
                "completion_tokens": sum(r["completion_tokens"] for r in rows),
                "cost_usd": None,
                "wall_s": 42.5,
            },
            "stages": {"embed": 12.0, "index": 3.5, "run-tasks": 27.0},
            "phases": {
                "recover": 0.1,
                "input": 2.0,
                "plan": 3.0,
                "execute": 20.0,
                "commit_wait": 1.2,
                "finish": 0.7,
            },
            "models": [
                {
                    "model": "gpt-4o-mini",
                    "role": "chat",
                    "tasks": n,
                    "prompt_tokens": 1,
                    "completion_tokens": 1,
                    "cost_usd": None,
                    "latency_ms_avg": 512.0,
                }
            ],
            "errors": [
                {
                    "reason": "qa: timeout",
                    "count": n_err,
                    "examples": [{"task_id": r["task_id"], "error": r["error"]} for r in rows if r["error"]][
                        :3
                    ],
                }
            ],
            "images": images[: rd.DEFAULT_LIMITS["gallery"]],
            "images_total": len(images),
            "histogram": rd.histogram(0.4, 0.9, {i: 10 + (i * 37) % 90 for i in range(24)}, 24),
            "columns": rd.ROW_COLUMNS,
            "rows": compact,
            "rows_total": n,
            "chunks": chunks,
            "notes": ["a note"],
            "details": {"batches": 3, "attempts": n},
        }

    return build


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium (Debian's ``chromium``) for the session, driven over DevTools;
    each test opens its own tab with ``chromium.page()``."""
    from lakechain.testing.chromium import Chromium

    with Chromium() as browser:
        yield browser
