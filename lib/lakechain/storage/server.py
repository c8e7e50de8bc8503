"""``lakechain server``: one long-lived local Spark Connect server per storage root.

A classic local session costs a JVM start (~20 s) per command. The server pays it once:
``lakechain server start`` launches Spark's own ``SparkConnectServer`` (what Spark's
``sbin/start-connect-server.sh`` runs) through pyspark's ``spark-submit``, detached, with
the settings a classic session of this root gets (Delta's jars and extensions, the Derby
metastore under ``<root>/_metastore``, the warehouse). Every later command on the same
root finds it through ``<root>/_server/state.json`` and attaches as a Connect client.

The server owns the root's metastore: it inherits the ``<root>/_metastore/.lock`` flock
the starting CLI took (the same lock a classic session holds), so a classic session on
the root can never open Derby beside it, and the OS frees the lock when the server dies,
even on SIGKILL. A server is "running" only while its pid is alive *and* holds that lock,
so a stale state file or a reused pid is never mistaken for it.

It listens on localhost only and requires a random bearer token kept in the state file
(mode 0600): other local users cannot run code through it.

Every command attaches to ONE Connect session, whose id the state file records, and
leaves it open on exit. Why: the server keys its Python worker pool by session (the
session's artifact UUID), so a session per command started a new pool each time and left
the old one idle, with its imports and model, until Spark reaped it. One session keeps one
pool warm. (At seed size this saved no measurable pipeline time: Delta commits dominate.)
The shared session never times out (``defaultSessionTimeout=-1``) and dies with the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TypedDict

from lakechain.config import Settings
from lakechain.errors import StorageBusyError, UserError

log = logging.getLogger(__name__)

DEFAULT_PORT = 15051
"""Not Spark Connect's 15002, which pyspark's own ``local[N]`` Connect server binds."""
SERVER_DIR = "_server"
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
HOST = "localhost"
"""Bound and dialled by name: pyspark sends a token to ``localhost`` over local credentials."""


class _RequiredState(TypedDict):
    pid: int
    port: int
    root: str
    token: str
    master: str
    started: float
    log: str


class ServerState(_RequiredState, total=False):
    """``<root>/_server/state.json``: what ``status`` prints and clients attach with."""

    session_id: str
    """The Connect session every command shares (absent in states of older servers)."""


class ServerError(UserError):
    """The server could not start or stop; the message names the log to read."""


def root_of(settings: Settings) -> str:
    return os.path.abspath(settings.storage.root)


def state_path(root: str) -> Path:
    return Path(root) / SERVER_DIR / "state.json"


def log_path(root: str) -> Path:
    return Path(root) / SERVER_DIR / "server.log"


def lock_path(root: str) -> Path:
    from lakechain.storage.session import METASTORE_DIR

    return Path(root) / METASTORE_DIR / ".lock"


def read_state(root: str) -> ServerState | None:
    """The recorded server, or None (no file, or one cut short by a crash)."""
    try:
        data = json.loads(state_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(k in data for k in ServerState.__required_keys__):
        return None
    return ServerState(**{k: data[k] for k in ServerState.__annotations__ if k in data})  # type: ignore[typeddict-item]


def write_state(root: str, state: ServerState) -> None:
    """Atomically, readable by the owner only (it holds the token)."""
    path = state_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".state.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def remove_state(root: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(root).unlink()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    with contextlib.suppress(OSError):  # Linux: state is the field after "(comm)"
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
    return True


def lock_holder(root: str) -> int | None:
    """The pid written in the root's metastore lock while some process holds it, else None.
    Probing takes the lock for an instant when it is free (and releases it at once)."""
    path = lock_path(root)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text(encoding="utf-8").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def running(root: str) -> ServerState | None:
    """The recorded server if it is alive and still owns the root's metastore."""
    state = read_state(root)
    if state is None or not pid_alive(state["pid"]) or lock_holder(root) != state["pid"]:
        return None
    return state


