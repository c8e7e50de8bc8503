"""Task stage: tasks input → ``tasks`` table → chains on executors → ``results``, exactly once.

How a run commits its work without result rows crossing the driver:

1. Rows a killed run staged but did not merge are merged first (its model calls are kept).
2. The input becomes the ``tasks`` table; the pending tasks are a join of ``tasks`` with
   ``results`` at a pinned version (``_pending``), so the plan never leaves the cluster.
   A done task is pending again when a part of its provenance named in
   ``tasks.recompute_on`` changed (``provenance.py``).
3. Pending tasks run in commit batches (``tasks.commit_every``, assigned by a hash of the
   task id). A batch is one Spark job whose executors run the chains (``worker.py``) and
   write the rows to ``results_staging``; the model is called once per task, because the
   rows are read back from that table, never recomputed. A MERGE on ``task_id`` from the
   staged batch into ``results`` runs on a background thread while the next batch runs.
   With the response cache on (``tasks.cache``), a batch is two ``mapInPandas``: the first
   retrieves for its partition and derives each task's cache key, the plan joins those
   rows with ``llm_cache`` and routes equal keys to one partition, the second calls the
   model once per key that missed (``cache_table.py``, ``llm_cache.py``). Batches are then
   assigned by a hash of the question, so equal questions share a batch too.
4. With a budget (``budget.py``) the run stops before a batch that would pass it.
5. A run killed at any point loses no committed batch, and staged rows are merged by the
   next run, so kill + rerun ends with the same rows as one uninterrupted run. MERGE on
   ``task_id`` (with Delta's conflict retry) cannot create a second row for a task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pyspark.sql import Window
from pyspark.sql import functions as F

from lakechain.config import RecomputeReason, Settings
from lakechain.errors import ConfigError
from lakechain.runtime.ids import new_run_id
from lakechain.runtime.progress import Progress
from lakechain.runtime.timer import Timer
from lakechain.storage.schemas import (
    CHUNKS,
    EXECUTED_DDL,
    EXECUTOR_COLUMNS,
    PREPARED_DDL,
    RESULT_COLUMNS,
    RESULTS,
    RESULTS_STAGING,
    RUN_ESTIMATE_COLUMNS,
    RUN_ESTIMATES,
    STAGING_COLUMNS,
    TASKS,
    ddl,
    names,
)
from lakechain.storage.session import default_parallelism, persisted
from lakechain.tasks.budget import Budget
from lakechain.tasks.cache_table import store_replies, with_cached
from lakechain.tasks.input import read_tasks
from lakechain.tasks.llm_cache import cache_enabled
from lakechain.tasks.parse import TaskInputError
from lakechain.tasks.pricing import price_for, price_table, unpriced
from lakechain.tasks.provenance import REASON_PARTS, RunParts, run_parts
from lakechain.tasks.ratelimit import concurrent_partitions
from lakechain.tasks.report import RunReport, error_kind
from lakechain.tasks.results import INVALID_INPUT, RunContext
from lakechain.tasks.worker import make_partition_fn, make_prepare_fn, worker_settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from lakechain.storage.tables import Tables
    from lakechain.tasks.estimate import PilotStats, Workload

__all__ = ["RunReport", "TaskInputError", "run_tasks"]

log = logging.getLogger(__name__)
RESULT_NAMES = names(RESULT_COLUMNS)
TOP_REASONS = 20


@dataclass
class _Plan:
    pending: DataFrame
    counts: dict[str, int]


def run_tasks(
    spark: SparkSession,
    settings: Settings,
    tables: Tables,
    retry_failed: bool = False,
    force: bool = False,
    *,
    progress: bool = True,
    estimate: bool = False,
) -> RunReport:
    """Run the pending tasks of ``tasks.path`` and MERGE their rows into ``results``.

    Pending = no result yet, or a result for another ``input_hash``; ``retry_failed`` adds
    tasks whose result is an error, ``force`` makes every task pending. ``estimate`` runs only
    a pilot of ``tasks.estimate_pilot`` tasks and projects the rest (``report.estimate``). Raises
    :class:`TaskInputError` when the run cannot start (duplicate task ids, no such input,
    questions but no index); bad rows never raise, they become error rows with the reason.
    """
    timer = Timer()
    report = RunReport(run_id=new_run_id("run"), source="")
    _check_budget(settings)
    with timer.step("recover"):
        tables.add_missing_columns(RESULTS, RESULT_COLUMNS)  # tables from before provenance
        tables.add_missing_columns(RESULTS_STAGING, STAGING_COLUMNS)
        recover_staged(tables)
    with timer.step("input"):
        tasks, report.source = read_tasks(spark, settings, tables)
        if not _write_tasks(tables, tasks, report):
            report.timings, report.wall_s = timer.steps, timer.elapsed
            return report
    recompute_on = settings.tasks.recompute_on
    with timer.step("plan"):
        # With ``index`` a reason, the build is resolved before planning and kept for the run.
        current = _current_index(tables) if "index" in recompute_on else None
        parts = run_parts(settings, manifest_checksum(current[1] if current else None))
        plan = _pending(tables, retry_failed, force, parts, recompute_on)
    c = plan.counts
    report.tasks_total, report.pending = c["total"], c["pending"]
    report.skipped = c["done_ok"] + c["done_error"]
    report.recomputed = {r: c[f"stale_{r}"] for r in recompute_on if c[f"stale_{r}"]}
    if c["pending"]:
        from lakechain.chains.chat_models import chat_server  # a local LLM loads once, stops at the end

        asking = c["asking"]
        build_dir, manifest = current if current and current[0] and asking else _index_for(tables, asking)
        if build_dir is not None:
            from lakechain.index.store import staleness

            stale = staleness(manifest, tables.version(CHUNKS))
            if stale:
                log.warning("%s", stale)
                report.notes.append(stale)
        ctx = run_context(settings, report.run_id, manifest)
        ctx = dataclasses.replace(ctx, parts=dataclasses.replace(parts, index_checksum=ctx.index_checksum))
        with chat_server(settings.chat):
            run = _estimate if estimate else _execute
            run(spark, settings, tables, plan, ctx, build_dir, report, timer, progress)
    # Only pending rows were written, so this input's state in ``results`` follows from the
    # plan and this run's outcomes without reading the table back.
    report.results_ok = c["done_ok"] + report.ok
    report.results_error = c["done_error"] + report.error
    with timer.step("finish"):
        if tables.exists(RESULTS):
            tables.ensure_views(replace=True)  # persistent views for SQL users
    report.timings, report.wall_s = timer.steps, timer.elapsed
    return report


def recover_staged(tables: Tables) -> int:
    """MERGE rows a killed run staged but did not merge (finished model calls are kept),
    then empty the staging table. Returns the rows recovered."""
    if not tables.exists(RESULTS_STAGING) or tables.is_empty(RESULTS_STAGING):
        return 0
    staged = tables.read(RESULTS_STAGING)
    n = staged.count()
    if n:
        newest = Window.partitionBy("task_id").orderBy(F.col("created_at").desc())
        latest = staged.withColumn("_rank", F.row_number().over(newest)).filter("_rank = 1")
        tables.merge(latest.select(*RESULT_NAMES), RESULTS, ["task_id"])
        log.info("merged %d result rows staged by an interrupted run", n)
        tables.truncate(RESULTS_STAGING)
    return n


def _write_tasks(tables: Tables, tasks: DataFrame, report: RunReport) -> bool:
    """Overwrite ``tasks`` with this input (bookkeeping for SQL users). An empty input
    leaves the previous one's bookkeeping alone and runs nothing: False."""
    if tasks.isEmpty():
        report.notes.append(
            f"the task input {report.source} holds no tasks: nothing to run; "
            f"the {TASKS} table keeps the previous input"
        )
        return False
    tables.write(tasks, TASKS, "overwrite")
    return True


