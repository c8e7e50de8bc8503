"""The index stage through Spark, end to end on small chunks tables."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest

from lakechain.index import search, store
from lakechain.index import stage as index_stage
from lakechain.index.errors import DuplicateIdError, IndexBuildError, IndexStaleError

CHUNKS_DDL = (
    "chunk_id string, doc_id string, chunk_index int, text string, content_hash string, "
    "embedding array<float>, model string, dim int, embedded_at timestamp, vector_id bigint"
)
DIM = 16
BASE = 7_000_000_000  # vector_id = BASE + row number


def unit_rows(seed: int, n: int, start: int = 0, model: str = "mini", centres: int = 0):
    """Chunk rows with random unit vectors (clustered around ``centres`` if given), and the vectors."""
    rng = np.random.default_rng(seed)
    if centres:
        c = rng.standard_normal((centres, DIM))
        x = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, DIM))
    else:
        x = rng.standard_normal((n, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows = [
        (f"c{i}", f"d{i // 4}", i % 4, f"text {i}", f"h{i}", x[i - start].tolist(), model, DIM, now, BASE + i)
        for i in range(start, start + n)
    ]
    return rows, x


def test_run_index_end_to_end_skip_force_and_staleness(spark, settings, tables):
    settings.index.partitions = 3
    rows, x = unit_rows(1, 400)
    bad = [
        ("bad-null", "dX", 0, "no vector", "h", None, "mini", DIM, None, 1),
        ("bad-len", "dX", 1, "short", "h", [0.5, 0.5], "mini", DIM, None, 2),
    ]
    v0 = tables.write(spark.createDataFrame(rows + bad, CHUNKS_DDL), "chunks")

    report = index_stage.run_index(spark, settings, tables)
    assert not report.skipped
    assert (report.kind, report.count, report.dim, report.model) == ("flat", 400, DIM, "mini")
    assert (report.shards, report.table_version, report.rejected) == (3, v0, 2)
    assert "400 vectors × 16" in str(report) and "2 chunk row(s) rejected" in str(report)
    assert report.as_dict()["path"] == report.path and report.path.startswith(tables.files_root)
    staging = store.index_root(tables.files_root) + "/_staging"
    assert os.listdir(staging) == []  # shard files (index.shard_transport=files) are cleaned up
    errors = tables.read("ingest_errors").where("stage = 'index'").collect()
    assert {(e["source"], e["reason"]) for e in errors} == {
        ("chunks:bad-null", "null embedding"),
        ("chunks:bad-len", "embedding has 2 values, not 16"),
    }

    loaded = search.load(
        tables.files_root, expected_model="mini", expected_dim=DIM, expected_table_version=v0
    )
    hits = loaded.search_chunks(x[[0, 123, 399]], 3)
    assert [h[0].chunk_id for h in hits] == ["c0", "c123", "c399"]
    assert [h[0].doc_id for h in hits] == ["d0", "d30", "d99"]
    assert hits[1][0].text == "text 123" and hits[1][0].vector_id == 7_000_000_123
    exact = np.argsort(-(x[:20] @ x.T), axis=1)[:, :5]
    _, got = loaded.search(x[:20], 5)
    np.testing.assert_array_equal(got - BASE, exact)

    again = index_stage.run_index(spark, settings, tables)
    assert again.skipped and again.path == report.path and "skipped" in str(again)
    forced = index_stage.run_index(spark, settings, tables, force=True)
    assert not forced.skipped and forced.path != report.path

    more, _ = unit_rows(2, 50, start=400)
    v1 = tables.write(spark.createDataFrame(more, CHUNKS_DDL), "chunks")
    with pytest.raises(IndexStaleError, match="lakechain index --force"):
        search.load(tables.files_root, expected_table_version=v1)
    rebuilt = index_stage.run_index(spark, settings, tables)
    assert not rebuilt.skipped and (rebuilt.count, rebuilt.table_version) == (450, v1)
    assert search.load(tables.files_root, expected_table_version=v1).count == 450


def test_run_index_ivf_and_failures_keep_the_previous_build(spark, settings, tables, monkeypatch):
    settings.index.kind = "ivf"
    settings.index.train_sample = 1000
    settings.index.partitions = 2
    settings.index.shard_transport = "spark"  # shards come back in the job's rows
    rows, x = unit_rows(3, 3000, centres=60)
    v0 = tables.write(spark.createDataFrame(rows, CHUNKS_DDL), "chunks")
    report = index_stage.run_index(spark, settings, tables)
    assert report.description == "IVF25,Flat" and report.count == 3000  # nlist capped at 1000/39
    loaded = search.load(tables.files_root, expected_table_version=v0)
    _, got = loaded.search(x[:100], 10)
    exact = np.argsort(-(x[:100] @ x.T), axis=1)[:, :10] + BASE
    assert np.mean([len(set(a) & set(b)) for a, b in zip(got, exact, strict=True)]) / 10 >= 0.95
    root = store.index_root(tables.files_root)

    # a crash after the shards were built and merged, while saving: previous build stays current
    def boom(*args, **kwargs):
        raise OSError("injected failure while switching CURRENT")

    monkeypatch.setattr(store, "write_pointer", boom)
    with pytest.raises(OSError, match="injected"):
        index_stage.run_index(spark, settings, tables, force=True)
    monkeypatch.undo()
    assert store.read_pointer(root) == report.path.rsplit("/", 1)[-1]
    assert len(store.list_builds(root)) == 1

    # the same chunk appended twice (same vector_id): refused before merging, nothing saved
    dupes = [(f"dup{i}", *r[1:]) for i, r in enumerate(rows[:3])]
    tables.write(spark.createDataFrame(dupes, CHUNKS_DDL), "chunks")
    with pytest.raises(DuplicateIdError, match=r"duplicate vector_id.*\[700000000[012]"):
        index_stage.run_index(spark, settings, tables)
    # a second model in the table: refused with the fix
    other, _ = unit_rows(4, 5, start=9000, model="other-model")
    tables.write(spark.createDataFrame(other, CHUNKS_DDL), "chunks")
    with pytest.raises(IndexBuildError, match="mixes embedding models"):
        index_stage.run_index(spark, settings, tables)
    assert store.read_pointer(root) == report.path.rsplit("/", 1)[-1]
    assert search.load(root).count == 3000


def test_run_index_refuses_missing_or_unusable_chunks(spark, settings, tables):
    with pytest.raises(IndexBuildError, match="run `lakechain embed` first"):
        index_stage.run_index(spark, settings, tables)
    nan = [float("nan")] * DIM
    rows = [(f"c{i}", "d", i, "t", "h", nan, "mini", DIM, None, i) for i in range(3)]
    tables.write(spark.createDataFrame(rows, CHUNKS_DDL), "chunks")
    with pytest.raises(IndexBuildError, match="every chunk row was rejected"):
        index_stage.run_index(spark, settings, tables)
    errors = tables.read("ingest_errors").collect()
    assert sorted((e["source"], e["reason"], e["stage"]) for e in errors) == [
        (f"chunks:c{i}", "non-finite value in embedding", "index") for i in range(3)
    ]
    assert store.read_pointer(store.index_root(tables.files_root)) is None
