"""The Spark task stage end to end: local default, fault injection at scale, resume after a kill."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from lakechain.index import store
from lakechain.tasks.parse import TaskInputError
from lakechain.tasks.stage import run_tasks
from lakechain.testing.openai_server import FakeOpenAIServer

CORPUS = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
    "Delta Lake is an open table format that brings ACID transactions to data lakes.",
    "FAISS is a library for efficient similarity search over dense vectors.",
    "Embeddings map text to vectors so that similar meanings lie close together.",
]


def save_index(settings, embedder, texts: list[str] = CORPUS) -> str:
    """Save a real index build (as the index stage would) from ``texts`` embedded by ``embedder``."""
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    ids = np.arange(1, len(texts) + 1, dtype=np.int64) * 1000
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": [f"chunk-{i}" for i in range(len(texts))],
            "doc_id": [f"doc-{i}" for i in range(len(texts))],
            "chunk_index": pa.array([0] * len(texts), pa.int32()),
            "text": texts,
        }
    )
    manifest = {
        "kind": "flat",
        "description": "Flat",
        "metric": "inner_product",
        "nprobe": 1,
        "dim": int(vectors.shape[1]),
        "count": len(texts),
        "model": embedder.name,
        "source": {"table": "chunks", "version": 3},
    }
    return str(store.save_build(store.index_root(settings.storage.files_root), index, rows, manifest))


@pytest.fixture
def results_rows(delta_rows):
    """``tables`` → the ``results`` rows, read as a third-party Delta reader would."""
    return lambda tables: delta_rows(tables, "results")


def write_lines(path: Path, records: list) -> str:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return str(path)


def remote(settings, srv: FakeOpenAIServer) -> None:
    """Point every model at the fake server (no model load) with small, fast retry settings."""
    for section, model in (
        (settings.embedding, "fake-embed"),
        (settings.chat, "fake-chat"),
        (settings.images, "fake-image"),
    ):
        section.provider = "openai_compatible"
        section.base_url = srv.url
        section.model = model
    settings.images.size = "64x64"
    settings.retrieval.score_threshold = -1.0  # random fake vectors: always retrieve k passages
    settings.tasks.requests_per_minute = 1_000_000
    settings.tasks.tokens_per_minute = 1_000_000_000
    settings.tasks.timeout_s = 0.5
    settings.tasks.backoff_base_s = 0.01
    settings.tasks.backoff_max_s = 0.05
    settings.tasks.max_concurrency = 16


def test_local_default_end_to_end(spark, settings, tables, tmp_path, results_rows, delta_rows):
    """Embedded default (local MiniLM, extractive chat, PNG renderer) with every input kind."""
    from lakechain.embed.embedders import cached_embedder

    save_index(settings, cached_embedder(settings.embedding))
    settings.tasks.partitions = 1  # one Python worker loads the local model, not two
    path = write_lines(
        tmp_path / "tasks.jsonl",
        [
            {"task_id": "dbx", "qa": {"question": "What is Azure Databricks?"}},
            {
                "qa": {"question": "Tell me about LangChain."},
                "image_generation": {"prompt": "A diagram of LangChain"},
            },
            {"task_id": "img", "image_generation": {"prompt": "A futuristic city with flying cars"}},
            {"task_id": "ill", "question": "What is Delta Lake?", "illustrate": True},
            {"task_id": "bad", "qa": {"question": ""}},
            '{"qa": {"question": "broken"',
        ],
    )
    settings.tasks.path = path
    report = run_tasks(spark, settings, tables, progress=False)
    assert (report.tasks_total, report.pending, report.ok, report.error, report.invalid) == (6, 6, 4, 2, 2)

    rows = {r["task_id"]: r for r in results_rows(tables)}
    assert len(rows) == 6
    dbx = rows["dbx"]
    assert dbx["status"] == "ok" and "Databricks" in dbx["answer"]
    assert dbx["sources"][0]["doc_id"] == "doc-0" and dbx["sources"][0]["chunk_id"] == "chunk-0"
    assert dbx["image_status"] == "skipped" and dbx["image_png"] is None
    assert dbx["embedding_model"] == "all-MiniLM-L6-v2" and dbx["index_table_version"] == 3
    assert dbx["index_checksum"] and dbx["run_id"] == report.run_id and dbx["created_at"] is not None

    img = rows["img"]
    assert (img["qa_status"], img["image_status"]) == ("skipped", "ok")
    png = Path(img["image_path"]).read_bytes()
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (512, 512)
    assert (img["image_width"], img["image_height"], img["image_bytes"]) == (512, 512, len(png))
    assert img["image_png"] is None  # bytes in the table only with tasks.store_image_bytes
    assert img["image_path"].startswith(os.path.join(tables.files_root, "images"))

    ill = rows["ill"]
    assert ill["status"] == "ok" and "Delta Lake" in ill["answer"] and Path(ill["image_path"]).is_file()
    assert ill["image_prompt_used"] and ill["image_prompt_used"] != ill["question"]

    assert rows["bad"]["status"] == "error" and "qa.question is empty" in rows["bad"]["error"]
    broken = next(
        r for t, r in rows.items() if t not in ("dbx", "img", "ill", "bad") and r["status"] == "error"
    )
    assert "malformed JSON" in broken["error"] and broken["question"] is None

    tasks = delta_rows(tables, "tasks")
    assert len(tasks) == 6 and sum(1 for t in tasks if t["parse_error"]) == 2

    assert tables.ensure_views() == ["qa_results", "image_results"]
    qa_view, image_view = tables.full_name("qa_results"), tables.full_name("image_results")
    qa = {r["task_id"]: r for r in spark.sql(f"SELECT task_id, status, answer FROM {qa_view}").collect()}
    images = {
        r["task_id"] for r in spark.sql(f"SELECT task_id FROM {image_view} WHERE status = 'ok'").collect()
    }
    assert qa["dbx"]["status"] == "ok" and "img" not in qa
    assert images == {
        "img",
        "ill",
        next(t for t, r in rows.items() if r["image_prompt"] == "A diagram of LangChain"),
    }

    # a rerun has nothing to do (which tasks rerun when is unit-tested in test_tasks_report)
    again = run_tasks(spark, settings, tables, progress=False)
    assert (again.pending, again.skipped, again.results_ok, again.results_error) == (0, 6, 4, 2)


def test_duplicate_ids_and_missing_inputs_fail_up_front(spark, settings, tables, tmp_path):
    settings.tasks.path = write_lines(
        tmp_path / "dup.jsonl", [{"task_id": "x", "question": "a"}, {"task_id": "x", "question": "b"}]
    )
    with pytest.raises(TaskInputError, match="duplicate task_id 'x'"):
        run_tasks(spark, settings, tables, progress=False)
    assert not tables.exists("results")
    settings.tasks.path = str(tmp_path / "nope.jsonl")
    with pytest.raises(TaskInputError, match="not a file"):
        run_tasks(spark, settings, tables, progress=False)
    settings.tasks.path = write_lines(tmp_path / "q.jsonl", [{"question": "What is Spark?"}])
    with pytest.raises(TaskInputError, match="no index"):
        run_tasks(spark, settings, tables, progress=False)


def read_task_input(spark, settings, tables):
    from lakechain.tasks.input import read_tasks
    from lakechain.tasks.parse import ParsedTask

    df, source = read_tasks(spark, settings, tables)
    return [ParsedTask(**r.asDict()) for r in df.collect()], source


def test_table_and_directory_inputs(spark, settings, tables, tmp_path):
    df = spark.createDataFrame(
        [("a", "What is Spark?", None), ("b", None, "A lake at dawn"), ("c", None, None)],
        "task_id string, question string, image_prompt string",
    )
    tables.write(df, "my_tasks")
    settings.tasks.path = "my_tasks"
    tasks, source = read_task_input(spark, settings, tables)
    assert source == "table my_tasks"
    by_id = {t.task_id: t for t in tasks}
    assert by_id["a"].question == "What is Spark?" and by_id["b"].image_prompt == "A lake at dawn"
    assert "neither a question nor an image prompt" in by_id["c"].parse_error

    # A qualified catalog name (catalog.schema.table on Databricks; a global temp view here).
    df.createOrReplaceGlobalTempView("lc_questions")
    settings.tasks.path = "global_temp.lc_questions"
    tasks, source = read_task_input(spark, settings, tables)
    assert source == "table global_temp.lc_questions" and len(tasks) == 3
    assert {t.task_id: t for t in tasks}["a"].question == "What is Spark?"

    folder = tmp_path / "tasks"
    folder.mkdir()
    write_lines(folder / "a.jsonl", [{"question": "Q1"}])
    write_lines(folder / "b.jsonl", [{"question": "Q2"}, "{oops"])
    (folder / "notes.txt").write_text("ignored")
    settings.tasks.path = str(folder)
    tasks, _ = read_task_input(spark, settings, tables)
    assert [t.question for t in tasks[:2]] == ["Q1", "Q2"]
    assert tasks[2].parse_error.startswith("b.jsonl line 2: malformed JSON")


def test_reliability_under_injected_faults_then_retry_failed(spark, settings, tables, tmp_path, results_rows):
    with FakeOpenAIServer(seed=11, timeout_sleep_s=1.0) as srv:
        remote(settings, srv)
        # 3 attempts: ~0.6% of calls fail for good (0.18³), so ≥ 97% ok and a few failures to retry
        settings.tasks.max_attempts = 3
        from lakechain.embed.embedders import make_embedder

        save_index(settings, make_embedder(settings.embedding))
        n = 1000
        records = [
            {"task_id": f"t{i:04d}", "question": f"Question {i} about Spark?"}
            if i % 4
            else {"task_id": f"t{i:04d}", "question": f"Question {i}?", "image_prompt": f"Picture {i}"}
            for i in range(n)
        ]
        settings.tasks.path = write_lines(tmp_path / "tasks.jsonl", records)
        settings.tasks.commit_every = 500
        srv.fault_rates = {"429": 0.10, "500": 0.05, "timeout": 0.02, "malformed": 0.01}
        t0 = time.monotonic()
        first = run_tasks(spark, settings, tables, progress=False)
        elapsed = time.monotonic() - t0
        rows = results_rows(tables)
        ids = [r["task_id"] for r in rows]
        assert len(ids) == len(set(ids)) == n
        ok = [r for r in rows if r["status"] == "ok"]
        failed = [r for r in rows if r["status"] != "ok"]
        assert (first.ok, first.error) == (len(ok), len(failed))
        assert srv.fault_counts["429"] > 100 and srv.fault_counts["timeout"] > 5
        assert len(ok) >= 0.97 * n, (len(failed), first.errors_by_reason)
        assert failed, "with 3 attempts a few tasks fail for good, so the rerun has work to do"
        assert all("after 3 attempts" in r["error"] for r in failed), [r["error"] for r in failed]
        assert max(r["attempts"] for r in ok) >= 2 and elapsed < 90

        srv.fault_rates = {}
        before = {r["task_id"]: (r["run_id"], r["created_at"], r["answer"]) for r in ok}
        second = run_tasks(spark, settings, tables, retry_failed=True, progress=False)
        assert (second.pending, second.ok, second.error, second.skipped) == (
            len(failed),
            len(failed),
            0,
            len(ok),
        )
        rows2 = results_rows(tables)
        assert len(rows2) == n and all(r["status"] == "ok" for r in rows2)
        after = {r["task_id"]: (r["run_id"], r["created_at"], r["answer"]) for r in rows2}
        assert all(after[t] == v for t, v in before.items()), "ok rows must not be touched"
        assert {after[r["task_id"]][0] for r in failed} == {second.run_id}


def _deterministic(rows: list[dict]) -> dict[str, tuple]:
    keys = ("status", "qa_status", "image_status", "answer", "input_hash", "image_png", "question")
    return {
        r["task_id"]: tuple(r[k] for k in keys) + (tuple(s["chunk_id"] for s in r["sources"] or []),)
        for r in rows
    }


def _python_workers() -> list[int]:
    """PIDs of this test process's Spark Python workers (children of its pyspark daemon)."""
    parents: dict[int, int] = {}
    cmds: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmds[int(entry)] = f.read().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue

    def descends_from_me(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [
        pid
        for pid, ppid in parents.items()
        if "pyspark.daemon" in cmds.get(ppid, "") and descends_from_me(pid)
    ]


def test_killed_run_resumes_to_the_same_rows(spark, settings, tables, tmp_path, results_rows):
    """SIGKILL the executors' Python workers mid-run (after the first commit), rerun, and
    compare with an uninterrupted run of the same input."""
    with FakeOpenAIServer(seed=3, latency_s=0.03) as srv:
        remote(settings, srv)
        settings.tasks.max_concurrency = 4
        settings.tasks.commit_every = 40
        settings.tasks.partitions = 2
        from lakechain.embed.embedders import make_embedder

        embedder = make_embedder(settings.embedding)
        save_index(settings, embedder)
        records = [
            {"task_id": f"k{i:03d}", "question": f"Kill question {i}?"}
            | ({"image_prompt": f"Kill picture {i}"} if i % 5 == 0 else {})
            for i in range(240)
        ]
        settings.tasks.path = write_lines(tmp_path / "tasks.jsonl", records)
        log = Path(tables.location("results")) / "_delta_log"
        stop = threading.Event()
        killed: list[int] = []

        def killer() -> None:
            while not stop.is_set() and not (
                log.is_dir() and any(p.suffix == ".json" for p in log.iterdir())
            ):
                time.sleep(0.01)
            while not stop.is_set():  # keep killing until the run dies: a kill must hit a busy worker
                for pid in _python_workers():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            with pytest.raises(Exception) as died:  # noqa: B017 - Spark reports a crashed worker in many ways
                run_tasks(spark, settings, tables, progress=False)
        finally:
            stop.set()
            thread.join()
        assert killed, died.value
        committed = {r["task_id"]: r for r in results_rows(tables)}
        assert 0 < len(committed) < len(records), "the kill must land mid-run"

        resumed = run_tasks(spark, settings, tables, progress=False)
        # batches staged but not merged when the run died are merged first, not recomputed
        assert resumed.skipped >= len(committed) and resumed.skipped + resumed.pending == len(records)
        rows = results_rows(tables)
        assert len(rows) == len({r["task_id"] for r in rows}) == len(records)
        untouched = {r["task_id"]: r["run_id"] for r in rows if r["task_id"] in committed}
        assert untouched == {t: r["run_id"] for t, r in committed.items()}, (
            "committed rows must not be recomputed"
        )

        # the same input run uninterrupted elsewhere gives the same rows
        from lakechain.storage.tables import Tables

        settings.storage.root = str(tmp_path / "fresh")
        settings.storage.schema_ += "_fresh"
        fresh = Tables(spark, settings)
        save_index(settings, embedder)
        run_tasks(spark, settings, fresh, progress=False)
        assert _deterministic(results_rows(fresh)) == _deterministic(rows)


def test_an_empty_task_input_runs_nothing_and_keeps_the_previous_bookkeeping(
    spark, settings, tables, tmp_path, delta_rows
):
    settings.tasks.path = write_lines(tmp_path / "tasks.jsonl", [{"task_id": "p", "image_prompt": "A lake"}])
    run_tasks(spark, settings, tables, progress=False)
    before = tables.version("tasks")
    settings.tasks.path = write_lines(tmp_path / "empty.jsonl", [])
    report = run_tasks(spark, settings, tables, progress=False)
    assert report.pending == 0 and "holds no tasks" in str(report)
    assert tables.version("tasks") == before and [r["task_id"] for r in delta_rows(tables, "tasks")] == ["p"]
