"""SIGKILL a whole `spark-submit jobs/run_tasks.py` mid-run, rerun: no duplicate, lost or recomputed row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from test_pipeline_e2e import _env
from test_tasks_stage import remote, save_index, write_lines

from lakechain.embed.embedders import make_embedder
from lakechain.storage.session import submit_args
from lakechain.tasks.stage import run_tasks
from lakechain.testing.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]


def _commits(log: Path) -> int:
    return sum(1 for p in log.glob("*.json") if p.name[0].isdigit()) if log.is_dir() else 0


def test_sigkilled_job_resumes_to_every_row_once(spark, settings, tables, tmp_path, delta_rows):
    def results_rows(t):
        return delta_rows(t, "results")

    with FakeOpenAIServer(seed=5, latency_s=0.2) as srv:
        remote(settings, srv)
        settings.tasks.commit_every = 24
        settings.tasks.max_concurrency = 4
        settings.tasks.partitions = 2
        settings.spark.master = "local[2]"
        settings.spark.remote = None  # spark-submit runs a classic driver
        save_index(settings, make_embedder(settings.embedding))
        records = [{"task_id": f"s{i:03d}", "question": f"Question {i} about Spark?"} for i in range(240)]
        settings.tasks.path = write_lines(tmp_path / "tasks.jsonl", records)
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(settings.safe_dump()))

        env = {**_env()}
        spark_submit = Path(sys.executable).parent / "spark-submit"
        proc = subprocess.Popen(
            [
                str(spark_submit),
                "--master",
                "local[2]",
                *submit_args(),
                "jobs/run_tasks.py",
                "--config",
                str(config),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        log = Path(tables.location("results")) / "_delta_log"
        deadline = time.monotonic() + 240
        try:
            while _commits(log) == 0 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver JVM, its Python and every worker
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "the job must be killed mid-run, not finish"
        committed = {r["task_id"]: r for r in results_rows(tables)}
        assert 0 < len(committed) < len(records)

        resumed = run_tasks(spark, settings, tables, progress=False)
        # batches staged but not merged when the job died are merged first, not recomputed
        assert resumed.skipped >= len(committed) and resumed.skipped + resumed.pending == len(records)
        rows = results_rows(tables)
        assert sorted(r["task_id"] for r in rows) == sorted(r["task_id"] for r in records)
        assert all(r["status"] == "ok" for r in rows)
        assert {t: r["run_id"] for t, r in ((r["task_id"], r) for r in rows) if t in committed} == {
            t: r["run_id"] for t, r in committed.items()
        }, "rows committed before the kill must not be recomputed"