def _pending(
    tables: Tables,
    retry_failed: bool,
    force: bool,
    parts: RunParts | None = None,
    recompute_on: list[RecomputeReason] | None = None,
) -> _Plan:
    """The tasks to run, as a join of ``tasks`` with ``results`` (pinned), and the counts.

    A task runs when it has no result, its result is stale for a reason in ``recompute_on``
    (default: only its input changed, i.e. another ``input_hash``), ``force`` is set, or its
    result is an error and ``retry_failed`` is set. A part a row lacks (not used, or a table
    from before provenance) is never a reason. ``counts["stale_<reason>"]``: done tasks
    pending again for that reason.
    """
    reasons: list[RecomputeReason] = list(recompute_on or ["input"])
    tasks = tables.read(TASKS, version=tables.version(TASKS))
    version = tables.version(RESULTS)
    compared = sorted({c for r in reasons for c in REASON_PARTS[r]} - {"input_hash"})
    if version is None:
        prev_cols = ["_prev_hash", "_prev_status", *(f"_prev_{c}" for c in compared)]
        joined = tasks.withColumns({k: F.lit(None).cast("string") for k in prev_cols})
    else:
        results = tables.read(RESULTS, version=version)
        have = set(results.columns)
        prev = results.select(
            "task_id",
            F.col("input_hash").alias("_prev_hash"),
            F.col("status").alias("_prev_status"),
            *((F.col(c) if c in have else F.lit(None).cast("string")).alias(f"_prev_{c}") for c in compared),
        )
        joined = tasks.join(prev, "task_id", "left")
    done = F.col("_prev_status").isNotNull()

    def changed(column: str) -> Column:
        if column == "input_hash":
            return ~F.col("_prev_hash").eqNullSafe(F.col("input_hash"))
        now = parts.current(column) if parts is not None else None
        if now is None:
            return F.lit(False)
        return F.col(f"_prev_{column}").isNotNull() & (F.col(f"_prev_{column}") != F.lit(now))

    why = {r: F.lit(False) for r in reasons}
    for r in reasons:
        for column in REASON_PARTS[r]:
            why[r] = why[r] | (done & changed(column))
    stale = F.lit(False)
    for r in reasons:
        stale = stale | why[r]
    fresh = done & ~stale
    ok = fresh & (F.col("_prev_status") == "ok")
    pending = F.lit(True) if force else ~fresh | (~ok & F.lit(retry_failed))
    flagged = joined.withColumn("_pending", pending).withColumn("_ok", ok)
    c = flagged.agg(
        F.count(F.lit(1)).alias("total"),
        F.count(F.when(F.col("_pending"), 1)).alias("pending"),
        F.count(F.when(~F.col("_pending") & F.col("_ok"), 1)).alias("done_ok"),
        F.count(F.when(~F.col("_pending") & ~F.col("_ok"), 1)).alias("done_error"),
        F.count(
            F.when(F.col("_pending") & F.col("question").isNotNull() & F.col("parse_error").isNull(), 1)
        ).alias("asking"),
        *(F.count(F.when(why[r], 1)).alias(f"stale_{r}") for r in reasons),
    ).first()
    counts = {k: int(v or 0) for k, v in c.asDict().items()}  # type: ignore[union-attr]
    return _Plan(flagged.filter("_pending").select(*EXECUTOR_COLUMNS), counts)


