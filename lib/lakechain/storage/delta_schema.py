"""Schema conversion and Delta-style schema enforcement for the local Delta source.

delta-rs commits whatever files it is given; it does not check that their schema matches
the table's. These functions do what Delta does: refuse a mismatching write with the
offending columns named, and evolve the schema only when asked (``mergeSchema``).
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.types import StructType


class SchemaMismatchError(ValueError):
    """A write whose columns or types differ from the table's."""


def _nullable(t: pa.DataType) -> pa.DataType:
    """Normalise a type: standard (not large/view) layouts, every nested field nullable."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_list(t):
        return pa.list_(pa.field("element", _nullable(t.value_type), True))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(pa.field("element", _nullable(t.value_type), True))
    if pa.types.is_map(t):
        return pa.map_(_nullable(t.key_type), pa.field("value", _nullable(t.item_type), True))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _nullable(f.type), True) for f in t])
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    return t


def normalize_arrow(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _nullable(f.type), True) for f in schema])


def delta_arrow_schema(schema: StructType) -> pa.Schema:
    """Spark schema → the Arrow schema files are written with (timestamps in UTC)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return normalize_arrow(to_arrow_schema(schema, timezone="UTC"))


def arrow_to_spark(schema: pa.Schema) -> StructType:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(normalize_arrow(schema), prefer_timestamp_ntz=True)


def _show(t: pa.DataType) -> str:
    from pyspark.sql.pandas.types import from_arrow_type

    try:
        return from_arrow_type(t, prefer_timestamp_ntz=True).simpleString()
    except Exception:  # pragma: no cover - exotic Arrow types
        return str(t)


def check_compatible(
    table: pa.Schema, incoming: pa.Schema, merge_schema: bool, where: str
) -> pa.Schema:
    """Return the schema to commit, or raise naming every mismatching column.

    Missing columns in the incoming data are allowed (written as null, as in Delta).
    Extra columns need ``merge_schema``; type changes are never allowed.
    """
    table = normalize_arrow(table)
    incoming = normalize_arrow(incoming)
    problems: list[str] = []
    extra: list[pa.Field] = []
    for f in incoming:
        idx = table.get_field_index(f.name)
        if idx < 0:
            lowered = [n for n in table.names if n.lower() == f.name.lower()]
            if lowered:
                problems.append(f"column {f.name!r} differs only in case from table column {lowered[0]!r}")
            else:
                extra.append(f)
            continue
        have = table.field(idx).type
        if have != f.type:
            problems.append(f"column {f.name!r} is {_show(f.type)} but the table has {_show(have)}")
    if extra and not merge_schema:
        names = ", ".join(f"{f.name} ({_show(f.type)})" for f in extra)
        problems.append(
            f"columns not in the table: {names}; pass schema_mode='merge' "
            "(option mergeSchema=true) to add them"
        )
    if problems:
        raise SchemaMismatchError(
            f"schema mismatch writing to Delta table {where}:\n  " + "\n  ".join(problems)
            + f"\n  table schema: {', '.join(f'{f.name} {_show(f.type)}' for f in table)}"
        )
    return pa.schema(list(table) + extra) if extra else table
