"""The HTML run report of a real run: ``lakechain pipeline`` on the embedded default writes it,
and headless Chromium shows the run's counts, sorts, highlights sources and opens images."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pyspark.sql import functions as F

from lakechain.cli import main
from lakechain.report.stage import error_reason
from lakechain.tasks.report import error_kind

REPO = Path(__file__).resolve().parents[2]
TASKS = [
    {"task_id": "dbx", "qa": {"question": "What is Azure Databricks?"}},
    {"task_id": "delta", "qa": {"question": "How does Delta Lake provide ACID transactions?"}},
    {"task_id": "city", "image_generation": {"prompt": "A futuristic city with flying cars"}},
    {"task_id": "emb", "question": "What is an embedding?", "illustrate": True},
    {"task_id": "empty", "qa": {"question": "  "}},
    {"task_id": "blank", "qa": {"question": ""}},
]


class Lake(NamedTuple):
    tables: Any
    args: list[str]
    report: Path


@pytest.fixture(scope="module")
def lake(spark, base_settings, tmp_path_factory) -> Lake:
    """``lakechain pipeline`` run once in this process (the suite's session) on four corpus
    files and TASKS: its tables, CLI arguments and the report path it printed."""
    from lakechain.storage.tables import Tables

    tmp = tmp_path_factory.mktemp("report")
    settings = base_settings.model_copy(deep=True)
    settings.storage.root, settings.storage.schema_ = str(tmp / "lake"), f"t_{uuid.uuid4().hex[:12]}"
    corpus = tmp / "corpus"
    corpus.mkdir()
    for name in ("azure_databricks.txt", "embeddings.txt", "delta/acid_transactions.md", "faiss"):
        src = REPO / "data" / "corpus" / name
        if src.is_dir():
            shutil.copytree(src, corpus / src.name)
        else:
            shutil.copy(src, corpus / src.name)
    tasks = tmp / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS), encoding="utf-8")
    args = [
        *("--set", f"storage.root={settings.storage.root}"),
        *("--set", f"storage.schema={settings.storage.schema_}"),
        *("--set", f"corpus.path={corpus}"),
        *("--set", f"tasks.path={tasks}"),
        *("--set", "tasks.partitions=1"),
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["pipeline", *args]) == 0
    printed = re.search(r"^report: (.+\.html)$", out.getvalue(), re.M)
    assert printed is not None, out.getvalue()
    return Lake(Tables(spark, settings), args, Path(printed.group(1)))


def test_pipeline_records_the_run_and_writes_its_report_under_the_root(lake):
    tables, path = lake.tables, lake.report
    row = tables.read("runs").first()
    assert path == Path(tables.files_root) / "reports" / f"{row['run_id']}.html" and path.is_file()
    assert (row["command"], row["tasks_total"], row["ok"], row["error"]) == ("pipeline", 6, 4, 2)
    assert set(row["stage_seconds"]) == {"embed", "index", "run-tasks"}
    assert json.loads(row["report"])["timings"]["execute"] > 0


def test_the_report_in_chromium(lake, chromium, tmp_path):
    tables, path = lake.tables, lake.report
    ok = tables.read("results").filter("status = 'ok'").count()
    with chromium.page() as page:
        page.open(path.as_uri())
        assert page.errors() == []
        assert all(u.startswith(("file:", "data:")) for u in page.requests())
        figures = [page.text(f"[data-figure={k}]") for k in ("tasks_total", "ok", "error", "skipped")]
        assert figures == ["6", str(ok), str(6 - ok), "0"]
        assert page.text("#shown") == "Showing 1–6 of 6"
        ids = "#tasks tbody tr.row td:first-child"
        assert page.texts(ids) == sorted(t["task_id"] for t in TASKS)
        page.click("th[data-col=task_id]")  # sorted by task id already: the click reverses it
        assert page.texts(ids) == sorted((t["task_id"] for t in TASKS), reverse=True)

        # the answer's sources, the question's words highlighted in the cited chunk text
        page.evaluate(
            "[...document.querySelectorAll('tr.row')].find(r => r.cells[0].textContent == 'dbx').click()"
        )
        assert "Apache Spark-based analytics platform" in page.text("tr.more .answer")
        assert "azure_databricks.txt" in page.text("tr.more .sources")
        assert "databricks" in [m.lower() for m in page.texts("tr.more mark")]

        # failures grouped by reason; the gallery with prompts, refined prompts and thumbnails
        assert "qa.question is empty" in page.text("#failures")
        gallery = page.text("#gallery")
        assert "A futuristic city with flying cars" in gallery and "refined:" in gallery
        thumbs = page.evaluate("[...document.querySelectorAll('#gallery img')].map(i => i.src.slice(0, 15))")
        assert thumbs == ["data:image/jpeg"] * 2
        assert len(page.texts("#retrieval rect")) > 0

        page.click("#gallery button.thumb")  # the full-size file, through its relative link
        natural = (
            "new Promise(r => { const i = document.getElementById('lb-img'); "
            "i.complete ? r(i.naturalWidth) : i.onload = () => r(i.naturalWidth); })"
        )
        assert page.evaluate(natural) == 512
        assert page.evaluate("document.getElementById('lb-img').getAttribute('src')").startswith("../images/")
        page.evaluate("document.getElementById('lightbox').hidden = true")
        page.screenshot(tmp_path / "report.png")
        assert page.errors() == []
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_report_command_writes_a_chosen_run_to_a_chosen_file(lake, tmp_path, capsys):
    args = lake.args
    run_id = lake.tables.read("runs").first()["run_id"]
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", *args, "--run-id", run_id, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    images = os.path.relpath(os.path.join(lake.tables.files_root, "images"), out.parent)
    assert run_id in page and f'"href": "{images}/' in page  # full-size links relative to the file
    assert main(["report", *args, "--run-id", "run-nope"]) == 2
    assert "no run 'run-nope'" in capsys.readouterr().err


def test_failure_reasons_group_in_spark_as_error_kind_does(spark):
    messages = [
        "qa: timeout: after 60 s; attempt 3",
        "invalid task input: malformed JSON: x",
        "invalid task input: line 12: qa.question is empty",
        "plain",
        "",
        None,
        "a:b:c:d;e:f",
        " spaced : out : here",
    ]
    df = spark.createDataFrame([(m,) for m in messages], "error string")
    got = [r["reason"] for r in df.select(error_reason(F.col("error")).alias("reason")).collect()]
    assert got == [error_kind(m) for m in messages]


def test_a_report_that_cannot_be_written_does_not_fail_the_pipeline(lake, monkeypatch, capsys):
    """The rerun finds every task done; only the report fails, and the run still exits 0."""
    from lakechain.report import stage

    def broken(*_: object, **__: object) -> None:
        raise PermissionError("reports/ is read-only")

    monkeypatch.setattr(stage, "write_report", broken)
    assert main(["pipeline", *lake.args]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("report: "))
    assert line.startswith("report: not written (PermissionError: reports/ is read-only)")
    assert "lakechain report --run-id run-" in line