def _current_index(tables: Tables) -> tuple[str | None, dict[str, Any] | None]:
    """The current index build, or (None, None) when there is none yet."""
    from lakechain.index import store
    from lakechain.index.errors import IndexNotFoundError

    try:
        build = store.resolve_build(store.index_root(tables.files_root))
    except IndexNotFoundError:
        return None, None
    return str(build), store.read_manifest(build)


def _index_for(tables: Tables, asking: int) -> tuple[str | None, dict[str, Any] | None]:
    """The current index build, resolved once on the driver so every executor answers from
    the same build even if a new one becomes current mid-run."""
    if not asking:
        return None, None
    build, manifest = _current_index(tables)
    if build is None:
        raise TaskInputError(
            f"{asking} pending tasks ask questions but there is no index under {tables.files_root}/index: "
            "run `lakechain embed` and `lakechain index` first (or `lakechain pipeline`)"
        )
    return build, manifest


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
    prices = price_table(settings)
    return RunContext(
        run_id=run_id,
        chat_model=settings.chat.deployment or settings.chat.model,
        image_model=settings.images.deployment or settings.images.model,
        embedding_model=model_name(settings.embedding),
        index_checksum=manifest_checksum(manifest),
        index_table_version=int(version) if version is not None else None,
        chat_price=price_for(settings.chat, prices),
        image_price=price_for(settings.images, prices),
    )


def _check_budget(settings: Settings) -> None:
    """A cost budget needs a price for every remote model: refuse at start, naming the key."""
    missing = unpriced(settings) if settings.tasks.max_cost_usd is not None else []
    if missing:
        raise ConfigError(
            f"tasks.max_cost_usd: no price for {', '.join(missing)}; add prices.<model>.input_per_1m "
            "and output_per_1m (USD per 1M tokens) to the config, or budget with tasks.max_tokens"
        )


