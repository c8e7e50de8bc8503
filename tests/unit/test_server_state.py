"""``lakechain server`` bookkeeping without Spark: the state file, who owns the root's
metastore lock, and what ``status`` / attaching conclude from them."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakechain.cli import main
from lakechain.config import load_settings
from lakechain.errors import StorageBusyError
from lakechain.storage import server


@pytest.fixture
def root_settings(tmp_path):
    """Settings on an empty temporary root (nothing runs there)."""
    return load_settings(None, [f"storage.root={tmp_path / 'lake'}", "storage.lock_timeout_s=1"])


def _state(root: str, pid: int, port: int = 1) -> server.ServerState:
    return server.ServerState(pid=pid, port=port, root=root, token="s3cret-token", master="local[2]",
                              started=time.time(), log=f"{root}/_server/server.log")  # fmt: skip


@pytest.fixture
def held_lock(root_settings) -> Iterator[str]:
    """This process holds the root's metastore lock with its pid written in it, as a server does."""
    root = server.root_of(root_settings)
    path = server.lock_path(root)
    path.parent.mkdir(parents=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, str(os.getpid()).encode())
    yield root
    os.close(fd)


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A localhost port something accepts connections on."""
    with socket.create_server((server.HOST, 0)) as sock:
        yield sock.getsockname()[1]


def test_state_file_round_trips_and_only_its_owner_reads_it(root_settings):
    root = server.root_of(root_settings)
    state = _state(root, 123)
    server.write_state(root, state)
    assert server.read_state(root) == state
    assert stat.S_IMODE(server.state_path(root).stat().st_mode) == 0o600


def test_a_truncated_state_file_reads_as_none(root_settings):
    root = server.root_of(root_settings)
    server.state_path(root).parent.mkdir(parents=True)
    server.state_path(root).write_text('{"pid": 12', encoding="utf-8")
    assert server.read_state(root) is None


def test_a_server_runs_while_its_pid_holds_the_metastore_lock(held_lock):
    server.write_state(held_lock, _state(held_lock, os.getpid()))
    assert server.lock_holder(held_lock) == os.getpid()
    assert server.running(held_lock) == server.read_state(held_lock)


def test_a_free_lock_means_no_server_even_with_a_live_pid(root_settings):
    root = server.root_of(root_settings)
    server.lock_path(root).parent.mkdir(parents=True)
    server.lock_path(root).write_text(str(os.getpid()), encoding="utf-8")
    server.write_state(root, _state(root, os.getpid()))
    assert server.lock_holder(root) is None
    assert server.running(root) is None


def test_a_lock_held_by_another_process_is_not_the_recorded_server(held_lock):
    server.write_state(held_lock, _state(held_lock, os.getppid()))
    assert server.running(held_lock) is None


def test_a_dead_pid_is_not_running():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not server.pid_alive(proc.pid)
    assert server.pid_alive(os.getpid())


def test_status_names_a_stale_state_file_and_exits_1(root_settings, capsys):
    root = server.root_of(root_settings)
    server.write_state(root, _state(root, 999_999))
    rc = main(["server", "status", "--set", f"storage.root={root}"])
    assert rc == 1
    assert capsys.readouterr().out.strip() == f"no server for {root} (stale state file of pid 999999)"


def test_status_says_a_running_server_answers_without_the_token(held_lock, root_settings, listening_port):
    server.write_state(held_lock, _state(held_lock, os.getpid(), listening_port))
    state, line = server.status(root_settings)
    assert state is not None and "running and answers" in line and f":{listening_port}" in line
    assert "s3cret-token" not in line


def test_stop_removes_a_stale_state_file_and_kills_nothing(root_settings):
    root = server.root_of(root_settings)
    server.write_state(root, _state(root, os.getpid()))
    assert server.stop(root_settings) is None
    assert not server.state_path(root).exists()


def test_commands_attach_to_the_running_server_with_its_token(held_lock, root_settings, listening_port):
    server.write_state(held_lock, _state(held_lock, os.getpid(), listening_port))
    assert server.attach_url(root_settings) == f"sc://localhost:{listening_port}/;token=s3cret-token"


def test_no_server_means_no_attaching(root_settings):
    assert server.attach_url(root_settings) is None


def test_a_server_that_stops_answering_fails_in_one_line(held_lock, root_settings):
    with socket.create_server((server.HOST, 0)) as sock:
        port = sock.getsockname()[1]
    server.write_state(held_lock, _state(held_lock, os.getpid(), port))
    with pytest.raises(StorageBusyError, match=r"does not answer: read its log, or `lakechain server stop`"):
        server.attach_url(root_settings)


def test_a_classic_session_is_refused_while_a_server_owns_the_root(held_lock, root_settings):
    server.write_state(held_lock, _state(held_lock, os.getpid()))
    with pytest.raises(StorageBusyError, match="owns its metastore") as info:
        server.refuse_if_owned(root_settings)
    assert "\n" not in str(info.value)


def test_the_server_gets_a_classic_sessions_delta_and_metastore_settings(root_settings):
    cmd = server.server_command(root_settings, 15099)
    conf = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--conf")
    root = server.root_of(root_settings)
    assert Path(cmd[0]).name == "spark-submit" and cmd[1:3] == ["--class", server.SERVER_CLASS]
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    url = conf["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert f"databaseName={root}/_metastore/metastore_db" in url
    assert conf["spark.connect.grpc.binding.port"] == "15099"
    assert conf["spark.connect.grpc.binding.address"] == "localhost"


def test_the_token_reaches_the_server_by_environment_not_its_command_line(root_settings):
    env = server.server_env("tok-123")
    assert env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] == "tok-123" and "SPARK_REMOTE" not in env
    assert not any("tok-123" in a for a in server.server_command(root_settings, 15099))


def test_a_port_clash_at_start_is_reported_with_its_fix(root_settings):
    root = server.root_of(root_settings)
    state = _state(root, 1, port=15077)
    Path(state["log"]).parent.mkdir(parents=True)
    Path(state["log"]).write_text("INFO x\nERROR y: java.io.IOException: Failed to bind\n"
                                  "Caused by: java.net.BindException: Address already in use\n")  # fmt: skip
    assert server._log_reason(state).startswith("port 15077 is in use: pick another with --port")
