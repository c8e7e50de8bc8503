"""Spark layer of the run report: the ``runs`` row each run appends, and ``lakechain report``.

Aggregates (counts, tokens per model, failures per reason, the score histogram) run in
Spark; only bounded rows reach the driver (``Limits``: the first N results by task id, a
few examples per reason, capped texts), so a run of any size gives a page of a few MB.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from lakechain.errors import TableNotFoundError
from lakechain.report import data as rd
from lakechain.report.html import render
from lakechain.storage.schemas import CHUNKS, RESULTS, RUN_COLUMNS, RUNS, RUNS_DDL, names
from lakechain.storage.session import persisted
from lakechain.tasks.report import POSITION, RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from lakechain.storage.tables import Tables

TOP_REASONS = 20
EXAMPLES = 3
BINS = 24
SHOWN = {
    "run_id",
    "source",
    "ok",
    "error",
    "skipped",
    "tasks_total",
    "pending",
    "invalid",
    "timings",
    "wall_s",
    "prompt_tokens",
    "completion_tokens",
    "notes",
    "cost_usd",
    "cache_hits",
}
"""RunReport fields the page shows in its own sections (the rest go to "Run details")."""
CACHE_HIT, COST = "cache_hit", "cost_usd"
"""Optional ``results`` columns: read when the table has them."""


def record_run(
    tables: Tables, command: str, report: RunReport, stage_seconds: dict[str, float]
) -> dict[str, Any]:
    """Append this run's row to ``runs`` (one small commit) and return it, so the pipeline's
    report is built from it without reading ``runs`` back."""
    now = dt.datetime.now(dt.timezone.utc)
    values = (
        report.run_id,
        command,
        report.source,
        now - dt.timedelta(seconds=sum(stage_seconds.values()) or report.wall_s),
        now,
        float(sum(stage_seconds.values()) or report.wall_s),
        report.tasks_total,
        report.pending,
        report.ok,
        report.error,
        report.skipped,
        {k: float(v) for k, v in stage_seconds.items()},
        json.dumps(report.as_dict(), default=str),
    )
    tables.write(tables.spark.createDataFrame([values], RUNS_DDL), RUNS, "append")
    return dict(zip(names(RUN_COLUMNS), values, strict=True))


def error_reason(message: Column) -> Column:
    """``tasks.report.error_kind`` as a Spark expression, so failures group on the executors:
    the text before the first ``;``, up to its second ``:``, trimmed, positions made ``line N``,
    80 characters."""
    head = F.split(F.split(message, ";", 2)[0], ":", 3)
    kind = F.substring(
        F.regexp_replace(F.trim(F.concat_ws(":", F.slice(head, 1, 2))), POSITION, "$1 N"), 1, 80
    )
    return F.when(message.isNull() | (message == ""), F.lit("unknown")).otherwise(kind)


STAGE_ORDER = ("embed", "index", "run-tasks")


def _in_pipeline_order(seconds: dict[str, float]) -> dict[str, float]:
    """Stages as the pipeline runs them (a Spark map column keeps no order)."""
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return dict(sorted(seconds.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def default_path(tables: Tables, run_id: str) -> str:
    """``<files root>/reports/<run_id>.html``: beside ``images/``, so relative links hold."""
    return os.path.join(tables.files_root, "reports", f"{run_id}.html")


def write_report(
    tables: Tables,
    run_id: str | None = None,
    out: str | None = None,
    limits: rd.Limits = rd.DEFAULT_LIMITS,
    run: dict[str, Any] | None = None,
) -> str:
    """Write the report of ``run_id`` (default: the latest run) to ``out`` and return its path.
    ``run``: the run's ``runs`` row when the caller has it (:func:`record_run`)."""
    run_id = run_id or latest_run_id(tables)
    path = os.path.abspath(out or default_path(tables, run_id))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    page = render(collect(tables, run_id, os.path.dirname(path), limits, run))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def latest_run_id(tables: Tables) -> str:
    """The newest run in ``runs``, else the newest ``run_id`` in ``results``."""
    for name, order in ((RUNS, "started_at"), (RESULTS, "created_at")):
        if tables.exists(name):
            row = tables.read(name).orderBy(F.col(order).desc()).select("run_id").first()
            if row is not None:
                return str(row["run_id"])
    raise TableNotFoundError(
        f"no task run to report on under {tables.files_root}: run `lakechain run-tasks` "
        "or `lakechain pipeline` first"
    )