def default_commit_every(settings: Settings, concurrent: int) -> int:
    """Tasks per commit: ``tasks.commit_every``, else 64 waves of calls on every slot.

    Each commit batch costs about one model round trip plus a Spark job launch, so 64 waves
    keep that under a few percent, while a kill loses at most ~64 call latencies of work.
    """
    return settings.tasks.commit_every or max(256, concurrent * settings.tasks.max_concurrency * 64)


def _execute(
    spark: SparkSession,
    settings: Settings,
    tables: Tables,
    plan: _Plan,
    ctx: RunContext,
    build_dir: str | None,
    report: RunReport,
    timer: Timer,
    progress: bool,
) -> None:
    """Each batch: executors answer and stage the rows; the MERGE into ``results`` overlaps
    the next batch on a background thread."""
    n = plan.counts["pending"]
    slots = default_parallelism(spark)
    n_parts = settings.tasks.partitions or slots
    size = default_commit_every(settings, concurrent_partitions(n_parts, slots))
    batches = max(1, math.ceil(n / size))
    parts = max(1, min(n_parts, math.ceil(n / batches)))
    use_cache = report.cache_on = cache_enabled(settings)
    concurrent = concurrent_partitions(parts, slots)
    answer = _answerer(settings, tables, build_dir, ctx, parts, concurrent, use_cache)
    cache = (lambda staged: store_replies(tables, staged, settings.chat)) if use_cache else None
    # Equal questions (hence equal answer calls) in one batch: one call across the run.
    by = F.coalesce("question", "task_id") if use_cache else F.col("task_id")
    meter = Progress("run-tasks", n, enabled=progress)
    budget = Budget.of(settings)
    with (
        # Every batch filters the pending set (a join of the pinned tables): computed once.
        persisted(plan.pending) if batches > 1 else contextlib.nullcontext(plan.pending) as pending,
        ThreadPoolExecutor(1, thread_name_prefix="lakechain-commit") as pool,
        _Commits(tables, pool, report, timer, cache) as commits,
    ):
        for b in range(batches):
            if _over_budget(budget, report, n, batches - b):
                break
            batch = pending
            if batches > 1:
                batch = batch.filter(F.pmod(F.xxhash64(by), F.lit(batches)) == b)
            with timer.step("execute"):
                staging = answer(batch).withColumn("batch", F.lit(b))
                tables.write(staging, RESULTS_STAGING, "append", schema_mode="merge")
                staged = (
                    tables.read(RESULTS_STAGING)
                    .filter((F.col("run_id") == ctx.run_id) & (F.col("batch") == b))
                    .select(*RESULT_NAMES, "llm_reply")
                )
                done = _account(staged, report)
            commits.submit(staged)
            meter.update(
                done,
                f"{report.ok} ok, {report.error} error, "
                f"{report.prompt_tokens + report.completion_tokens} tokens",
            )
    tables.truncate(RESULTS_STAGING)


def _answerer(
    settings: Settings,
    tables: Tables,
    build_dir: str | None,
    ctx: RunContext,
    parts: int,
    concurrent: int,
    use_cache: bool,
) -> Callable[[DataFrame], DataFrame]:
    """Pending task rows in, one executed row per task out: retrieval (and the cache lookup),
    then the model calls, each a ``mapInPandas`` over ``parts`` partitions."""
    image_dir = os.path.join(tables.files_root, "images") if settings.tasks.write_image_files else None
    prepare = make_prepare_fn(worker_settings(settings), build_dir, use_cache)
    fn = make_partition_fn(worker_settings(settings), build_dir, ctx, concurrent, image_dir)

    def answer(batch: DataFrame) -> DataFrame:
        prepared = batch.repartition(parts).mapInPandas(prepare, PREPARED_DDL)
        joined = with_cached(tables, prepared, use_cache)
        if use_cache:  # equal keys to one partition, where one task calls for all
            joined = joined.repartition(parts, F.coalesce("cache_key", "task_id"))
        return joined.mapInPandas(fn, EXECUTED_DDL)

    return answer


