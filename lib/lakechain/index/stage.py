"""Spark layer of the index stage: chunks table → FAISS shards per partition → one index.

1. Profile the pinned table version (model, vector length, row count) and plan the index.
2. IVF kinds: train once on the driver from a sample; the trained empty index is shipped
   to every partition (shards must share the quantizer to be mergeable).
3. ``mapInArrow``: each partition validates its rows and builds a shard under global
   ``vector_id`` ids, written to a staging directory (``index.shard_transport=files``)
   or returned in the result rows (``spark``).
4. The driver refuses duplicate ids, assembles the shards into one index, and saves a new
   build that becomes current atomically. Rejected rows go to ``ingest_errors`` (stage
   "index").
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakechain.config import IndexConfig, Settings
from lakechain.index import build, keyword, shards, store
from lakechain.index.errors import IndexBuildError
from lakechain.runtime.timer import Timer
from lakechain.storage.schemas import CHUNKS, ERRORS_DDL, INGEST_ERRORS

if TYPE_CHECKING:
    from lakechain.storage.tables import Tables

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5


@dataclass
class IndexReport:
    """What ``run_index`` did; ``skipped`` when the current build already matches the table."""

    skipped: bool
    kind: str
    description: str
    count: int
    dim: int
    model: str
    shards: int
    table_version: int | None
    path: str
    seconds: float
    rejected: int = 0
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return self.summary()

    def summary(self, rebuild_flag: str = "--force") -> str:
        """The report; ``rebuild_flag`` is the calling command's flag (pipeline: --rebuild-index)."""
        what = f"{self.description} index: {self.count:,} vectors × {self.dim} (model {self.model})"
        if self.skipped:
            return (
                f"index up to date, skipped: {what} from chunks v{self.table_version} at {self.path} "
                f"(use {rebuild_flag} to rebuild)"
            )
        text = (
            f"built {what} from chunks v{self.table_version} in {self.shards} shard(s), "
            f"{self.seconds:.1f} s → {self.path}"
        )
        if self.rejected:
            eg = "; ".join(f"{e.get('chunk_id')}: {e.get('reason')}" for e in self.rejected_examples[:3])
            text += f"\n{self.rejected} chunk row(s) rejected (see {INGEST_ERRORS}, stage 'index'), e.g. {eg}"
        return text


def config_fingerprint(cfg: IndexConfig) -> dict[str, Any]:
    """Index settings that change what gets built (nprobe is search-time only)."""
    return {
        "kind": cfg.kind,
        "ivf_min_rows": cfg.ivf_min_rows,
        "nlist": cfg.nlist,
        "pq_m": cfg.pq_m,
        "train_sample": cfg.train_sample,
    }


def is_up_to_date(manifest: dict[str, Any] | None, table: str, version: int, cfg: IndexConfig) -> bool:
    """True when the build came from this table version with the same index settings.

    The model and dimension are read from that same table version, so they match too.
    """
    if not manifest:
        return False
    src = manifest.get("source", {})
    return (
        src.get("table") == table
        and src.get("version") == version
        and manifest.get("config") == config_fingerprint(cfg)
        and keyword.is_current(manifest)  # hook: builds without a (current) keyword side are rebuilt
    )


def profile(df: DataFrame) -> tuple[str | None, int, int]:
    """(model, dim, rows with that dim) of the chunks; several models is an error.

    The vector length is measured (``size(embedding)``), not taken from the ``dim`` column;
    rows of another length are rejected later, row by row.
    """
    groups = df.groupBy("model", F.size("embedding").alias("len")).count().collect()
    models = sorted({g["model"] for g in groups if g["len"] and g["len"] > 0 and g["model"] is not None})
    if len(models) > 1:
        raise IndexBuildError(
            f"the chunks table mixes embedding models {models}: re-run `lakechain embed` so every chunk "
            "is embedded with the configured model, then `lakechain index`"
        )
    by_len: dict[int, int] = {}
    for g in groups:
        if g["len"] and g["len"] > 0:
            by_len[g["len"]] = by_len.get(g["len"], 0) + g["count"]
    if not by_len:
        total = sum(g["count"] for g in groups)
        raise IndexBuildError(
            f"no embedded chunks to index ({total} row(s) without an embedding): run `lakechain embed` first"
        )
    dim = max(by_len, key=lambda d: by_len[d])
    return (models[0] if models else None), dim, by_len[dim]


def training_sample(df: DataFrame, dim: int, n: int, size: int, seed: int = 17) -> np.ndarray:
    """Up to ``size`` valid vectors drawn uniformly (Bernoulli sample, then a cap)."""
    src = df.select("embedding")
    if n > size:
        src = src.sample(False, min(1.0, 1.2 * size / n), seed=seed)
    table = src.limit(size).toArrow()
    return shards.vectors_from_arrow(table.column("embedding"), dim).matrix


Batches = Iterator[pa.RecordBatch]


def _partition_fn(template: bytes, dim: int, stage_dir: str | None) -> Callable[[Batches], Batches]:
    def fn(batches: Batches) -> Batches:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        shard_id = ctx.partitionId() if ctx is not None else 0
        # One FAISS thread per task core: Spark already runs one task per core.
        faiss.omp_set_num_threads(max(1, ctx.cpus() if ctx is not None else 1))
        yield from shards.shard_partition(batches, template, dim, shard_id, stage_dir)

    return fn


