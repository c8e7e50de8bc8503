"""The table layer on native Delta Lake: tables by name, verbs, schema checks, history."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from pyspark.sql import functions as F

from lakechain.errors import SchemaMismatchError, TableNotFoundError

SCHEMA = "id long, text string, vec array<float>, ts timestamp, meta map<string,string>"


def _rows(n: int, start: int = 0, tag: str = "v1") -> list[tuple]:
    ts = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    return [
        (i, f"{tag} text {i}", [float(i), float(i) / 2], ts, {"k": str(i)}) for i in range(start, start + n)
    ]


def test_write_append_overwrite_and_versions(spark, tables):
    assert tables.version("t") is None
    assert tables.write(spark.createDataFrame(_rows(5), SCHEMA).repartition(2), "t") == 0
    assert tables.write(spark.createDataFrame(_rows(3, 5), SCHEMA), "t", "append") == 1
    assert tables.write(spark.createDataFrame(_rows(2, 100), SCHEMA), "t", "overwrite") == 2
    assert sorted(r.id for r in tables.read("t").collect()) == [100, 101]
    assert [h["version"] for h in tables.history("t")] == [2, 1, 0]


def test_time_travel_reads_old_versions(spark, tables):
    tables.write(spark.createDataFrame(_rows(5), SCHEMA), "t")
    tables.write(spark.createDataFrame(_rows(3, 5), SCHEMA), "t")
    assert (tables.read("t", version=0).count(), tables.read("t", version=1).count()) == (5, 8)


def test_tables_are_addressable_by_name_in_sql(spark, tables):
    tables.write(spark.createDataFrame(_rows(4), SCHEMA), "alpha")
    name = tables.full_name("alpha")
    assert name == f"{tables.settings.storage.schema_}.alpha"
    assert spark.sql(f"SELECT count(*) AS n FROM {name}").first()["n"] == 4
    history = spark.sql(f"DESCRIBE HISTORY {name}").select("operation").collect()
    assert history[0]["operation"] == "CREATE TABLE AS SELECT"


def test_local_tables_live_under_the_storage_root(spark, tables, delta_rows):
    tables.write(spark.createDataFrame(_rows(50), SCHEMA).repartition(3), "t")
    location = tables.location("t")
    assert location == os.path.join(os.path.abspath(tables.settings.storage.root), "t")
    got = sorted(delta_rows(tables, "t"), key=lambda r: r["id"])
    assert [r["id"] for r in got] == list(range(50))
    assert got[7]["text"] == "v1 text 7" and dict(got[7]["meta"]) == {"k": "7"}


def test_tables_written_from_python_udfs_open_in_delta_rs(spark, tables, delta_rows):
    """Through Spark Connect, a UDF's declared strings (nested ones too) arrive with an explicit
    collation that Delta would log as ``string collate UTF8_BINARY``, unreadable by delta-rs;
    a new table and a column added by schema evolution must both be plain ``string``."""

    def _echo(batches):  # nested: pickled by value (workers cannot import the test module)
        yield from batches

    ddl = "id long, text string, sources array<struct<chunk_id:string,score:double>>"
    source = "array(named_struct('chunk_id', concat('c', id), 'score', 0.5D)) AS sources"
    rows = spark.range(3).selectExpr("id", "concat('t', id) AS text", source)
    tables.write(rows.mapInPandas(_echo, ddl), "udf_out")
    evolved = rows.withColumn("note", F.lit("n")).mapInPandas(_echo, ddl + ", note string")
    tables.merge(evolved, "udf_out", ["id"], schema_mode="merge")
    got = sorted(delta_rows(tables, "udf_out"), key=lambda r: r["id"])
    assert [(r["text"], r["sources"][0]["chunk_id"], r["note"]) for r in got] == [
        ("t0", "c0", "n"), ("t1", "c1", "n"), ("t2", "c2", "n")
    ]  # fmt: skip


def test_unregistered_table_under_the_root_is_adopted(spark, tables, settings):
    from lakechain.storage.tables import Tables

    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    spark.sql(f"DROP TABLE {tables.full_name('t')}")  # external: the files stay
    settings = settings.model_copy(deep=True)
    fresh = Tables(spark, settings)  # e.g. a new metastore over an existing root
    assert fresh.read("t").count() == 3


def test_merge_upserts(spark, tables):
    tables.write(spark.createDataFrame(_rows(5), SCHEMA), "t")
    upd = spark.createDataFrame(_rows(2, 3, tag="v2") + _rows(2, 10, tag="v2"), SCHEMA)
    assert tables.merge(upd, "t", ["id"]) == 1
    rows = {r.id: r.text for r in tables.read("t").collect()}
    assert rows[2] == "v1 text 2" and rows[3] == "v2 text 3" and rows[11] == "v2 text 11" and len(rows) == 7


def test_insert_new_never_duplicates(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    again = spark.createDataFrame(_rows(3, tag="v2") + _rows(1, 3, tag="v2"), SCHEMA)
    tables.insert_new(again, "t", ["id"])
    rows = {r.id: r.text for r in tables.read("t").collect()}
    assert rows == {0: "v1 text 0", 1: "v1 text 1", 2: "v1 text 2", 3: "v2 text 3"}


def test_merge_refuses_duplicate_source_keys(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    with pytest.raises(Exception, match="(?i)multiple source rows|DELTA_MULTIPLE_SOURCE_ROW"):
        tables.merge(spark.createDataFrame(_rows(1) + _rows(1), SCHEMA), "t", ["id"])
    assert tables.version("t") == 0


def test_delete_where_takes_a_key_frame_or_a_list(spark, tables):
    tables.write(spark.createDataFrame(_rows(6), SCHEMA), "t")
    keys = spark.createDataFrame([(0,), (1,)], "id long")
    tables.delete_where("t", "id", keys)
    tables.delete_where("t", "text", ["v1 text 5", "it's not there"])
    assert sorted(r.id for r in tables.read("t").collect()) == [2, 3, 4]
    assert tables.delete_where("t", "text", []) is None


def test_merge_with_deletes_upserts_and_deletes_in_one_commit(spark, tables):
    tables.write(spark.createDataFrame(_rows(4), SCHEMA), "t")
    upserts = spark.createDataFrame(_rows(1, 1, "new") + _rows(1, 7, "new"), SCHEMA)
    gone = spark.createDataFrame([(2,), (2,), (9,)], "id long")  # repeated and absent keys are fine
    version = tables.merge(upserts, "t", ["id"], delete=gone)
    assert version == 1 and tables.history("t")[0]["operation"] == "MERGE"
    rows = {r.id: r.text for r in tables.read("t").collect()}
    assert rows == {0: "v1 text 0", 1: "new text 1", 3: "v1 text 3", 7: "new text 7"}
    assert tables.read("t").columns == ["id", "text", "vec", "ts", "meta"]  # no delete marker


def test_truncate_keeps_history(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    tables.truncate("t")
    assert tables.read("t").count() == 0 and tables.read("t", version=0).count() == 3
    assert tables.history("t")[0]["operation"] == "DELETE"


def test_schema_mismatch_is_refused_before_any_job(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    wrong = spark.createDataFrame(_rows(2), SCHEMA).withColumn("id", F.col("id").cast("string"))
    with pytest.raises(SchemaMismatchError, match=r"column 'id' is string, table has bigint"):
        tables.write(wrong, "t")
    extra = spark.createDataFrame(_rows(2), SCHEMA).withColumn("extra", F.lit(1))
    with pytest.raises(SchemaMismatchError, match="column 'extra' is not in the table"):
        tables.write(extra, "t")
    assert tables.version("t") == 0


def test_schema_evolves_only_when_asked(spark, tables):
    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    extra = spark.createDataFrame(_rows(2, 10), SCHEMA).withColumn("extra", F.lit(1))
    tables.write(extra, "t", schema_mode="merge")
    assert tables.read("t").where("extra IS NULL").count() == 3


def test_failing_job_commits_nothing(spark, tables):
    tables.write(spark.createDataFrame(_rows(4), SCHEMA), "t")

    @F.udf("long")
    def explode_on_7(i):
        if i == 7:
            raise RuntimeError("boom")
        return i

    bad = spark.createDataFrame(_rows(10), SCHEMA).repartition(4).withColumn("id", explode_on_7("id"))
    with pytest.raises(Exception, match="boom"):
        tables.write(bad, "t")
    assert tables.version("t") == 0 and tables.read("t").count() == 4


def test_a_failed_first_write_leaves_a_table_the_next_session_can_create(spark, tables, settings):
    from lakechain.storage.tables import Tables

    @F.udf("long")
    def boom(i):
        raise RuntimeError("boom")

    bad = spark.createDataFrame(_rows(3), SCHEMA).withColumn("id", boom("id"))
    with pytest.raises(Exception, match="boom"):
        tables.write(bad, "first")  # leaves first/_delta_log without a commit
    spark.sql(f"DROP TABLE IF EXISTS {tables.full_name('first')}")
    fresh = Tables(spark, settings.model_copy(deep=True))  # a new metastore over the root
    fresh.write(spark.createDataFrame(_rows(2), SCHEMA), "first")
    assert fresh.read("first").count() == 2


def test_missing_table_and_bad_names(spark, tables):
    with pytest.raises(TableNotFoundError, match="nope"):
        tables.read("nope")
    with pytest.raises(ValueError, match="letters, digits"):
        tables.full_name("../escape")


def test_paths_with_spaces_unicode_and_percent_work(spark, base_settings, tmp_path, delta_rows):
    from lakechain.storage.tables import Tables

    s = base_settings.model_copy(deep=True)
    s.storage.root = str(tmp_path / "my lake ü 100%")
    s.storage.schema_ = "t_odd_path"
    t = Tables(spark, s)
    t.write(spark.createDataFrame(_rows(3), SCHEMA), "t")
    t.merge(spark.createDataFrame(_rows(1, 3), SCHEMA), "t", ["id"])
    assert t.read("t").count() == 4 and len(delta_rows(t, "t")) == 4


def test_names_lists_the_schema_tables(spark, tables):
    tables.write(spark.createDataFrame(_rows(1), SCHEMA), "alpha")
    tables.write(spark.createDataFrame(_rows(1), SCHEMA), "beta")
    assert tables.names() == ["alpha", "beta"]


def test_persisted_caches_for_the_block_and_drops_it_after(spark):
    from lakechain.storage.session import persisted

    base = spark.range(10)
    with persisted(base) as outer, persisted(outer.filter("id > 4")) as inner:
        assert outer.storageLevel.useMemory and inner.storageLevel.useDisk
        assert inner.count() == 5
    assert not outer.storageLevel.useMemory and not inner.storageLevel.useMemory


def test_reader_reads_the_root_by_path_and_names_only_what_a_query_mentions(spark, tables, settings):
    """A reader (``by_path``) opens no catalog of the root: each table at its latest commit by
    location, and in SQL by name once the query mentions it (what ``lakechain sql`` runs while
    a writer holds the root's metastore)."""
    import uuid

    from lakechain.sql import run_sql
    from lakechain.storage.tables import Tables

    tables.write(spark.createDataFrame(_rows(3), SCHEMA), "alpha")
    tables.write(spark.createDataFrame(_rows(2), SCHEMA), "beta")
    tables.write(spark.createDataFrame(_rows(2, 3), SCHEMA), "alpha", "append")
    own = settings.model_copy(deep=True)
    own.storage.schema_ = f"r_{uuid.uuid4().hex[:12]}"  # the reader's own catalog entries
    reader = Tables(spark, own, by_path=True)
    assert reader.names() == ["alpha", "beta"]
    assert reader.read("alpha").count() == 5 and reader.read("alpha", version=0).count() == 3
    assert [h["version"] for h in reader.history("alpha")] == [1, 0]
    out = run_sql(spark, reader, "SELECT count(*) AS n FROM alpha")
    assert "| 5 |" in out
    assert [r["tableName"] for r in spark.sql(f"SHOW TABLES IN {own.storage.schema_}").collect()] == ["alpha"]
    with pytest.raises(RuntimeError, match="writes nothing"):
        reader.write(spark.createDataFrame(_rows(1), SCHEMA), "alpha", "append")
