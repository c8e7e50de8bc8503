"""Spark layer of the task stage: tasks input → ``tasks`` table → chains on executors → ``results``.

How a run commits its work (the exactly-once design):

1. The driver parses the whole input (``parse.py``; duplicate ids fail here, before any
   model call) and reads ``(task_id, input_hash, status)`` from ``results`` to choose the
   pending tasks (``report.plan_run``). The ``tasks`` table is rewritten in the background.
2. Pending tasks run in *commit batches* of ``tasks.commit_every`` tasks. A batch is one
   Spark job: ``mapInPandas`` over round-robin partitions, each retrieving all its
   questions in one batch and making its model calls with bounded concurrency under its
   share of the RPM/TPM budgets (``worker.py``, ``execute.py``). The batch's rows are
   collected once (no lazy re-evaluation can repeat a model call) and MERGEd into
   ``results`` on ``task_id`` on a background thread while the next batch runs.
3. A run killed at any point loses only uncommitted batches. The rerun skips every task
   with an ok row for its current ``input_hash`` and MERGE on ``task_id`` cannot create a
   second row, so kill + rerun ends with the same rows as one uninterrupted run. Runs on
   one storage root are serialised by a file lock (two MERGE streams could both insert
   the same new task).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from lakechain.config import Settings
from lakechain.tasks.parse import ParsedTask, TaskInputError, parse_files, parse_rows
from lakechain.tasks.ratelimit import concurrent_partitions
from lakechain.tasks.report import Plan, Progress, RunReport, error_kind, plan_run
from lakechain.tasks.results import (
    INPUT_COLUMNS,
    INPUT_DDL,
    RESULTS,
    RESULTS_DDL,
    TASK_COLUMNS,
    TASKS_DDL,
    RunContext,
    parse_error_row,
    register_result_views,
)
from lakechain.tasks.worker import make_partition_fn, worker_settings

__all__ = ["RunReport", "TaskInputError", "read_task_input", "register_result_views", "run_tasks"]

TASKS = "tasks"
TASK_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson")


# --- input ---------------------------------------------------------------------------------


def read_task_input(spark: SparkSession, settings: Settings, tables: Any) -> tuple[list[ParsedTask], str]:
    """Parse ``settings.tasks.path``: a JSON-lines file, a directory of them, or a table name."""
    path = settings.tasks.path
    limit = settings.tasks.max_question_chars
    p = Path(path)
    if p.is_file():
        with p.open(encoding="utf-8", errors="replace") as f:
            return parse_files([("", f)], limit, source=str(p)), str(p)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in TASK_FILE_SUFFIXES)
        if not files:
            raise TaskInputError(
                f"tasks.path {path!r}: the directory holds no {'/'.join(TASK_FILE_SUFFIXES)} files"
            )
        with contextlib.ExitStack() as stack:
            named = [(f.name, stack.enter_context(f.open(encoding="utf-8", errors="replace"))) for f in files]
            return parse_files(named, limit, source=str(p)), str(p)
    table = tables.read_input(path)  # a pipeline table, or any catalog table (main.sales.questions)
    if table is not None:
        rows = [r.asDict(recursive=True) for r in table.collect()]
        return parse_rows(rows, limit, source=f"table {path}"), f"table {path}"
    raise TaskInputError(
        f"tasks.path {path!r}: not a file, a directory of .jsonl files, or an existing table "
        "(e.g. --set tasks.path=data/tasks.jsonl)"
    )


def _tasks_frame(tasks: list[ParsedTask]) -> pd.DataFrame:
    return pd.DataFrame([t.as_dict() for t in tasks], columns=[c for c, _ in TASK_COLUMNS])


# --- lineage -------------------------------------------------------------------------------


def _index_build(tables: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The current index build and its manifest, resolved once on the driver so every
    executor answers from the same build even if a new one becomes current mid-run."""
    from lakechain.index import store
    from lakechain.index.errors import IndexNotFoundError

    try:
        build = store.resolve_build(store.index_root(tables.files_root))
    except IndexNotFoundError:
        return None, None
    return str(build), store.read_manifest(build)


def manifest_checksum(manifest: dict[str, Any] | None) -> str | None:
    """The manifest's checksum: its own ``checksum`` field, else the index file's sha256."""
    if not manifest:
        return None
    if manifest.get("checksum"):
        return str(manifest["checksum"])
    digest = ((manifest.get("files") or {}).get("index.faiss") or {}).get("sha256")
    return str(digest) if digest else manifest.get("build_id")