def _estimate(
    spark: SparkSession,
    settings: Settings,
    tables: Tables,
    plan: _Plan,
    ctx: RunContext,
    build_dir: str | None,
    report: RunReport,
    timer: Timer,
    progress: bool,
) -> None:
    """Run a pilot through the normal path (its rows are real results), measure it, count the
    other pending tasks' prompt tokens on the executors, project, and append to ``run_estimates``."""
    from lakechain.tasks.estimate import project

    n = plan.counts["pending"]
    n_pilot = min(settings.tasks.estimate_pilot, n)
    # A hash order, so the pilot is not biased by the input's order; the plan is pinned, so
    # evaluating it again below yields the same tasks.
    pilot = plan.pending.orderBy(F.xxhash64("task_id"), "task_id").limit(n_pilot)
    pilot_timer = Timer()
    _execute(spark, settings, tables, _Plan(pilot, {**plan.counts, "pending": n_pilot}), ctx, build_dir,
             report, pilot_timer, progress)  # fmt: skip
    for step, seconds in pilot_timer.steps.items():
        timer.steps[step] = round(timer.steps.get(step, 0.0) + seconds, 3)
    with timer.step("estimate"):
        stats = _pilot_stats(tables, ctx.run_id)
        slots = default_parallelism(spark)
        n_parts = settings.tasks.partitions or slots
        rest = plan.pending.join(pilot.select("task_id"), "task_id", "left_anti")
        work = _workload(settings, build_dir, rest, n_parts)
        t = settings.tasks
        in_flight = concurrent_partitions(n_parts, slots) * t.max_concurrency
        rpm, tpm = t.requests_per_minute, t.tokens_per_minute
        spark_s = sum(pilot_timer.steps.values())  # the pilot is one batch
        overhead = max(0.0, spark_s - stats.tasks * stats.latency_mean_s / in_flight)
        batches = math.ceil(
            work.tasks / default_commit_every(settings, concurrent_partitions(n_parts, slots))
        )
        est = project(n, stats, work, ctx.chat_price, ctx.image_price, in_flight, rpm, tpm, overhead, batches)
        now = datetime.now(timezone.utc)
        row = {"run_id": ctx.run_id, "created_at": now, "model": ctx.chat_model, **est.as_dict()}
        values = [tuple(row[c] for c in names(RUN_ESTIMATE_COLUMNS))]
        df = spark.createDataFrame(values, ddl(RUN_ESTIMATE_COLUMNS))
        tables.write(df, RUN_ESTIMATES, "append")
        report.estimate = est.as_dict()


def _over_budget(budget: Budget, report: RunReport, n: int, batches_left: int) -> bool:
    """Whether the next batch would pass ``tasks.max_cost_usd``/``max_tokens`` (then the reason
    is in ``report.budget_stop``); the first batch always runs (no average before it)."""
    if not budget.limited:
        return False
    spent, tokens = report.cost_usd, report.prompt_tokens + report.completion_tokens
    next_n = math.ceil((n - report.processed) / batches_left)
    report.budget_stop = budget.stop_reason(spent, tokens, report.processed, next_n, n)
    if report.budget_stop:
        log.warning("run-tasks %s", report.budget_stop)
    return bool(report.budget_stop)


def _pilot_stats(tables: Tables, run_id: str) -> PilotStats:
    """Completion tokens and latency of the pilot's committed rows (one aggregate)."""
    from lakechain.tasks.estimate import PilotStats

    calls = F.col("prompt_tokens") > 0
    m = (
        tables.read(RESULTS)
        .filter(F.col("run_id") == run_id)
        .agg(
            F.count(F.lit(1)).alias("tasks"),
            F.count(F.when(calls, 1)).alias("chat"),
            F.avg(F.when(calls, F.col("completion_tokens"))).alias("c_mean"),
            F.stddev_samp(F.when(calls, F.col("completion_tokens"))).alias("c_sd"),
            (F.avg("latency_ms") / 1000).alias("l_mean"),
            (F.stddev_samp("latency_ms") / 1000).alias("l_sd"),
        )
        .first()
    )
    spread = (float(m[k] or 0.0) for k in ("c_mean", "c_sd", "l_mean", "l_sd"))  # type: ignore[index]
    return PilotStats(int(m["tasks"]), int(m["chat"]), *spread)  # type: ignore[index]


