"""Issue #12 item 4, end to end: a storage root whose path holds a space, unicode and ``%``
(``%20`` in file URIs once broke index, run-tasks and SQL after embed succeeded). The
pipeline and ``sql`` run as a user runs them, each in a process of its own, so the root's
own metastore (Derby, under the odd path) is exercised too; the storage layer alone is
tested in test_tables.py::test_paths_with_spaces_unicode_and_percent_work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONNECT_ENV = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


def _lakechain(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_ENV}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [str(Path(sys.executable).parent / "lakechain"), *argv, "--set", "spark.master=local[2]",
           "--set", "spark.remote=null"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_pipeline_and_sql_on_a_root_with_a_space_unicode_and_percent(tmp_path):
    odd = tmp_path / "my lake ü 100%"
    corpus = odd / "corpus dir"
    corpus.mkdir(parents=True)
    (corpus / "delta lake.txt").write_text(
        "Delta Lake keeps every version of a table in its transaction log."
    )
    tasks = odd / "tasks 1.jsonl"
    tasks.write_text(json.dumps({"task_id": "q", "question": "What does Delta Lake keep?"}) + "\n")
    root = ["--config", "conf/local.yaml", "--set", f"storage.root={odd / 'lake'}"]
    run = _lakechain("pipeline", *root, "--set", f"corpus.path={corpus}", "--set", f"tasks.path={tasks}")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    sql = _lakechain("sql", *root, "--format", "json", "SELECT task_id, status FROM results")
    assert sql.returncode == 0, sql.stderr[-3000:]
    assert [json.loads(ln) for ln in sql.stdout.splitlines() if ln.strip()] == [
        {"task_id": "q", "status": "ok"}
    ]