def collect(
    tables: Tables,
    run_id: str,
    out_dir: str,
    limits: rd.Limits = rd.DEFAULT_LIMITS,
    run: dict[str, Any] | None = None,
) -> rd.ReportData:
    """Everything the page shows for ``run_id``, as :class:`~lakechain.report.data.ReportData`;
    ``run`` is its ``runs`` row, read from the table when not given."""
    run = run or _run_row(tables, run_id)
    if not tables.exists(RESULTS):
        return _collect(tables, run_id, run, None, out_dir, limits)
    # a dozen small queries follow: scan and filter the table once
    with persisted(tables.read(RESULTS).filter(F.col("run_id") == run_id)) as results:
        return _collect(tables, run_id, run, results, out_dir, limits)


def _collect(
    tables: Tables,
    run_id: str,
    run: dict[str, Any] | None,
    results: DataFrame | None,
    out_dir: str,
    limits: rd.Limits,
) -> rd.ReportData:
    if run is None and (results is None or results.isEmpty()):
        raise TableNotFoundError(
            f"no run {run_id!r} in {tables.full_name(RUNS)} or {tables.full_name(RESULTS)}; list the runs "
            f'with `lakechain sql "SELECT run_id, command, started_at FROM {RUNS} ORDER BY started_at DESC"`'
        )
    report: dict[str, Any] = json.loads(run["report"]) if run else {}
    totals = _totals(results)
    rows, chunks = _rows(tables, results, limits) if results is not None else ([], [])
    images, images_total = _images(results, out_dir, limits) if results is not None else ([], 0)
    figures: rd.Figures = {
        "tasks_total": report.get("tasks_total"),
        "pending": report.get("pending"),
        "ok": int(report.get("ok", totals["ok"])),
        "error": int(report.get("error", totals["error"])),
        "skipped": report.get("skipped"),
        "invalid": report.get("invalid"),
        "cache_hits": totals["cache_hits"],
        "prompt_tokens": int(report.get("prompt_tokens", totals["prompt_tokens"])),
        "completion_tokens": int(report.get("completion_tokens", totals["completion_tokens"])),
        "cost_usd": report.get("cost_usd", totals["cost_usd"]),
        "wall_s": run["wall_s"] if run else None,
    }
    return {
        "run_id": run_id,
        "command": run["command"] if run else None,
        "source": run["source"] if run else None,
        "started_at": f"{run['started_at']:%Y-%m-%d %H:%M:%S}" if run else None,
        "generated_at": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
        "figures": figures,
        "stages": _in_pipeline_order(run["stage_seconds"] or {}) if run else {},
        "phases": {k.removesuffix("_s"): float(v) for k, v in (report.get("timings") or {}).items()},
        "models": _models(results) if results is not None else [],
        "errors": _failures(results) if results is not None else [],
        "images": images,
        "images_total": images_total,
        "histogram": _histogram(results) if results is not None else None,
        "columns": rd.ROW_COLUMNS,
        "rows": rows,
        "rows_total": totals["n"],
        "chunks": chunks,
        "notes": [str(n) for n in report.get("notes") or []],
        "details": rd.details(report, SHOWN),
    }


def _run_row(tables: Tables, run_id: str) -> dict[str, Any] | None:
    if not tables.exists(RUNS):
        return None
    row = tables.read(RUNS).filter(F.col("run_id") == run_id).orderBy(F.col("finished_at").desc()).first()
    return row.asDict() if row is not None else None


