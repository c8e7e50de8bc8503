"""Bad lines inside an input, end to end on Spark: each becomes one error row with its reason,
and every good line beside it is still embedded or answered (nothing lost, nothing crashes).

Lone surrogates (``"\\ud800"`` in a JSON line) and bytes that are not UTF-8 used to crash the
executor's hash or Arrow batch (embed) or the driver's parser (run-tasks), failing the run.
"""

from __future__ import annotations

from pathlib import Path

from lakechain.embed.stage import run_embed
from lakechain.tasks.stage import run_tasks


def test_a_corpus_line_with_a_lone_surrogate_is_an_error_row_and_its_file_still_embeds(
    spark, settings, tables, tmp_path: Path, delta_rows
):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Delta Lake keeps versions of every table.")
    (corpus / "docs.jsonl").write_text(
        '{"id": "d1", "text": "Spark runs jobs on a cluster."}\n'
        '{"id": "d2", "text": "broken \\ud800 text"}\n'
        '{"id": "d3", "text": "FAISS searches vectors."}\n'
    )
    settings.corpus.path = str(corpus)
    report = run_embed(spark, settings, tables, progress=False)
    assert sorted(r["doc_id"] for r in delta_rows(tables, "documents")) == ["a.txt", "d1", "d3"]
    errors = [
        (r["source"], r["reason"])
        for r in delta_rows(tables, "ingest_errors")
        if r["run_id"] == report.run_id
    ]
    assert errors == [
        ("docs.jsonl:2", "line 2: a lone surrogate escape \\ud800 is not valid Unicode; fix the text")
    ]


def test_task_lines_that_are_not_utf8_or_hold_a_lone_surrogate_are_error_rows(
    spark, settings, tables, tmp_path: Path, delta_rows
):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_bytes(
        b'{"task_id": "p1", "image_prompt": "A lake at dawn"}\n'
        b'{"task_id": "latin1", "image_prompt": "caf\xe9"}\n'
        b'{"task_id": "p2", "image_prompt": "A spark"}\n'
        b'{"task_id": "surrogate", "image_prompt": "a \\udc80 b"}\n'
        b'{"task_id": "p3", "image_prompt": "A table"}\n'
    )
    settings.tasks.path = str(tasks)
    settings.images.size = "64x64"
    report = run_tasks(spark, settings, tables, progress=False)
    assert (report.ok, report.error) == (3, 2)
    rows = {r["task_id"]: r for r in delta_rows(tables, "results")}
    assert len(rows) == 5 and {t for t, r in rows.items() if r["status"] == "ok"} == {"p1", "p2", "p3"}
    errors = sorted(r["error"] for r in rows.values() if r["status"] == "error")
    assert errors == [
        "invalid task input: line 2: not valid UTF-8 (byte 0xe9 at column 43); save the file as UTF-8",
        "invalid task input: line 4: a lone surrogate escape \\udc80 is not valid Unicode; fix the text",
    ]
