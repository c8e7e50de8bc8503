"""The README's main job end to end on the sample data: CLI, SQL docs, ask, and spark-submit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakechain.cli import main

REPO = Path(__file__).resolve().parents[2]


def _sql_blocks() -> list[tuple[str, str]]:
    text = (REPO / "docs" / "sql.md").read_text()
    return re.findall(r"<!-- sql: ([\w-]+) -->\s*```sql\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("pipeline") / "lake"
    args = ["--config", "conf/local.yaml", "--set", f"storage.root={root}", "--set", "storage.schema=e2e"]
    assert main(["pipeline", *args]) == 0
    return root, args


def test_pipeline_writes_every_table(lake):
    from deltalake import DeltaTable

    root, _ = lake
    for name in ("documents", "chunks", "tasks", "results"):
        assert DeltaTable(str(root / name)).to_pyarrow_table().num_rows > 0, name
    assert (root / "index" / "CURRENT").is_file()


def test_results_answer_the_sample_tasks(lake, capsys):
    _, args = lake
    assert main(["sql", *args, "--format", "json",
                 "SELECT task_id, question, answer, qa_status, image_status, image_bytes AS png "
                 "FROM results ORDER BY task_id"]) == 0
    import json

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    tasks = [line for line in (REPO / "data" / "tasks.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == len(tasks)
    databricks = [r for r in rows if r["question"] and "Azure Databricks" in r["question"]]
    assert databricks and "Apache Spark-based analytics platform" in databricks[0]["answer"]
    assert all(r["png"] > 0 for r in rows if r["image_status"] == "ok")


def test_readme_sql_queries_return_rows(lake, capsys):
    _, args = lake
    blocks = _sql_blocks()
    assert len(blocks) >= 4
    for name, query in blocks:
        assert main(["sql", *args, query]) == 0, name
        out = capsys.readouterr().out
        assert "(0 rows)" not in out, f"{name} returned no rows:\n{out}"


def test_ask_answers_with_sources(lake, capsys):
    _, args = lake
    assert main(["ask", *args, "What is Azure Databricks?"]) == 0
    out = capsys.readouterr().out
    assert "Apache Spark-based analytics platform" in out
    assert "azure_databricks.txt" in out


def _spark_submit(job: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    spark_submit = Path(sys.executable).parent / "spark-submit"
    return subprocess.run(
        [str(spark_submit), "--master", "local[2]", f"jobs/{job}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize(
    ("job", "says"),
    [
        ("pipeline.py", r"chunks:\s+0 embedded"),
        ("embed_documents.py", r"chunks:\s+0 embedded"),
        ("build_index.py", r"skipped|up to date"),
        ("run_tasks.py", r"\b0 pending|pending\W+0\b"),
    ],
)
def test_spark_submit_jobs_rerun_idempotently(lake, job, says):
    """Each entry point through spark-submit; on an up-to-date lake it changes nothing."""
    from deltalake import DeltaTable

    root, args = lake
    before = DeltaTable(str(root / "results")).to_pyarrow_table().sort_by("task_id")
    proc = _spark_submit(job, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(says, proc.stdout, flags=re.I), proc.stdout[-2000:]
    after = DeltaTable(str(root / "results")).to_pyarrow_table().sort_by("task_id")
    assert after.num_rows == before.num_rows
    assert after.column("created_at").to_pylist() == before.column("created_at").to_pylist()