def _optional(df: DataFrame, column: str) -> Column | None:
    return F.col(column) if column in df.columns else None


def _totals(results: DataFrame | None) -> dict[str, Any]:
    """Counts and sums over the run's rows, in one aggregate."""
    if results is None:
        return {
            "n": 0,
            "ok": 0,
            "error": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cache_hits": None,
            "cost_usd": None,
        }
    hit, cost = _optional(results, CACHE_HIT), _optional(results, COST)
    c = results.agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(F.col("status") == "ok", 1)).alias("ok"),
        F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("prompt_tokens"),
        F.coalesce(F.sum("completion_tokens"), F.lit(0)).alias("completion_tokens"),
        (F.count(F.when(hit, 1)) if hit is not None else F.lit(None)).alias("cache_hits"),
        (F.sum(cost) if cost is not None else F.lit(None)).alias("cost_usd"),
    ).first()
    out = c.asDict() if c is not None else {}
    out["error"] = int(out.get("n") or 0) - int(out.get("ok") or 0)
    return out


def _models(results: DataFrame) -> list[rd.ModelRow]:
    """Tasks, tokens, cost and mean latency per chat model, and images per image model."""
    cost = _optional(results, COST)
    chat = (
        results.filter(F.col("chat_model").isNotNull())
        .groupBy(F.col("chat_model").alias("model"))
        .agg(
            F.count(F.lit(1)).alias("tasks"),
            F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("prompt_tokens"),
            F.coalesce(F.sum("completion_tokens"), F.lit(0)).alias("completion_tokens"),
            (F.sum(cost) if cost is not None else F.lit(None).cast("double")).alias("cost_usd"),
            F.avg("latency_ms").alias("latency_ms_avg"),
        )
    )
    image = (
        results.filter(F.col("image_model").isNotNull() & (F.col("image_status") != "skipped"))
        .groupBy(F.col("image_model").alias("model"))
        .agg(F.count(F.lit(1)).alias("tasks"), F.avg("latency_ms").alias("latency_ms_avg"))
    )
    rows: list[rd.ModelRow] = []
    for role, df in (("chat", chat), ("image", image)):
        for r in df.orderBy(F.desc("tasks")).limit(50).collect():
            d = r.asDict()
            rows.append(
                {
                    "model": str(d["model"]),
                    "role": role,  # type: ignore[typeddict-item]
                    "tasks": int(d["tasks"]),
                    "prompt_tokens": int(d.get("prompt_tokens") or 0),
                    "completion_tokens": int(d.get("completion_tokens") or 0),
                    "cost_usd": d.get("cost_usd"),
                    "latency_ms_avg": d.get("latency_ms_avg"),
                }
            )
    return rows


def _failures(results: DataFrame) -> list[rd.ErrorGroup]:
    """The most frequent failure reasons with their counts and the first examples by task id."""
    failed = results.filter(F.col("status") != "ok").withColumn("reason", error_reason(F.col("error")))
    top = failed.groupBy("reason").count().orderBy(F.desc("count"), "reason").limit(TOP_REASONS).collect()
    if not top:
        return []
    first = Window.partitionBy("reason").orderBy("task_id")
    examples = (
        failed.filter(F.col("reason").isin([r["reason"] for r in top]))
        .withColumn("_n", F.row_number().over(first))
        .filter(F.col("_n") <= EXAMPLES)
        .select("reason", "task_id", F.substring("error", 1, 400).alias("error"))
        .orderBy("reason", "task_id")
        .collect()
    )
    by_reason: dict[str, list[rd.ErrorExample]] = {}
    for e in examples:
        by_reason.setdefault(e["reason"], []).append({"task_id": e["task_id"], "error": e["error"] or ""})
    return [
        {"reason": r["reason"], "count": int(r["count"]), "examples": by_reason.get(r["reason"], [])}
        for r in top
    ]


