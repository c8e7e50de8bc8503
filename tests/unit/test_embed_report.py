"""The embed stage's report: what a scheduled job's log shows."""

from __future__ import annotations

from lakechain.embed.stage import EmbedReport


def test_report_as_dict_and_str():
    r = EmbedReport(run_id="embed-x", model="m", documents_seen=3, chunks_embedded=3, chunks_version=0)
    d = r.as_dict()
    assert d["documents_seen"] == 3 and d["chunks_version"] == 0 and d["run_id"] == "embed-x"
    text = str(r)
    assert "3 seen" in text and "3 embedded" in text and "chunks v0" in text


def test_report_with_failures_names_the_table_to_look_in():
    r = EmbedReport(run_id="embed-y", model="m", chunks_embedded=1, chunk_errors=3)
    assert "SELECT * FROM ingest_errors WHERE run_id = 'embed-y'" in str(r)
    assert r.error_fraction == 0.75
