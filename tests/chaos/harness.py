"""Running ``lakechain pipeline`` as a user does (a process of its own, classic local Spark,
the embedded offline default) and killing it at a chosen moment of a chosen stage.

Stages are told apart by the lines the pipeline prints anyway: Spark's log-level line once
the session is up (embed starts), the embed report (index starts) and the index summary
(run-tasks starts). So a kill moment is "stage + seconds into it", which means the same
thing in a rerun that skips work already committed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[2]

Stage = Literal["embed", "index", "run-tasks"]
STAGES: tuple[Stage, ...] = ("embed", "index", "run-tasks")

# (stream, pattern) of the line that starts each stage, and of the one that ends the run's work.
STARTS: dict[Stage, tuple[str, re.Pattern[str]]] = {
    "embed": ("err", re.compile(r"Setting Spark log level")),
    "index": ("out", re.compile(r"^embed run ")),
    "run-tasks": ("out", re.compile(r"^(built |index up to date)")),
}
DONE = ("out", re.compile(r"^run-tasks run-"))

CORPUS_FILES = (
    "azure_databricks.txt", "langchain.txt", "gpt4.txt", "embeddings.txt", "rag.md",
    "vector_search.html", "notes.jsonl", "delta",
)  # fmt: skip
"""A slice of ``data/corpus`` with every input kind (txt, md, html, jsonl, a sub-directory)."""
TASK_LINES = (0, 1, 2, 3, 9, 11, 12)
"""Lines of ``data/tasks.jsonl``: QA, image, both, an id'd task, an illustrated answer, an invalid one."""

CONNECT_ENV = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


def pipeline_args(root: Path, corpus: Path, tasks: Path) -> list[str]:
    """``--set`` flags for a small, many-commit run: several embed and task commit batches,
    so kills land between commits as well as inside them."""
    sets = {
        "storage.root": root,
        "corpus.path": corpus,
        "tasks.path": tasks,
        "spark.master": "local[2]",
        "spark.shuffle_partitions": 2,
        "spark.remote": "null",
        "embedding.commit_every": 8,
        "tasks.commit_every": 3,
    }
    return [
        "--config",
        str(REPO / "conf" / "local.yaml"),
        *(a for k, v in sets.items() for a in ("--set", f"{k}={v}")),
    ]


def child_env() -> dict[str, str]:
    """This interpreter and this checkout's ``lib`` for the child, and no inherited Spark Connect."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_ENV}
    lib = str(REPO / "lib")
    path = env.get("PYTHONPATH", "")
    return {
        **env,
        "PYTHONPATH": lib + (os.pathsep + path if path else ""),
        "PYTHONUNBUFFERED": "1",  # stage lines arrive when printed, not at exit
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


@dataclass
class Run:
    """One ``lakechain pipeline`` (or ``command``) process in its own process group, its lines
    timestamped."""

    args: list[str]
    command: str = "pipeline"
    proc: subprocess.Popen[str] = field(init=False)
    started: float = field(init=False)
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, "out"/"err", line)
    ended: float | None = None
    """Seconds from start to exit (or to the kill)."""
    _readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lakechain.cli", self.command, *self.args],
            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group: the JVM and every Python worker
        )  # fmt: skip
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            t = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            t.start()
            self._readers.append(t)

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append((time.monotonic() - self.started, name, line.rstrip("\n")))
        if name == "out":  # closed at exit: the end time, whichever run is waited for first
            self.ended = self.ended or round(time.monotonic() - self.started, 1)

    def seen(self, marker: tuple[str, re.Pattern[str]]) -> float | None:
        """Seconds after start at which a line matching ``marker`` was printed, or None."""
        stream, pattern = marker
        return next((t for t, s, line in list(self.lines) if s == stream and pattern.search(line)), None)

    def stage(self) -> Stage | Literal["starting", "finishing"]:
        """The stage the process is in now, from the lines printed so far."""
        if self.seen(DONE) is not None:
            return "finishing"
        current: Stage | Literal["starting"] = "starting"
        for s in STAGES:
            if self.seen(STARTS[s]) is not None:
                current = s
        return current

    def wait_measuring(self, root: Path, timeout: float = 900) -> tuple[dict[str, int], dict[str, float]]:
        """Wait for the end, noting the root's disk use (KiB) as each stage starts and at the
        end, and when each first-run event (:func:`first_run_events`) was first seen."""
        used: dict[str, int] = {}
        events: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            stage = self.stage()
            if stage not in used:
                used[stage] = disk_use_kib(root)
            for e in first_run_events(root):
                events.setdefault(e, round(time.monotonic() - self.started, 2))
            time.sleep(0.02)
        self.wait(timeout=max(1.0, deadline - time.monotonic()))
        used["end"] = disk_use_kib(root)
        return used, events

    def wait(self, timeout: float = 900) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.ended = self.ended or round(time.monotonic() - self.started, 1)
        for t in self._readers:
            t.join(timeout=30)
        return rc

    def kill(self) -> None:
        """SIGKILL the whole process group (driver, JVM, Python workers): nothing gets to clean up."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait(timeout=120)

    def text(self, stream: str) -> str:
        return "\n".join(line for _, s, line in self.lines if s == stream)

    @property
    def seconds(self) -> float:
        return self.ended if self.ended is not None else round(time.monotonic() - self.started, 1)