def _histogram(results: DataFrame) -> rd.Histogram | None:
    """Retrieval scores of every cited source, in ``BINS`` equal bins from min to max."""
    scores = results.select(F.explode("sources").alias("s")).select(F.col("s.score").alias("score"))
    scores = scores.filter(F.col("score").isNotNull())
    mm = scores.agg(F.min("score").alias("lo"), F.max("score").alias("hi")).first()
    if mm is None or mm["lo"] is None:
        return None
    lo, hi = float(mm["lo"]), float(mm["hi"])
    bins = BINS if hi > lo else 1
    width = (hi - lo) / bins if hi > lo else 1.0
    index = F.least(F.floor((F.col("score") - F.lit(lo)) / F.lit(width)).cast("int"), F.lit(bins - 1))
    counts = {int(r["b"]): int(r["count"]) for r in scores.groupBy(index.alias("b")).count().collect()}
    return rd.histogram(lo, hi, counts, bins)


def _rows(
    tables: Tables, results: DataFrame, limits: rd.Limits
) -> tuple[list[list[Any]], list[list[str | None]]]:
    """The first ``limits.rows`` results by task id (texts capped in Spark), and the text of
    the chunks they cite (at most ``limits.chunks``)."""
    cut = {
        "question": limits["question_chars"],
        "image_prompt": limits["question_chars"],
        "answer": limits["answer_chars"],
        "error": limits["error_chars"],
    }
    plain = [
        "task_id",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "chat_model",
        "image_model",
        "image_status",
        "sources",
    ]
    hit = _optional(results, CACHE_HIT)
    first = (
        results.select(
            *plain,
            *[F.substring(c, 1, n + 1).alias(c) for c, n in cut.items()],
            (hit if hit is not None else F.lit(None).cast("boolean")).alias(CACHE_HIT),
        )
        .orderBy("task_id")
        .limit(limits["rows"])
    )
    texts: dict[str, str] = {}
    if tables.exists(CHUNKS):
        cited = (
            first.select(F.explode("sources.chunk_id").alias("chunk_id")).distinct().limit(limits["chunks"])
        )
        text = F.substring("text", 1, limits["chunk_chars"] + 1).alias("text")
        for r in tables.read(CHUNKS).join(cited, "chunk_id").select("chunk_id", text).collect():
            texts[r["chunk_id"]] = r["text"]
    rows = [r.asDict(recursive=True) for r in first.collect()]
    return rd.compact_rows(rows, texts, limits)


def _images(results: DataFrame, out_dir: str, limits: rd.Limits) -> tuple[list[rd.Image], int]:
    """Gallery cards for the first ``limits.gallery`` images by task id; the first
    ``limits.thumbnails`` get an embedded thumbnail (from the file, else the row's bytes)."""
    tried = results.filter(F.col("image_status").isNotNull() & (F.col("image_status") != "skipped"))
    total = tried.count()
    if not total:
        return [], 0
    cols = [
        "task_id",
        "image_status",
        "image_prompt",
        "question",
        "image_prompt_used",
        "image_error",
        "image_width",
        "image_height",
        "image_path",
    ]
    rows = [r.asDict() for r in tried.select(*cols).orderBy("task_id").limit(limits["gallery"]).collect()]
    thumbs = [r for r in rows if r["image_status"] == "ok"][: limits["thumbnails"]]
    png = {r["task_id"]: rd.read_png(r["image_path"]) for r in thumbs}
    missing = [t for t, b in png.items() if b is None]
    if missing:  # no file (or not readable here): the row's bytes, when tasks.store_image_bytes kept them
        for r in tried.filter(F.col("task_id").isin(missing)).select("task_id", "image_png").collect():
            png[r["task_id"]] = r["image_png"]
    return [rd.image_entry(r, out_dir, png.get(r["task_id"]), limits) for r in rows], total
