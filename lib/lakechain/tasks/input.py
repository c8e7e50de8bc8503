"""Spark reader of the task input: a JSON-lines file, a directory of them, or a table → task rows.

Files are the user's local inputs: they are parsed on the driver with the pure parser
(``parse.py``) and become one DataFrame. A table is parsed where it lies, row by row on the
executors (nothing is collected); identical id-less rows are numbered by occurrence with a
window, and duplicate ids are found with an aggregate, as ``parse.finish`` does for files.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pyspark.sql import Window
from pyspark.sql import functions as F

from lakechain.config import Settings
from lakechain.runtime.text import open_text
from lakechain.storage.schemas import TASK_COLUMNS, TASKS_DDL, names
from lakechain.tasks.parse import TOP_KEYS, TaskInputError, parse_files, parse_row

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakechain.storage.tables import Tables

TASK_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson")
TASK_NAMES = names(TASK_COLUMNS)
MAX_DUPLICATES_SHOWN = 10


def read_tasks(spark: SparkSession, settings: Settings, tables: Tables) -> tuple[DataFrame, str]:
    """``(tasks DataFrame with TASK_COLUMNS, a label of the source)`` for ``tasks.path``."""
    path = settings.tasks.path
    limit = settings.tasks.max_question_chars
    p = Path(path)
    if p.is_file() or p.is_dir():
        files = (
            [p]
            if p.is_file()
            else sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in TASK_FILE_SUFFIXES)
        )
        if not files:
            raise TaskInputError(
                f"tasks.path {str(p.resolve())!r}: the directory holds no "
                f"{'/'.join(TASK_FILE_SUFFIXES)} files"
            )
        with contextlib.ExitStack() as stack:
            named = [
                (
                    "" if p.is_file() else f.name,
                    stack.enter_context(open_text(f, errors="surrogateescape")),
                )
                for f in files
            ]
            parsed = parse_files(named, limit, source=str(p))
        frame = pd.DataFrame([t.as_dict() for t in parsed], columns=TASK_NAMES)
        return spark.createDataFrame(frame, TASKS_DDL), str(p)
    table = tables.read_input(path)  # a pipeline table, or any catalog table (main.sales.questions)
    if table is not None:
        return _parse_table(table, limit, f"table {path}"), f"table {path}"
    raise TaskInputError(
        f"tasks.path {path!r}: not a file, a directory of .jsonl files ({p.resolve()}), or an existing table "
        "(e.g. --set tasks.path=data/tasks.jsonl)"
    )


def _parse_table(src: DataFrame, limit: int, source: str) -> DataFrame:
    keep = [c for c in src.columns if c in TOP_KEYS]
    keyed = src.select(*keep).withColumn("_order", F.monotonically_increasing_id())

    def parse(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            out = []
            for rec in pdf.to_dict("records"):
                row = {k: _plain(v) for k, v in rec.items() if k != "_order"}
                task, given = parse_row(row, limit)
                out.append({**task.as_dict(), "_given": given, "_order": rec["_order"]})
            yield pd.DataFrame(out, columns=[*TASK_NAMES, "_given", "_order"])

    parsed = keyed.mapInPandas(parse, f"{TASKS_DDL}, _given boolean, _order bigint")
    n = F.row_number().over(Window.partitionBy("task_id", "_given").orderBy("_order"))
    numbered = parsed.withColumn(
        "task_id",
        F.when(~F.col("_given") & (n > 1), F.concat("task_id", F.lit("-"), n.cast("string"))).otherwise(
            F.col("task_id")
        ),
    ).select(*TASK_NAMES)
    dupes = (
        numbered.groupBy("task_id")
        .count()
        .filter("count > 1")
        .select("task_id")
        .orderBy("task_id")
        .limit(MAX_DUPLICATES_SHOWN + 1)
        .collect()
    )
    if dupes:
        shown = ", ".join(repr(r["task_id"]) for r in dupes[:MAX_DUPLICATES_SHOWN])
        more = " and more" if len(dupes) > MAX_DUPLICATES_SHOWN else ""
        raise TaskInputError(
            f"{source}: duplicate task_id {shown}{more}; task ids must be unique within one input "
            "(results are merged on task_id)"
        )
    return numbered


def _plain(value: Any) -> Any:
    """pandas values back to JSON-like Python: NaN → None, structs (Row/dict) → dict."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "asDict"):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