def run_context(settings: Settings, run_id: str, manifest: dict[str, Any] | None) -> RunContext:
    from lakechain.embed.embedders import model_name

    version = (manifest or {}).get("source", {}).get("version")
    return RunContext(
        run_id=run_id,
        chat_model=settings.chat.deployment or settings.chat.model,
        image_model=settings.images.deployment or settings.images.model,
        embedding_model=model_name(settings.embedding),
        index_checksum=manifest_checksum(manifest),
        index_table_version=int(version) if version is not None else None,
    )


def new_run_id() -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return f"run-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# --- driver --------------------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(files_root: str) -> Iterator[None]:
    """One run-tasks at a time per storage root.

    ``flock`` is released by the OS when its holder dies, even by SIGKILL, so a killed run
    never blocks the rerun. Filesystems without ``flock`` run unlocked.
    """
    os.makedirs(files_root, exist_ok=True)
    path = os.path.join(files_root, ".run-tasks.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TaskInputError(
                f"another run-tasks is running on this storage root (lock {path}); wait for it to finish"
            ) from None
        except (ImportError, OSError):
            pass
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t = time.monotonic()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.monotonic() - t


def _activate(spark: SparkSession) -> None:
    """Make ``spark`` the JVM's active session in this thread. Without it, the local ``delta``
    Python data source is not found from threads other than the one that registered it."""
    jvm = getattr(spark, "_jvm", None)
    if jvm is not None:
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)


def _parallelism(spark: SparkSession) -> int:
    """Task slots of the cluster (Spark Connect has no SparkContext: use shuffle partitions)."""
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - Spark Connect raises its own error types here
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "8") or 8))


def _describe(spark: SparkSession, text: str | None) -> None:
    """Name the batch jobs in the Spark UI (where there is a SparkContext)."""
    with contextlib.suppress(Exception):
        spark.sparkContext.setJobDescription(text)


def _existing_results(tables: Any) -> dict[str, tuple[str | None, str | None]]:
    if not tables.exists(RESULTS):
        return {}
    rows = tables.read(RESULTS).select("task_id", "input_hash", "status").toArrow().to_pylist()
    return {r["task_id"]: (r["input_hash"], r["status"]) for r in rows}


def default_commit_every(settings: Settings, concurrent: int) -> int:
    """Tasks per commit: ``tasks.commit_every``, else 64 waves of calls on every slot.

    Each commit batch costs about one model round trip plus a Spark job launch (its
    retrieval call and the partitions' uneven finish), so 64 waves keep that under a few
    percent, while a kill loses at most ~64 call latencies of work whatever the cluster size.
    """
    return settings.tasks.commit_every or max(256, concurrent * settings.tasks.max_concurrency * 64)


class _Commits:
    """MERGEs into ``results`` on one background thread, at most one queued at a time.

    Batch N is committed while batch N+1 runs; the next commit waits for the previous one,
    so commits land in order and a failed commit surfaces at the next batch boundary.
    """

    def __init__(self, spark: SparkSession, tables: Any, pool: ThreadPoolExecutor, report: RunReport) -> None:
        self.spark, self.tables, self.pool, self.report = spark, tables, pool, report
        self._pending: Future[int] | None = None

    def _merge(self, table: pa.Table) -> int:
        df = self.spark.createDataFrame(table.to_pandas(), schema=RESULTS_DDL)
        return self.tables.merge(df, RESULTS, ["task_id"])

    def submit(self, table: pa.Table) -> None:
        self.wait()
        self._pending = self.pool.submit(self._merge, table)
        self.report.batches += 1

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            with _timed(self.report.timings, "commit_wait_s"):
                self.report.results_version = pending.result()


def run_tasks(
    spark: SparkSession,
    settings: Settings,
    tables: Any,
    retry_failed: bool = False,
    force: bool = False,
    *,
    progress: bool = True,
) -> RunReport:
    """Run the pending tasks of ``settings.tasks.path`` and MERGE their rows into ``results``.

    Pending = no result yet, or a result for another ``input_hash``; ``retry_failed`` adds
    tasks whose result is an error, ``force`` makes every task pending. Raises
    :class:`TaskInputError` when the run cannot start (duplicate task ids, no such input,
    questions but no index, another run in progress); bad rows never raise, they become
    error rows with the reason.
    """
    start = time.monotonic()
    timings: dict[str, float] = {}
    run_id = new_run_id()
    with _timed(timings, "input_s"):
        tasks, source = read_task_input(spark, settings, tables)
    report = RunReport(run_id=run_id, source=source, tasks_total=len(tasks), timings=timings)
    commit_thread = ThreadPoolExecutor(
        1, thread_name_prefix="lakechain-commit", initializer=_activate, initargs=(spark,)
    )
    from lakechain.chains.chat_models import chat_server  # a local LLM loads once, stops at the end

    with run_lock(tables.files_root), chat_server(settings.chat), commit_thread as pool:
        # The tasks table is bookkeeping for SQL users that nothing here reads back, so it is
        # written on the commit thread while the first batch runs.
        tasks_written = pool.submit(
            tables.write,
            spark.createDataFrame(_tasks_frame(tasks), TASKS_DDL),
            TASKS,
            "overwrite",
            "overwrite",
        )
        with _timed(timings, "plan_s"):
            plan = plan_run(tasks, _existing_results(tables), retry_failed, force)
        report.pending, report.skipped = len(plan.pending), plan.done_ok + plan.done_error
        try:
            _execute(spark, settings, tables, plan, report, pool, progress)
        except BaseException:
            with contextlib.suppress(Exception):  # the run's own error is the one to report
                tasks_written.result()
            raise
        with _timed(timings, "commit_wait_s"):
            tasks_written.result()
    # Only pending rows were written and runs are serialised, so this input's state in
    # ``results`` follows from the plan and this run's outcomes without reading it back.
    report.results_ok = plan.done_ok + report.ok
    report.results_error = plan.done_error + report.error
    if tables.storage.uses_catalog:
        register_result_views(spark, tables)  # real views, created once for SQL users
    report.wall_s = time.monotonic() - start
    report.timings = {k: round(v, 3) for k, v in timings.items()}
    return report


