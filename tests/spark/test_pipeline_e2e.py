"""The README's main job end to end on the sample data: CLI, SQL docs, ask, and spark-submit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakechain.cli import main
from lakechain.storage.session import submit_args

REPO = Path(__file__).resolve().parents[2]


def _sql_blocks() -> list[tuple[str, str]]:
    text = (REPO / "docs" / "sql.md").read_text()
    return re.findall(r"<!-- sql: ([\w-]+) -->\s*```sql\n(.*?)```", text, flags=re.S)


CONNECT_ENV = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")
"""Set in this process by a local Spark Connect session; a child must start its own Spark."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_ENV}
    return {**env, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark):
    """The README's main command in a process of its own: its tables land in the root's own
    metastore, as a user's would. (On the Spark Connect job the stages run on Connect in the
    suite's own session; a second local Connect server would need the first one's port.)"""
    root = tmp_path_factory.mktemp("pipeline") / "lake"
    args = ["--config", "conf/local.yaml", "--set", f"storage.root={root}", "--set", "storage.schema=e2e"]
    lakechain = Path(sys.executable).parent / "lakechain"
    proc = subprocess.run(
        [str(lakechain), "pipeline", *args, "--set", "spark.master=local[2]", "--set", "spark.remote=null"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return root, args


FRESH_READER = """
import glob, os, sys
from pyspark.sql import SparkSession
root = sys.argv[1]
record = glob.glob(os.path.expanduser("~/.cache/lakechain/*.jars"))
jars = {"spark.jars": ",".join(open(record[0]).read().split())} if record else {
    "spark.jars.packages": "io.delta:delta-spark_4.2_2.13:4.4.0"}
b = SparkSession.builder.master("local[1]")
for k, v in {**jars,
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.catalogImplementation": "hive",
    "spark.hadoop.javax.jdo.option.ConnectionURL":
        f"jdbc:derby:;databaseName={root}/_metastore/metastore_db;create=true",
    "spark.ui.enabled": "false"}.items():
    b = b.config(k, v)
spark = b.getOrCreate()
print("COUNT", spark.sql("SELECT count(*) AS n FROM e2e.results").first()["n"])
print("HISTORY", spark.sql("DESCRIBE HISTORY e2e.chunks").first()["operation"])
print("MODULES", any(m.startswith("lakechain") for m in sys.modules))
"""


def test_a_plain_pyspark_session_reads_the_tables_by_name(lake, tmp_path):
    """Only pyspark and Delta's jars (no Lakechain): tables by name, and their history."""
    root, _ = lake
    script = tmp_path / "reader.py"
    script.write_text(FRESH_READER)
    proc = subprocess.run(
        [sys.executable, str(script), str(root)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_tasks = sum(1 for line in (REPO / "data" / "tasks.jsonl").read_text().splitlines() if line.strip())
    assert f"COUNT {n_tasks}" in proc.stdout
    assert re.search(r"HISTORY (WRITE|MERGE|CREATE TABLE AS SELECT|DELETE)", proc.stdout), proc.stdout
    assert "MODULES False" in proc.stdout


def test_deltalake_opens_every_table(lake):
    from deltalake import DeltaTable

    root, _ = lake
    names = [p.name for p in root.iterdir() if (p / "_delta_log").is_dir()]
    assert {"documents", "chunks", "ingest_errors", "tasks", "results"} <= set(names)
    for name in names:
        DeltaTable(str(root / name)).to_pyarrow_table()  # every file its log references opens


def test_pipeline_writes_every_table(lake):
    from deltalake import DeltaTable

    root, _ = lake
    for name in ("documents", "chunks", "tasks", "results"):
        assert DeltaTable(str(root / name)).to_pyarrow_table().num_rows > 0, name
    assert (root / "index" / "CURRENT").is_file()


def test_results_answer_the_sample_tasks(lake, capsys):
    _, args = lake
    assert (
        main(
            [
                "sql",
                *args,
                "--format",
                "json",
                "SELECT task_id, question, answer, qa_status, image_status, image_bytes AS png "
                "FROM results ORDER BY task_id",
            ]
        )
        == 0
    )
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
    env = _env()
    spark_submit = Path(sys.executable).parent / "spark-submit"
    return subprocess.run(
        [str(spark_submit), "--master", "local[2]", *submit_args(), f"jobs/{job}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
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
