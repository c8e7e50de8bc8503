"""Issue #12 item 2: ``run-tasks`` says when the index is older than ``chunks`` (new or changed
documents are not searchable until ``lakechain index`` runs). ``ask`` is tested without
Spark in tests/unit/test_bad_input.py."""

from __future__ import annotations

import json

from lakechain.embed.stage import run_embed
from lakechain.index.stage import run_index
from lakechain.tasks.stage import run_tasks


def test_run_tasks_warns_when_chunks_moved_on_since_the_index(spark, settings, tables, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "delta.txt").write_text("Delta Lake keeps every version of a table in its transaction log.")
    settings.corpus.path = str(corpus)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"task_id": "q", "question": "What does Delta Lake keep?"}) + "\n")
    settings.tasks.path = str(tasks)
    run_embed(spark, settings, tables, progress=False)
    run_index(spark, settings, tables)
    built = tables.version("chunks")
    (corpus / "faiss.txt").write_text("FAISS searches dense vectors by inner product.")
    run_embed(spark, settings, tables, progress=False)  # chunks moves on; the index does not
    now = tables.version("chunks")
    assert now > built
    report = run_tasks(spark, settings, tables, progress=False)
    assert report.ok == 1 and report.notes == [
        f"the index was built from chunks v{built}, which is now at v{now}: answers miss what changed "
        "since; run `lakechain index`"
    ]
    run_index(spark, settings, tables)
    again = run_tasks(spark, settings, tables, force=True, progress=False)
    assert again.notes == []