def build_and_merge(
    df: DataFrame, template: bytes, dim: int, partitions: int | None = None, stage_dir: str | None = None
) -> shards.Merged:
    """Shards via ``mapInArrow``, then assembled on the driver.

    With ``stage_dir`` (shared storage) the executors write shard files and the job returns
    small rows. Without it the shards come back in the rows, collected as Arrow in one job
    (all partitions in parallel; the total must fit ``spark.driver.maxResultSize`` and the
    driver's memory - for big indexes use the default ``files`` transport).
    """
    cols = [c for c in shards.INPUT_COLUMNS if c in df.columns]
    src = df.select(*cols)
    if partitions:
        src = src.repartition(partitions)
    out = src.mapInArrow(_partition_fn(template, dim, stage_dir), shards.SHARD_DDL)
    return shards.merge_shard_rows(shards.rows_of(out.toArrow()), template)


def record_errors(spark: SparkSession, tables: Tables, errors: pa.Table, table: str, run_id: str) -> bool:
    """Append rejected rows to ``ingest_errors``; False (and a warning) if that fails."""
    if errors.num_rows == 0:
        return True
    now = datetime.now(timezone.utc)
    data = [
        (f"{table}:{r['chunk_id']}", r["doc_id"], r["reason"], "index", run_id, now)
        for r in errors.to_pylist()
    ]
    try:
        tables.write(spark.createDataFrame(data, ERRORS_DDL), INGEST_ERRORS, mode="append")
        return True
    except Exception as exc:  # the index is already saved; do not lose it over the error log
        log.warning("could not append %d rejected rows to %s: %s", len(data), INGEST_ERRORS, exc)
        return False


def _report(manifest: dict[str, Any], path: str, skipped: bool, seconds: float, **kw: Any) -> IndexReport:
    return IndexReport(
        skipped=skipped,
        kind=manifest["kind"],
        description=manifest["description"],
        count=int(manifest["count"]),
        dim=int(manifest["dim"]),
        model=str(manifest["model"]),
        shards=int(manifest.get("shards", 0)),
        table_version=manifest.get("source", {}).get("version"),
        path=path,
        seconds=seconds,
        **kw,
    )


def run_index(
    spark: SparkSession, settings: Settings, tables: Tables, force: bool = False, table: str = CHUNKS
) -> IndexReport:
    """Build (or skip) the index of ``table`` under ``<files_root>/index/``.

    Skips when the current build was made from the table's current version with the same
    index settings, unless ``force``. Raises ``IndexBuildError`` when there is nothing to
    index, the table mixes embedding models, or ids are duplicated.
    """
    timer = Timer()
    run_id = "index-" + store.new_build_name().removeprefix(store.BUILD_PREFIX)
    cfg = settings.index
    root = store.index_root(tables.files_root)
    version = tables.version(table)
    if version is None:
        raise IndexBuildError(f"table {table!r} does not exist: run `lakechain embed` first")
    current = store.current_manifest(root)
    if not force and current is not None and is_up_to_date(current, table, version, cfg):
        log.info("index up to date with %s v%s: skipped", table, version)
        return _report(current, str(store.resolve_build(root)), True, timer.elapsed)
    df = tables.read(table, version=version)
    with timer.step("profile"):
        model, dim, n = profile(df)
        plan = build.plan_index(n, dim, cfg.kind, cfg.ivf_min_rows, cfg.nlist, cfg.pq_m, cfg.train_sample)
    with timer.step("train"):
        sample = training_sample(df, dim, n, cfg.train_sample) if plan.needs_training else None
        template = build.to_bytes(build.train(plan, sample)).tobytes()
    with timer.step("shards_merge"):
        merged = _shards(df, template, dim, cfg, root)
    _refuse_empty(spark, tables, merged, table, run_id)
    name, path = tables.full_name(table), tables.location(table)
    source = {"table": table, "name": name, "path": path, "version": version}
    manifest = store.make_manifest(
        plan, merged.index, model, source, shards=merged.shards, nprobe=cfg.nprobe,
        rejected=merged.errors.num_rows, config=config_fingerprint(cfg), build_seconds=timer.elapsed,
    )  # fmt: skip
    manifest["run_id"] = run_id  # the run_id of this build's rows in ingest_errors
    with timer.step("save"):
        build_dir = store.save_build(root, merged.index, merged.rows, manifest, keyword=keyword.write_index)
    record_errors(spark, tables, merged.errors, table, run_id)
    report = _report(
        store.read_manifest(build_dir), str(build_dir), False, timer.elapsed, rejected=merged.errors.num_rows,
        rejected_examples=merged.errors.slice(0, MAX_EXAMPLES).to_pylist(), timings=timer.steps,
    )  # fmt: skip
    log.info("%s", report)
    return report


def _shards(df: DataFrame, template: bytes, dim: int, cfg: IndexConfig, root: Any) -> shards.Merged:
    """Shards built per partition and merged on the driver; the staging directory of the
    ``files`` transport is removed whatever happens."""
    stage_dir = store.new_staging_dir(root) if cfg.shard_transport == "files" else None
    try:
        return build_and_merge(df, template, dim, cfg.partitions, str(stage_dir) if stage_dir else None)
    finally:
        if stage_dir is not None:
            shutil.rmtree(stage_dir, ignore_errors=True)


def _refuse_empty(
    spark: SparkSession, tables: Tables, merged: shards.Merged, table: str, run_id: str
) -> None:
    """An index of nothing is an error, with the rejected rows recorded to say why."""
    if merged.index.ntotal == 0:
        record_errors(spark, tables, merged.errors, table, run_id)
        eg = merged.errors.slice(0, 3).to_pylist()
        raise IndexBuildError(
            f"every chunk row was rejected ({merged.errors.num_rows}, see {INGEST_ERRORS}), e.g. {eg}"
        )