@dataclass(frozen=True)
class Timeline:
    """When each stage of an uninterrupted run started and ended (seconds after start)."""

    windows: dict[Stage, tuple[float, float]]
    total: float

    @classmethod
    def of(cls, run: Run) -> Timeline:
        marks = [run.seen(STARTS[s]) for s in STAGES] + [run.seen(DONE)]
        missing = [name for name, t in zip([*STAGES, "done"], marks, strict=True) if t is None]
        assert not missing, f"the reference run printed no marker for {missing}:\n{run.text('out')}"
        bounds = [float(t) for t in marks if t is not None]
        return cls({s: (bounds[i], bounds[i + 1]) for i, s in enumerate(STAGES)}, run.seconds)


@dataclass(frozen=True)
class Kill:
    stage: Stage
    after_s: float
    """Seconds after the stage's start line."""


def draw_kills(rng: random.Random, timeline: Timeline, n: int = 10) -> list[Kill]:
    """``n`` moments: one in each stage, the rest in stages drawn at random, each at a random
    share (5-95 %) of the reference run's stage length. Ordered by stage, then time, so the
    chain of kills and reruns walks through the pipeline as a crashing scheduler would."""
    stages = [*STAGES] + [rng.choice(STAGES) for _ in range(n - len(STAGES))]
    kills = []
    for s in stages:
        start, end = timeline.windows[s]
        kills.append(Kill(s, round(rng.uniform(0.05, 0.95) * (end - start), 2)))
    return sorted(kills, key=lambda k: (STAGES.index(k.stage), k.after_s))


def run_and_kill(args: list[str], kill: Kill, timeout: float = 600) -> tuple[Run, str]:
    """Start a run, SIGKILL it ``kill.after_s`` seconds into ``kill.stage``; returns the run
    and the stage it was really in (a rerun skipping committed work may be further on, or
    "exited" when it finished first)."""
    run = Run(args)
    deadline = time.monotonic() + timeout
    started_at = None
    while run.proc.poll() is None and time.monotonic() < deadline:
        t = run.seen(STARTS[kill.stage])
        if started_at is None and t is not None:
            started_at = run.started + t
        if started_at is None and STAGES.index(kill.stage) < STAGES.index(_stage_or_first(run)):
            started_at = time.monotonic()  # a later stage already began: kill now
        if started_at is not None and time.monotonic() >= started_at + kill.after_s:
            break
        time.sleep(0.02)
    if run.proc.poll() is not None:
        run.wait()
        return run, "exited"
    landed = run.stage()
    run.kill()
    return run, landed


