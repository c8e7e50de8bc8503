"""A batch left in ``embed_staging`` by a killed run is cleared by the next run, even one
with nothing to embed (found by ``tests/chaos``: the chain of kills ended with stale rows)."""

from __future__ import annotations

from pyspark.sql import functions as F

from lakechain.embed.stage import run_embed
from lakechain.storage.schemas import EMBED_STAGING


def test_a_run_with_nothing_to_embed_clears_a_killed_runs_staged_batch(spark, settings, tables, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Delta Lake is an open table format.")
    settings.corpus.path = str(corpus)
    run_embed(spark, settings, tables, progress=False)
    # what a run killed between staging a batch and clearing it leaves behind
    left = (
        tables.read("chunks")
        .withColumn("source", F.lit("a.txt"))
        .withColumn("error", F.lit(None).cast("string"))
    )
    tables.stage(left, EMBED_STAGING)
    assert tables.read(EMBED_STAGING).count() == 1

    report = run_embed(spark, settings, tables, progress=False)
    assert report.chunks_embedded == 0 and tables.read(EMBED_STAGING).count() == 0