def _execute(
    spark: SparkSession,
    settings: Settings,
    tables: Any,
    plan: Plan,
    report: RunReport,
    pool: ThreadPoolExecutor,
    progress: bool,
) -> None:
    invalid = [t for t in plan.pending if t.parse_error]
    runnable = [t for t in plan.pending if not t.parse_error]
    asking = sum(1 for t in runnable if t.question)
    build_dir, manifest = _index_build(tables) if asking else (None, None)
    if asking and build_dir is None:
        raise TaskInputError(
            f"{asking} pending tasks ask questions but there is no index under {tables.files_root}/index: "
            "run `lakechain embed` and `lakechain index` first (or `lakechain pipeline`)"
        )
    ctx = run_context(settings, report.run_id, manifest)
    meter = Progress(len(plan.pending), enabled=progress)
    reasons: Counter[str] = Counter()
    commits = _Commits(spark, tables, pool, report)
    try:
        if invalid:
            rows = pa.Table.from_pandas(pd.DataFrame([parse_error_row(t, ctx) for t in invalid]))
            commits.submit(rows)
            report.invalid = len(invalid)
            _account(rows, report, reasons, meter)
        if not runnable:
            return
        parallel = _parallelism(spark)
        n_parts = settings.tasks.partitions or parallel
        size = default_commit_every(settings, concurrent_partitions(n_parts, parallel))
        batches = [runnable[i : i + size] for i in range(0, len(runnable), size)]
        image_dir = os.path.join(tables.files_root, "images") if settings.tasks.write_image_files else None
        wsettings = worker_settings(settings)
        for i, batch in enumerate(batches, start=1):
            parts = max(1, min(n_parts, len(batch)))
            fn = make_partition_fn(
                wsettings, build_dir, ctx, concurrent_partitions(parts, parallel), image_dir
            )
            _describe(spark, f"lakechain run-tasks {report.run_id} batch {i}/{len(batches)}")
            frame = pd.DataFrame([{c: getattr(t, c) for c in INPUT_COLUMNS} for t in batch])
            with _timed(report.timings, "execute_s"):
                # Collected once: these rows are final, no re-evaluation can repeat a model call.
                result = (
                    spark.createDataFrame(frame, INPUT_DDL)
                    .repartition(parts)
                    .mapInPandas(fn, RESULTS_DDL)
                    .toArrow()
                )
            if result.num_rows != len(batch):
                raise RuntimeError(f"batch {i}: {result.num_rows} result rows for {len(batch)} tasks")
            commits.submit(result)
            _account(result, report, reasons, meter)
    finally:
        _describe(spark, None)
        report.errors_by_reason = dict(reasons)
        commits.wait()  # also when failing: finished work is committed before the error propagates


def _account(result: pa.Table, report: RunReport, reasons: Counter[str], meter: Progress) -> None:
    statuses = result.column("status").to_pylist()
    ok = sum(1 for s in statuses if s == "ok")
    prompt = int(pc.sum(result["prompt_tokens"]).as_py() or 0)
    completion = int(pc.sum(result["completion_tokens"]).as_py() or 0)
    report.ok += ok
    report.error += len(statuses) - ok
    report.prompt_tokens += prompt
    report.completion_tokens += completion
    report.attempts += int(pc.sum(result["attempts"]).as_py() or 0)
    errors = result.column("error").to_pylist()
    reasons.update(error_kind(e) for s, e in zip(statuses, errors, strict=True) if s != "ok")
    meter.update(ok, len(statuses) - ok, prompt + completion)
