"""The table module over the local delta-rs backed Delta source."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from lakechain.storage.delta_schema import SchemaMismatchError
from lakechain.storage.tables import TableNotFoundError

SCHEMA = "id long, text string, vec array<float>, ts timestamp, meta map<string,string>"


def _rows(n: int, start: int = 0, tag: str = "v1") -> list[tuple]:
    import datetime as dt

    ts = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    return [
        (i, f"{tag} text {i}", [float(i), float(i) / 2], ts, {"k": str(i)}) for i in range(start, start + n)
    ]


def _files(path: str) -> set[str]:
    return {f for f in os.listdir(path) if f.endswith(".parquet")}


def test_write_append_overwrite_read_and_versions(spark, tables):
    df = spark.createDataFrame(_rows(5), SCHEMA).repartition(2)
    assert tables.version("t") is None
    assert tables.write(df, "t") == 0
    assert tables.write(spark.createDataFrame(_rows(3, 5), SCHEMA), "t", "append") == 1
    assert tables.read("t").count() == 8
    assert tables.write(spark.createDataFrame(_rows(2, 100), SCHEMA), "t", "overwrite") == 2
    assert sorted(r.id for r in tables.read("t").collect()) == [100, 101]
    # Time travel
    assert tables.read("t", version=0).count() == 5
    assert tables.read("t", version=1).count() == 8
    history = tables.history("t")
    assert [h["version"] for h in history] == [2, 1, 0]
    assert tables.version("t") == 2


def test_third_party_reader_sees_what_spark_wrote(spark, tables):
    df = spark.createDataFrame(_rows(50), SCHEMA).repartition(3)
    tables.write(df, "t")
    got = DeltaTable(tables.path("t")).to_pyarrow_table().sort_by("id").to_pylist()
    want = sorted((r.asDict() for r in df.collect()), key=lambda r: r["id"])
    assert len(got) == 50
    for g, w in zip(got, want, strict=True):
        assert g["id"] == w["id"] and g["text"] == w["text"]
        assert g["vec"] == pytest.approx(w["vec"])
        assert g["ts"].timestamp() == w["ts"].timestamp()
        assert dict(g["meta"]) == w["meta"]


def test_file_stats_are_recorded(spark, tables):
    tables.write(spark.createDataFrame(_rows(10), SCHEMA).coalesce(1), "t")
    adds = DeltaTable(tables.path("t")).get_add_actions(flatten=True)
    adds = pa.table(adds).to_pylist()
    assert adds[0]["num_records"] == 10
    assert adds[0]["min.id"] == 0 and adds[0]["max.id"] == 9
    assert adds[0]["null_count.text"] == 0


def test_nested_columns_get_no_made_up_null_count(tmp_path):
    import pyarrow.parquet as pq

    from lakechain.storage.delta_source import _stats

    t = pa.table({"id": ["a", "b"], "vec": pa.array([None, [1.0]], pa.list_(pa.float32()))})
    pq.write_table(t, tmp_path / "f.parquet")
    stats = _stats(pq.ParquetFile(tmp_path / "f.parquet").metadata)
    assert stats["nullCount"].get("vec", 1) == 1  # a null-count stat, if any, must be right
    assert stats["nullCount"]["id"] == 0 and stats["numRecords"] == 2


def test_merge_upserts_and_delete(spark, tables):
    tables.write(spark.createDataFrame(_rows(5), SCHEMA), "t")
    upd = spark.createDataFrame(_rows(2, 3, tag="v2") + _rows(2, 10, tag="v2"), SCHEMA)
    v = tables.merge(upd, "t", ["id"])
    assert v == 1
    rows = {r.id: r.text for r in tables.read("t").collect()}
    assert rows == {0: "v1 text 0", 1: "v1 text 1", 2: "v1 text 2", 3: "v2 text 3", 4: "v2 text 4",
                    10: "v2 text 10", 11: "v2 text 11"}
    # Merged files read back with the declared types (delta-rs may write string_view).
    assert dict(tables.read("t").dtypes)["text"] == "string"
    assert tables.delete("t", "id >= 10") == 2
    assert tables.read("t").count() == 5
    assert [h["operation"] for h in tables.history("t")][:2] == ["DELETE", "MERGE"]


def test_merge_creates_missing_table_and_rejects_duplicate_keys(spark, tables):
    assert tables.merge(spark.createDataFrame(_rows(3), SCHEMA), "t", ["id"]) == 0
    dup = spark.createDataFrame(_rows(1) + _rows(1), SCHEMA)
    with pytest.raises(ValueError, match="more than once"):
        tables.merge(dup, "t", ["id"])
    assert tables.version("t") == 0


def test_schema_mismatch_raises_and_writes_nothing(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    before = _files(tables.path("t"))
    wrong_type = spark.createDataFrame(_rows(2)).toDF("id", "text", "vec", "ts", "meta").withColumn(
        "id", F.col("id").cast("string")
    )
    with pytest.raises(SchemaMismatchError, match=r"column 'id' is string but the table has bigint"):
        tables.write(wrong_type, "t")
    extra = spark.createDataFrame(_rows(2), SCHEMA).withColumn("extra", F.lit(1))
    with pytest.raises(SchemaMismatchError, match="columns not in the table: extra"):
        tables.write(extra, "t")
    assert tables.version("t") == 0 and _files(tables.path("t")) == before
    # Evolution only when asked (locally: a metadata commit adding the column, then the data).
    assert tables.write(extra, "t", schema_mode="merge") > 0
    assert "extra" in tables.read("t").columns
    assert tables.read("t").where("extra IS NULL").count() == 3


def test_direct_format_delta_write_is_enforced_too(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    with pytest.raises(Exception, match="schema mismatch"):
        spark.range(3).selectExpr("CAST(id AS STRING) AS id").write.format("delta").mode("append").save(
            tables.path("t")
        )
    assert tables.version("t") == 0


def test_failing_task_leaves_table_unchanged(spark, tables):
    tables.write(spark.createDataFrame(_rows(4), SCHEMA), "t")
    before = _files(tables.path("t"))
    committed = set(DeltaTable(tables.path("t")).file_uris())

    @F.udf("long")
    def explode_on_7(i):
        if i == 7:
            raise RuntimeError("boom")
        return i

    bad = spark.createDataFrame(_rows(10), SCHEMA).repartition(4).withColumn("id", explode_on_7("id"))
    with pytest.raises(Exception, match="boom"):
        tables.write(bad, "t")
    assert tables.version("t") == 0
    assert set(DeltaTable(tables.path("t")).file_uris()) == committed
    assert tables.read("t").count() == 4
    # abort removed what the write's tasks had written (a task killed mid-write could still
    # leave an unreferenced file behind, which no reader sees and VACUUM removes).
    assert _files(tables.path("t")) == before


def test_empty_table_and_missing_table(spark, tables):
    empty = spark.createDataFrame([], SCHEMA)
    tables.write(empty, "e")
    assert tables.read("e").count() == 0
    assert tables.read("e").schema.simpleString() == spark.createDataFrame([], SCHEMA).schema.simpleString()
    with pytest.raises(TableNotFoundError, match="nope"):
        tables.read("nope")
    with pytest.raises(ValueError, match="letters, digits"):
        tables.path("../escape")


def test_register_views_exposes_tables_to_sql(spark, tables):
    tables.write(spark.createDataFrame(_rows(4), SCHEMA), "alpha")
    tables.write(spark.createDataFrame(_rows(2), SCHEMA), "beta")
    assert tables.register_views() == ["alpha", "beta"]
    got = spark.sql("SELECT COUNT(*) AS n FROM alpha JOIN beta USING (id)").collect()[0]["n"]
    assert got == 2
