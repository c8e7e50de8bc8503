"""``tables.plain_strings``: the DDL it casts to, and that classic sessions are left alone."""

from __future__ import annotations

from pyspark.sql.types import ArrayType, DoubleType, LongType, MapType, StringType, StructField, StructType

from lakechain.storage.tables import _ddl_type, plain_strings


def test_nested_types_become_ddl_with_quoted_field_names():
    t = StructType(
        [
            StructField("chunk id", StringType()),
            StructField("tags", ArrayType(MapType(StringType(), LongType()))),
            StructField("odd`name", DoubleType()),
        ]
    )
    assert _ddl_type(t) == "struct<`chunk id`:string,`tags`:array<map<string,bigint>>,`odd``name`:double>"


def test_a_classic_dataframe_is_returned_as_it_is_without_analysis():
    class ClassicFrame:  # no schema attribute: reading one would raise
        pass

    df = ClassicFrame()
    assert plain_strings(df) is df  # type: ignore[arg-type]