def answers(port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts connections on ``localhost:port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def client_url(state: ServerState) -> str:
    """The server's address with its token and the shared session (when recorded)."""
    session = f";session_id={state['session_id']}" if state.get("session_id") else ""
    return f"sc://{HOST}:{state['port']}/;token={state['token']}{session}"


def keep_session_open(spark: object) -> None:
    """Make ``spark.stop()`` close only this client's channel: releasing the shared session
    would end it for every later command (pyspark's Connect session attribute)."""
    if hasattr(spark, "release_session_on_close"):
        spark.release_session_on_close = False


def describe(state: ServerState) -> str:
    """One line for people: never the token."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state["started"]))
    return (
        f"pid {state['pid']}, sc://{HOST}:{state['port']}, master {state['master']}, "
        f"since {since}, log {state['log']}"
    )


# --- attaching ---------------------------------------------------------------------------


def attach_url(settings: Settings) -> str | None:
    """The Connect URL of this root's running server, else None (start a classic session).
    A server still starting is waited for (up to ``storage.lock_timeout_s``), as a classic
    session waits for the metastore lock; one that stops answering fails with one line."""
    root = root_of(settings)
    state = running(root)
    if state is None:
        return None
    deadline = time.monotonic() + settings.storage.lock_timeout_s
    waited = False
    while not answers(state["port"]):
        if not pid_alive(state["pid"]):
            return None
        if time.monotonic() >= deadline:
            raise StorageBusyError(
                f"the Lakechain server of {root} ({describe(state)}) does not answer: "
                "read its log, or `lakechain server stop` it"
            )
        if not waited:
            log.warning("waiting for the Lakechain server of %s to answer (pid %d)", root, state["pid"])
            waited = True
        time.sleep(0.25)
    log.info("attached to the Lakechain server of %s (pid %d, port %d)", root, state["pid"], state["port"])
    return client_url(state)


# --- start / stop ------------------------------------------------------------------------


def server_command(settings: Settings, port: int) -> list[str]:
    """``spark-submit --class SparkConnectServer`` with a classic session's local settings."""
    from pyspark.find_spark_home import _find_spark_home

    from lakechain.storage.session import local_conf

    conf = {
        **local_conf(settings),
        "spark.app.name": f"{settings.spark.app_name}-server",
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.session.manager.defaultSessionTimeout": "-1",  # the shared session (module doc)
    }
    cmd = [os.path.join(_find_spark_home(), "bin", "spark-submit"), "--class", SERVER_CLASS]
    cmd += ["--master", settings.spark.master]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    return cmd


def server_env(token: str) -> dict[str, str]:
    """This process's environment (so the server's Python workers import the same
    Lakechain), minus anything that would make it a Connect client itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
    return env


def start(settings: Settings, port: int = DEFAULT_PORT, timeout_s: float = 300.0) -> tuple[ServerState, bool]:
    """Start the root's server and wait until it answers a query; ``(state, False)`` when one
    already runs. The server is detached (own session, stdin closed, output to the log)."""
    from lakechain.storage.session import _HELD_LOCKS, METASTORE_DIR, lock_metastore, on_databricks

    if on_databricks() or settings.storage.uses_catalog:
        raise ServerError("lakechain server is for a local storage.root; Databricks runs its own Spark")
    if settings.spark.remote or os.environ.get("SPARK_REMOTE"):
        raise ServerError("spark.remote (or SPARK_REMOTE) is set: commands already use that Spark; unset it")
    root = root_of(settings)
    current = running(root)
    if current is not None:
        return current, False
    if answers(port):
        raise ServerError(f"port {port} is in use by another program: pick another with --port")
    lock_metastore(settings)  # waits for a classic session on this root to finish
    fd = _HELD_LOCKS[os.path.join(root, METASTORE_DIR)]
    logfile = log_path(root)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    with open(logfile, "ab") as out:
        out.write(f"\n--- lakechain server start {time.strftime('%Y-%m-%d %H:%M:%S')} port {port}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            server_command(settings, port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(token),
            pass_fds=(fd,),  # the metastore lock travels with the server
            start_new_session=True,
            cwd=root,
        )
    state = ServerState(pid=proc.pid, port=port, root=root, token=token, master=settings.spark.master,
                        started=time.time(), log=str(logfile), session_id=str(uuid.uuid4()))  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(proc.pid).encode(), 0)
    write_state(root, state)
    try:
        _wait_ready(proc, state, timeout_s)
    except BaseException:
        _terminate(proc.pid, grace_s=10.0)
        remove_state(root)
        raise
    return state, True


def _wait_ready(proc: subprocess.Popen[bytes], state: ServerState, timeout_s: float) -> None:
    """Until the port answers, then one metastore query, so the first command finds the
    Derby metastore and Delta's classes loaded."""
    deadline = time.monotonic() + timeout_s
    while not answers(state["port"]):
        code = proc.poll()
        if code is not None:
            raise ServerError(f"the server exited while starting (code {code}): {_log_reason(state)}")
        if time.monotonic() >= deadline:
            raise ServerError(f"the server did not answer within {timeout_s:g} s; see {state['log']}")
        time.sleep(0.25)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(client_url(state)).getOrCreate()
    keep_session_open(spark)
    try:
        spark.sql("SHOW DATABASES").collect()
    finally:
        spark.stop()


def _log_reason(state: ServerState) -> str:
    """The log's most telling line (a port clash gets its fix), and where the log is."""
    try:
        lines = Path(state["log"]).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    text = "\n".join(lines[-200:])
    if "BindException" in text or "Address already in use" in text:
        return f"port {state['port']} is in use: pick another with --port (log {state['log']})"
    errors = [ln.strip() for ln in lines[-200:] if "Exception" in ln or " ERROR " in ln]
    return f"{errors[0][:300] if errors else 'no error logged'} (log {state['log']})"


def stop(settings: Settings, timeout_s: float = 60.0) -> ServerState | None:
    """Stop the root's server (SIGTERM: Spark shuts down cleanly; SIGKILL after
    ``timeout_s``), wait until its port is free and remove the state file. Returns the
    stopped server, or None when none was running (a stale state file is removed)."""
    root = root_of(settings)
    state = running(root)
    if state is None:
        remove_state(root)
        return None
    _terminate(state["pid"], grace_s=timeout_s)
    deadline = time.monotonic() + 10.0
    while answers(state["port"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    remove_state(root)
    return state


def _terminate(pid: int, grace_s: float) -> None:
    """SIGTERM the server, then SIGKILL its whole process group (it leads one: Python
    workers included) if it outlives ``grace_s``; leftovers of the group go too."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def refuse_if_owned(settings: Settings) -> None:
    """A classic or ``local[N]`` session must not wait on a metastore a server owns."""
    state = running(root_of(settings))
    if state is not None:
        raise StorageBusyError(
            f"the Lakechain server of {state['root']} owns its metastore (pid {state['pid']}): leave "
            "spark.remote unset to go through it, or `lakechain server stop` first"
        )


def status(settings: Settings) -> tuple[ServerState | None, str]:
    """The running server (None if none) and one line saying so, with whether it answers."""
    root = root_of(settings)
    state = running(root)
    if state is None:
        stale = read_state(root)
        note = f" (stale state file of pid {stale['pid']})" if stale else ""
        return None, f"no server for {root}{note}"
    if not answers(state["port"]):
        return None, f"server for {root} is not answering yet: {describe(state)}"
    return state, f"server for {root} is running and answers: {describe(state)}"
