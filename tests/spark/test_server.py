"""``lakechain server``: a real Spark Connect server on a temporary root, driven through the
CLI in subprocesses as a user drives it. No server outlives the module (fixture teardown)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakechain.storage import server

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.create_server((server.HOST, 0)) as sock:
        return int(sock.getsockname()[1])


class Cli:
    """``lakechain ...`` in a subprocess on one root, without the suite's Connect settings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        drop = ("SPARK_REMOTE", "SPARK_CONNECT_AUTHENTICATE_TOKEN", "LAKECHAIN_CONFIG")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])

    def __call__(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "lakechain.cli", *argv, "--config", str(REPO / "conf" / "local.yaml"),
               "--set", f"storage.root={self.root}", "--set", "spark.master=local[2]",
               "--set", "spark.shuffle_partitions=2"]  # fmt: skip
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def running_server(tmp_path_factory) -> Iterator[tuple[Cli, dict[str, Any]]]:
    """One server per module on a fresh root and a free port; teardown stops it, and kills
    its process group should ``stop`` have failed, so no server survives the tests."""
    cli = Cli(tmp_path_factory.mktemp("server-root"))
    started = cli("server", "start", "--port", str(_free_port()))
    state = server.read_state(str(cli.root))
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert state is not None
        yield cli, dict(state)
    finally:
        cli("server", "stop", timeout=120)
        if state is not None and server.pid_alive(state["pid"]):
            os.killpg(state["pid"], signal.SIGKILL)


def test_status_reports_the_server_answering(running_server):
    cli, state = running_server
    out = cli("server", "status")
    assert out.returncode == 0
    assert "running and answers" in out.stdout and f"pid {state['pid']}" in out.stdout
    assert state["token"] not in out.stdout


def test_sql_goes_through_the_server_to_delta_tables_by_name(running_server):
    cli, state = running_server
    made = cli("sql", "CREATE TABLE lakechain.kv USING delta AS SELECT 'a' AS k, 1 AS v")
    assert made.returncode == 0, made.stderr[-2000:]
    read = cli("sql", "--format", "json", "SELECT k, v FROM kv")
    assert read.returncode == 0, read.stderr[-2000:]
    assert json.loads(read.stdout) == {"k": "a", "v": 1}
    assert f"attached to the Lakechain server of {cli.root} (pid {state['pid']}" in read.stderr
    assert (cli.root / "kv" / "_delta_log").is_dir()


WORKER_PIDS = """
import os, sys
from pyspark.sql import SparkSession
from lakechain.storage import server
spark = SparkSession.builder.remote(server.client_url(server.read_state(sys.argv[1]))).getOrCreate()
server.keep_session_open(spark)
def pid(batches):
    import pandas as pd
    for _ in batches:
        yield pd.DataFrame({"pid": [os.getpid()]})
print(sorted({r.pid for r in spark.range(4, numPartitions=2).mapInPandas(pid, "pid long").collect()}))
spark.stop()
"""


def _worker_pids(cli: Cli) -> set[int]:
    """PIDs of the server's Python workers that ran a two-partition mapInPandas for a client."""
    out = subprocess.run([sys.executable, "-c", WORKER_PIDS, str(cli.root)], env=cli.env,
                         capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_commands_share_one_session_so_python_workers_stay_warm(running_server):
    """The server keys its Python worker pool by session: a session per command restarted
    the workers (and their imports and model load) in every stage of every command."""
    cli, state = running_server
    assert state.get("session_id")
    before = _worker_pids(cli)
    assert cli("sql", "SELECT 1").returncode == 0  # a command attaches and exits
    assert before & _worker_pids(cli)


def test_a_local_connect_writer_is_refused_in_one_line(running_server):
    """A writer would wait on the metastore the server owns (a reader opens none)."""
    cli, _ = running_server
    out = cli("sql", "--set", "spark.remote=local[2]", "DROP VIEW IF EXISTS lakechain.no_such_view")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("lakechain: the Lakechain server of")


def test_stop_ends_the_server_and_frees_its_port(running_server):
    cli, state = running_server
    out = cli("server", "stop", timeout=120)
    assert out.returncode == 0 and f"stopped: pid {state['pid']}" in out.stdout
    assert not server.pid_alive(state["pid"])
    assert not server.answers(state["port"])
    assert server.read_state(str(cli.root)) is None
    assert cli("server", "status").returncode == 1
