"""The response cache's Spark half: the join that finds hits, the MERGE of new replies,
``lakechain cache stats`` and ``lakechain cache clear``.

Nothing here reaches the driver but counts: hits are found by a join of the prepared
tasks with ``llm_cache`` inside the batch's plan, and new replies go from the staged
rows (written by the executors) into ``llm_cache`` by a MERGE that inserts only new keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import Window
from pyspark.sql import functions as F

from lakechain.storage.schemas import LLM_CACHE, LLM_CACHE_DDL, RESULTS
from lakechain.tasks.llm_cache import call_params

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from lakechain.config import ChatConfig
    from lakechain.storage.tables import Tables

REPLY_FIELDS = ("response", "finish_reason", "model", "prompt_tokens", "completion_tokens")


def with_cached(tables: Tables, prepared: DataFrame, use_cache: bool) -> DataFrame:
    """``prepared`` plus ``cached``: the JSON of the reply ``llm_cache`` holds for the row's
    ``cache_key`` (null: a miss, or the cache is off). A left join in the batch's plan."""
    if not use_cache:
        return prepared.withColumn("cached", F.lit(None).cast("string"))
    tables.create_empty(LLM_CACHE, LLM_CACHE_DDL)
    entries = tables.read(LLM_CACHE).select(
        "cache_key",
        F.to_json(
            F.struct(
                "response",
                "finish_reason",
                F.col("response_model").alias("model"),
                "prompt_tokens",
                "completion_tokens",
            )  # fmt: skip
        ).alias("cached"),
    )
    return prepared.join(entries, "cache_key", "left")


def store_replies(tables: Tables, staged: DataFrame, chat: ChatConfig) -> int | None:
    """MERGE the replies of one staged batch's successful calls into ``llm_cache`` (new keys
    only: an entry is never overwritten). Failed calls have no reply: never cached."""
    params = call_params(chat)
    new = staged.filter(
        F.col("llm_reply").isNotNull() & F.col("cache_key").isNotNull() & (F.col("qa_status") == "ok")
    )
    first = Window.partitionBy("cache_key").orderBy("created_at")
    rows = (
        new.withColumn("_n", F.row_number().over(first))
        .filter("_n = 1")
        .select(
            "cache_key",
            F.lit(params["provider"]).alias("provider"),
            F.lit(params["model"]).alias("model"),
            *[F.col(f"llm_reply.{f}").alias("response_model" if f == "model" else f) for f in REPLY_FIELDS],
            "run_id",
            "created_at",
        )
    )
    if rows.isEmpty():
        return None
    return tables.insert_new(rows, LLM_CACHE, ["cache_key"])


@dataclass
class CacheStats:
    """``lakechain cache stats``: what the cache holds and what results say it saved."""

    entries: int = 0
    bytes_on_disk: int = 0
    by_model: list[dict[str, Any]] = field(default_factory=list)
    """Per (provider, model): entries and reply characters."""
    hits_recorded: int = 0
    """Result rows (latest per task) answered from the cache."""
    calls_saved: int = 0

    def __str__(self) -> str:
        lines = [
            f"llm_cache: {self.entries} entries, {self.bytes_on_disk} bytes on disk",
            f"results: {self.hits_recorded} tasks answered from the cache, "
            f"{self.calls_saved} model calls saved",
        ]
        lines += [
            f"  {m['provider']}/{m['model']}: {m['entries']} entries, {m['reply_chars']} reply characters"
            for m in self.by_model
        ]
        return "\n".join(lines)


def cache_stats(tables: Tables) -> CacheStats:
    stats = CacheStats()
    if tables.exists(LLM_CACHE):
        by_model = (
            tables.read(LLM_CACHE)
            .groupBy("provider", "model")
            .agg(F.count(F.lit(1)).alias("entries"), F.sum(F.length("response")).alias("reply_chars"))
            .orderBy(F.desc("entries"))
            .collect()  # one row per model
        )
        stats.by_model = [{**r.asDict(), "reply_chars": int(r["reply_chars"] or 0)} for r in by_model]
        stats.entries = sum(int(m["entries"]) for m in stats.by_model)
        stats.bytes_on_disk = int(tables.detail(LLM_CACHE).get("sizeInBytes") or 0)
    if tables.exists(RESULTS):
        c = (
            tables.read(RESULTS)
            .agg(
                F.count(F.when(F.col("cache_hit"), 1)).alias("hits"),
                F.coalesce(F.sum("calls_saved"), F.lit(0)).alias("saved"),
            )
            .first()
        )
        if c is not None:
            stats.hits_recorded, stats.calls_saved = int(c["hits"]), int(c["saved"])
    return stats


def cache_clear(tables: Tables, model: str | None = None) -> int:
    """Delete every entry, or those of ``model``; returns how many were deleted."""
    if not tables.exists(LLM_CACHE):
        return 0
    entries = tables.read(LLM_CACHE)
    n = (entries if model is None else entries.filter(F.col("model") == model)).count()
    if n:
        if model is None:
            tables.truncate(LLM_CACHE)
        else:
            tables.delete_where(LLM_CACHE, "model", [model])
    return n