FirstRunEvent = Literal["start", "catalog", "schema", "table"]
FIRST_RUN_EVENTS: tuple[FirstRunEvent, ...] = ("start", "catalog", "schema", "table")
"""What a first run on a fresh root makes, in order: the process starts (the JVM with it),
Derby's catalog directory appears (catalog creation), the catalog is whole (Derby's
``service.properties``; the Hive schema is created next), a first Delta table appears."""


def first_run_events(root: Path) -> set[FirstRunEvent]:
    """The first-run events visible under ``root`` now (read from the file system, so a kill
    aimed at one means the same moment on a loaded machine)."""
    seen: set[FirstRunEvent] = {"start"}
    db = root / "_metastore" / "metastore_db"
    if db.is_dir():
        seen.add("catalog")
    if (db / "service.properties").is_file():
        seen.add("schema")
    try:
        if any((p / "_delta_log").is_dir() for p in root.iterdir()):
            seen.add("table")
    except FileNotFoundError:
        pass
    return seen


@dataclass(frozen=True)
class FirstRunKill:
    event: FirstRunEvent
    after_s: float
    """Seconds after the event was first seen."""


def draw_first_run_kills(
    rng: random.Random, events: dict[str, float], n: int = 10, within_s: float = 30.0
) -> list[FirstRunKill]:
    """``n`` moments within the first ``within_s`` seconds of the reference's first run (to 3 s
    after its first table, when a loaded machine makes that later): two after each event, the
    rest after events drawn at random, each at a random share (5-60 %) of the time from the
    event to the next one (or to the window's end)."""
    within_s = max(within_s, events.get("table", 0.0) + 3.0)
    order = [e for e in FIRST_RUN_EVENTS if e in events]
    ends = [events[e] for e in order[1:]] + [within_s]
    span = {e: end - events[e] for e, end in zip(order, ends, strict=True)}
    picks = order * 2 + [rng.choice(order) for _ in range(n - 2 * len(order))]
    kills = [FirstRunKill(e, round(rng.uniform(0.05, 0.6) * span[e], 2)) for e in picks]
    return sorted(kills, key=lambda k: (FIRST_RUN_EVENTS.index(k.event), k.after_s))


def run_and_kill_at(args: list[str], root: Path, kill: FirstRunKill, timeout: float = 600) -> tuple[Run, str]:
    """Start a first run on ``root``, SIGKILL its process group ``kill.after_s`` seconds after
    ``kill.event``; returns the run and what it had made by then (or "exited")."""
    run = Run(args)
    deadline = time.monotonic() + timeout
    seen_at = None
    while run.proc.poll() is None and time.monotonic() < deadline:
        now = time.monotonic()
        if seen_at is None and kill.event in first_run_events(root):
            seen_at = now
        if seen_at is not None and now >= seen_at + kill.after_s:
            break
        time.sleep(0.01)
    if run.proc.poll() is not None:
        run.wait()
        return run, "exited"
    made = first_run_events(root)
    run.kill()
    return run, "+".join(e for e in FIRST_RUN_EVENTS if e in made)


def _stage_or_first(run: Run) -> Stage:
    s = run.stage()
    return "embed" if s == "starting" else "run-tasks" if s == "finishing" else s


def disk_use_kib(root: Path) -> int:
    """Blocks allocated under ``root`` in KiB, as ``du -sk`` (and a tmpfs's size limit) count them."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in [".", *files]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # removed while walking a running pipeline's root
    return total // 1024


def one_line_error(stderr: str) -> str:
    """The CLI's last ``lakechain: ...`` line, asserting no traceback follows it (Spark's own
    ERROR log before it may quote a worker's traceback; the CLI's message must come last)."""
    lines = stderr.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("lakechain: ")]
    assert at, f"no 'lakechain: ...' message:\n{stderr[-4000:]}"
    after = "\n".join(lines[at[-1] + 1 :])
    assert "Traceback" not in after, stderr[-4000:]
    return lines[at[-1]]