def _workload(settings: Settings, build_dir: str | None, rest: DataFrame, n_parts: int) -> Workload:
    """The other pending tasks' exact prompt tokens, counted on the executors after retrieval."""
    from lakechain.tasks.estimate import COUNT_DDL, Workload, make_count_fn

    prepare = make_prepare_fn(worker_settings(settings), build_dir, False)
    counted = (
        rest.repartition(n_parts)
        .mapInPandas(prepare, PREPARED_DDL)
        .mapInPandas(make_count_fn(settings.chat), COUNT_DDL)
        .agg(
            F.count(F.lit(1)).alias("tasks"),
            F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("prompt"),
            F.coalesce(F.sum("chat_tasks"), F.lit(0)).alias("chat"),
            F.coalesce(F.sum("image_calls"), F.lit(0)).alias("images"),
        )
        .first()
    )
    return Workload(*(int(counted[k]) for k in ("tasks", "chat", "prompt", "images")))  # type: ignore[index]


def _account(staged: DataFrame, report: RunReport) -> int:
    """Add one staged batch's counts to the report (one aggregate, a handful of reasons)."""
    c = staged.agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(F.col("status") == "ok", 1)).alias("ok"),
        F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("prompt"),
        F.coalesce(F.sum("completion_tokens"), F.lit(0)).alias("completion"),
        F.coalesce(F.sum("attempts"), F.lit(0)).alias("attempts"),
        F.count(F.when(F.col("error").startswith(INVALID_INPUT), 1)).alias("invalid"),
        F.count(F.when(F.col("cache_hit"), 1)).alias("hits"),
        F.coalesce(F.sum("calls_saved"), F.lit(0)).alias("saved"),
        F.coalesce(F.sum("cost_usd"), F.lit(0.0)).alias("cost"),
        F.count(F.when(F.col("cost_usd").isNull(), 1)).alias("unpriced"),
    ).first()
    n, ok = int(c["n"]), int(c["ok"])  # type: ignore[index]
    report.ok += ok
    report.error += n - ok
    report.invalid += int(c["invalid"])  # type: ignore[index]
    report.prompt_tokens += int(c["prompt"])  # type: ignore[index]
    report.completion_tokens += int(c["completion"])  # type: ignore[index]
    report.attempts += int(c["attempts"])  # type: ignore[index]
    report.cache_hits += int(c["hits"])  # type: ignore[index]
    report.calls_saved += int(c["saved"])  # type: ignore[index]
    report.cost_usd += float(c["cost"])  # type: ignore[index]
    report.cost_unknown += int(c["unpriced"])  # type: ignore[index]
    if n > ok:
        errors = (
            staged.filter("status <> 'ok'")
            .groupBy("error")
            .count()
            .orderBy(F.desc("count"))
            .limit(TOP_REASONS)
        )
        for r in errors.collect():
            kind = error_kind(r["error"])
            report.errors_by_reason[kind] = report.errors_by_reason.get(kind, 0) + int(r["count"])
    return n


class _Commits:
    """MERGEs into ``results`` on one background thread, at most one queued at a time.

    Batch N is merged while batch N+1 runs; the next MERGE waits for the previous one, so
    commits land in order and a failed one surfaces at the next batch boundary. Leaving the
    block waits for the last one, also when failing: finished work is committed first.
    """

    def __init__(
        self,
        tables: Tables,
        pool: ThreadPoolExecutor,
        report: RunReport,
        timer: Timer,
        cache: Callable[[DataFrame], Any] | None = None,
    ) -> None:
        self.tables, self.pool, self.report, self.timer = tables, pool, report, timer
        self.cache = cache
        """Stores a batch's new replies in ``llm_cache`` after its results are merged."""
        self._pending: Future[int] | None = None

    def submit(self, staged: DataFrame) -> None:
        self.wait()
        self._pending = self.pool.submit(self._commit, staged)
        self.report.batches += 1

    def _commit(self, staged: DataFrame) -> int:
        version = self.tables.merge(staged.select(*RESULT_NAMES), RESULTS, ["task_id"], schema_mode="merge")
        if self.cache is not None:
            self.cache(staged)
        return version

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            with self.timer.step("commit_wait"):
                self.report.results_version = pending.result()

    def __enter__(self) -> _Commits:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception) if exc[0] is not None else contextlib.nullcontext():
            self.wait()
