"""The corpus reader: duplicate document ids are resolved in one place, on Spark."""

from __future__ import annotations

import json
from pathlib import Path

from lakechain.embed.corpus import read_corpus


def test_duplicates_across_files_keep_first_in_path_order(spark, settings, tables, tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(
        json.dumps({"id": "b.txt", "text": "from jsonl"})
        + "\n"
        + json.dumps({"id": "b.txt", "text": "again"})
        + "\n"
    )
    (corpus / "b.txt").write_text("from file")
    settings.corpus.path = str(corpus)
    rows = read_corpus(spark, settings, tables).orderBy("order_key").collect()
    docs = [(r["doc_id"], r["text"]) for r in rows if r["kind"] == "doc"]
    errors = sorted((r["source"], r["reason"]) for r in rows if r["kind"] == "error")
    assert docs == [("b.txt", "from jsonl")]
    assert errors == [
        ("a.jsonl:2", "duplicate doc_id (first seen in a.jsonl:1)"),
        ("b.txt", "duplicate doc_id (first seen in a.jsonl:1)"),
    ] or all("duplicate doc_id (first seen in a.jsonl" in reason for _, reason in errors)
    assert len(errors) == 2
