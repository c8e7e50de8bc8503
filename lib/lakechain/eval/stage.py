"""Spark layer of ``lakechain eval``: questions in (jsonl or table), ``eval_results`` out.

The work itself is ``run.evaluate`` (no Spark); this module only reads a question table
when one is named, and appends the rows in one Delta commit through ``Tables.write`` so
runs compare with SQL, e.g.::

    SELECT mode, avg(CAST(hit_at_1 AS DOUBLE)) FROM eval_results WHERE run_id = '...' GROUP BY mode
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from lakechain.config import Settings
from lakechain.eval.metrics import (
    EvalQuestion,
    EvalSetError,
    Summary,
    check_unique,
    format_summaries,
    parse_question,
    read_questions,
    summarize,
)
from lakechain.eval.run import evaluate
from lakechain.storage.schemas import EVAL_COLUMNS, EVAL_DDL, EVAL_RESULTS, names

COLUMNS = names(EVAL_COLUMNS)


@dataclass
class EvalReport:
    run_id: str
    summaries: dict[str, Summary]
    rows: int
    errors: int
    table_version: int | None

    def __str__(self) -> str:
        where = f"{EVAL_RESULTS} v{self.table_version}" if self.table_version is not None else "not written"
        text = f"eval {self.run_id}: {self.rows} row(s) → {where}\n{format_summaries(self.summaries)}"
        if self.errors:
            text += f"\n{self.errors} question(s) failed to answer (see the error column)"
        return text


def load_questions(tables: Any, source: str) -> list[EvalQuestion]:
    """A JSON-lines file, or a table (pipeline short name or catalog name) with the same columns."""
    if os.path.isfile(source):
        return read_questions(source)
    df = tables.read_input(source)
    if df is None:
        raise EvalSetError(f"questions {source!r}: no such file or table")
    rows = [r.asDict(recursive=True) for r in df.collect()]
    return check_unique([parse_question(r, f"{source} row {i}") for i, r in enumerate(rows, 1)], source)


def run_eval(
    spark: SparkSession,
    settings: Settings,
    tables: Any,
    source: str,
    modes: Sequence[str],
    *,
    write: bool = True,
    **parts: Any,
) -> EvalReport:
    """Evaluate ``source`` under each mode and append the rows to ``eval_results``.

    ``parts`` (``searcher``, ``embedder``, ``chat_model``) go to ``build_chains``: by
    default the current index and the configured models.
    """
    questions = load_questions(tables, source)
    rows = evaluate(settings, questions, modes, **parts)
    summaries = {m: summarize([r for r in rows if r["mode"] == m]) for m in modes}
    version = None
    if write:
        df = spark.createDataFrame([tuple(r[c] for c in COLUMNS) for r in rows], EVAL_DDL)  # type: ignore[literal-required]
        version = tables.write(df, EVAL_RESULTS, mode="append")
    return EvalReport(
        run_id=rows[0]["run_id"] if rows else "",
        summaries=summaries,
        rows=len(rows),
        errors=sum(r["error"] is not None for r in rows),
        table_version=version,
    )
