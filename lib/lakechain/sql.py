"""``lakechain sql``: every pipeline table by name, results printed as a readable table."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakechain.storage.tables import Tables

from lakechain.errors import SqlError
from lakechain.storage.session import query_errors

_MAX_CELL = 80


def run_sql(spark: SparkSession, tables: Tables, query: str, limit: int = 100, fmt: str = "table") -> str:
    """The query's first ``limit`` rows as text, with the pipeline's schema current, so
    ``results`` means ``lakechain.results`` (``main.lakechain.results`` in Unity Catalog). A
    query the user got wrong (syntax, unknown table or column, a bad cast) raises
    :class:`SqlError` with Spark's one-line reason."""
    tables.use(query)
    try:
        df = spark.sql(query)
        rows = [r.asDict(recursive=True) for r in df.limit(limit + 1).collect()]
    except query_errors() as exc:
        raise query_error(exc, tables.names(), tables) from exc
    more = len(rows) > limit
    rows = rows[:limit]
    if fmt == "json":
        return "\n".join(json.dumps(r, default=_json_default) for r in rows)
    text = format_table(df.columns, rows)
    footer = f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', more not shown' if more else ''})"
    return f"{text}\n{footer}"


def query_error(exc: Exception, names: Sequence[str], tables: Tables) -> SqlError:
    """Spark's first line (the reason; the rest is a query plan), plus what to do next:
    on a root without tables, run the pipeline; for an unknown name, the tables there are."""
    reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    condition = getattr(exc, "getCondition", getattr(exc, "getErrorClass", lambda: None))()
    if condition == "TABLE_OR_VIEW_NOT_FOUND":
        st = tables.storage
        where = f"schema {tables.schema}" if st.uses_catalog else f"storage.root {st.root}"
        if not names:
            return SqlError(f"{reason} — {where} has no tables yet: run `lakechain pipeline` first")
        return SqlError(f"{reason} — tables in {where}: {', '.join(names)}")
    return SqlError(reason)


def _json_default(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def cell(v: Any) -> str:
    """One value as short, single-line text (binary shown by size, long text cut)."""
    if v is None:
        s = "NULL"
    elif isinstance(v, (bytes, bytearray)):
        kind = "png " if bytes(v[:8]) == b"\x89PNG\r\n\x1a\n" else ""
        s = f"<{kind}{len(v)} bytes>"
    elif isinstance(v, float):
        s = f"{v:.4g}"
    elif isinstance(v, (list, dict)):
        s = json.dumps(v, default=_json_default)
    else:
        s = str(v)
    s = " ".join(s.split())
    return s if len(s) <= _MAX_CELL else s[: _MAX_CELL - 1] + "…"


def format_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |", line]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in cells]
    out.append(line)
    return "\n".join(out)
