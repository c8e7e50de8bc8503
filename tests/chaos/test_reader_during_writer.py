"""``lakechain sql`` on a root while ``lakechain run-tasks`` writes to it: the reader takes no
lock, returns without waiting for the writer, and counts the last committed version."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from deltalake import DeltaTable
from harness import REPO, Run, child_env

from lakechain.storage import server
from lakechain.testing.openai_server import FakeOpenAIServer


def test_sql_reads_the_last_commit_while_run_tasks_holds_the_root(reference, chaos_inputs, tmp_path):
    root = tmp_path / "lake"
    # The tables without the catalog (it names the reference's root): the writer adopts them.
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns("_metastore"))
    results = DeltaTable(str(root / "results"))
    version, rows = results.version(), results.to_pyarrow_table().num_rows
    with FakeOpenAIServer(latency_s=10.0) as srv:  # slow answers: no commit while the reader runs
        slow_chat = {"chat.provider": "openai_compatible", "chat.base_url": srv.url, "chat.model": "slow",
                     "tasks.max_concurrency": 1, "tasks.commit_every": 1000}  # fmt: skip
        slow = [a for k, v in slow_chat.items() for a in ("--set", f"{k}={v}")]
        writer = Run([*chaos_inputs.args(root), *slow, "--force"], command="run-tasks")
        try:
            deadline = time.monotonic() + 120
            while server.lock_holder(str(root)) != writer.proc.pid and time.monotonic() < deadline:
                assert writer.proc.poll() is None, writer.text("err")[-4000:]
                time.sleep(0.1)
            started = time.monotonic()
            sets = {"storage.root": root, "spark.master": "local[1]", "spark.remote": "null"}
            sql = ["sql", "--config", str(REPO / "conf" / "local.yaml"), "--format", "json",
                   *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]  # fmt: skip
            reader = subprocess.run(
                [sys.executable, "-m", "lakechain.cli", *sql, "SELECT count(*) AS n FROM results"],
                cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            took = time.monotonic() - started
            assert reader.returncode == 0, reader.stderr[-4000:]
            assert writer.proc.poll() is None, writer.text("err")[-4000:]
            assert server.lock_holder(str(root)) == writer.proc.pid  # it held the root all along
            assert DeltaTable(str(root / "results")).version() == version  # nothing committed meanwhile
            assert reader.stdout.strip() == f'{{"n": {rows}}}'
            assert "waiting for another Lakechain process" not in reader.stderr
            print(f"\nreader returned in {took:.1f} s while run-tasks (pid {writer.proc.pid}) held the root")
        finally:
            writer.kill()
