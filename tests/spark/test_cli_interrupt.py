"""Ctrl-C during ``lakechain run-tasks``: exit 130, one line naming what this run committed
and the command that resumes it; the named version is the table's real one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from deltalake import DeltaTable

from lakechain.testing.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]


def _commits(log: Path) -> int:
    return sum(1 for p in log.glob("*.json") if p.name[0].isdigit()) if log.is_dir() else 0


def test_ctrl_c_reports_what_was_committed_and_how_to_resume(tmp_path):
    root = tmp_path / "lake"
    tasks = tmp_path / "tasks.jsonl"
    # Image-only tasks need no index; 0.2 s per fake image call keeps the run going for a while.
    tasks.write_text(
        "".join(
            json.dumps({"task_id": f"i{i:03d}", "image_generation": {"prompt": f"picture {i}"}}) + "\n"
            for i in range(240)
        )
    )
    with FakeOpenAIServer(seed=3, latency_s=0.2) as srv:
        argv = [
            "run-tasks",
            "--set",
            f"storage.root={root}",
            "--set",
            f"tasks.path={tasks}",
            "--set",
            "spark.master=local[2]",
            "--set",
            "tasks.commit_every=24",
            "--set",
            "tasks.requests_per_minute=1000000",
            "--set",
            "tasks.write_image_files=false",
            "--set",
            "images.provider=openai_compatible",
            "--set",
            f"images.base_url={srv.url}",
            "--set",
            "images.model=fake-image",
            "--set",
            "images.size=64x64",
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "PYSPARK_PYTHON": sys.executable}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lakechain.cli", *argv],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        log = root / "results" / "_delta_log"
        deadline = time.monotonic() + 300
        while _commits(log) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run must still be going when interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    line = err.strip().splitlines()[-1]
    m = re.fullmatch(
        r"lakechain: interrupted: committed (?:tasks \(1 commit, now v0\), )?"
        r"results \((\d+) commits?, now v(\d+)\)\. "
        r"Resume with `lakechain run-tasks .*` \(finished work is not redone\)",
        line,
    )
    assert m, line
    assert int(m.group(2)) == DeltaTable(str(root / "results")).version()
    assert 0 < DeltaTable(str(root / "results")).to_pyarrow_table().num_rows < 240
