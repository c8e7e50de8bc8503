"""Run planning, progress lines and the end-of-run report (pure).

Why here and not in the Spark layer: which tasks a run must process is the heart of the
exactly-once guarantee, so it is a pure function of (tasks, existing results, flags) with
its own tests; progress and the report are plain counters that need no cluster.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from lakechain.tasks.parse import ParsedTask


@dataclass
class Plan:
    pending: list[ParsedTask]
    """Tasks this run executes (parse-error tasks included: they become error rows)."""
    done_ok: int = 0
    """Tasks skipped because they already have an ok result for their current input."""
    done_error: int = 0
    """Tasks skipped because their last result is an error and ``retry_failed`` is off."""


def plan_run(
    tasks: Iterable[ParsedTask],
    existing: Mapping[str, tuple[str | None, str | None]],
    retry_failed: bool = False,
    force: bool = False,
) -> Plan:
    """Choose the tasks to run from ``existing`` = ``{task_id: (input_hash, status)}`` of ``results``.

    A task runs when it has no result, its input changed since (another ``input_hash``),
    ``force`` is set, or its result is an error and ``retry_failed`` is set. An ok result
    for the current input is never recomputed without ``force``.
    """
    plan = Plan([])
    for t in tasks:
        prev = existing.get(t.task_id)
        if force or prev is None or prev[0] != t.input_hash:
            plan.pending.append(t)
        elif prev[1] == "ok":
            plan.done_ok += 1
        elif retry_failed:
            plan.pending.append(t)
        else:
            plan.done_error += 1
    return plan


@dataclass
class RunReport:
    run_id: str
    source: str
    tasks_total: int = 0
    pending: int = 0
    ok: int = 0
    error: int = 0
    invalid: int = 0
    """Of ``error``: tasks whose input could not be parsed."""
    skipped: int = 0
    """Tasks not run because they already have a result (ok, or error without --retry-failed)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    batches: int = 0
    wall_s: float = 0.0
    results_version: int | None = None
    results_ok: int = 0
    """Tasks of this input with an ok result in ``results`` after the run (all runs)."""
    results_error: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: input, plan (tasks table + existing results), execute (Spark
    batch jobs), commit_wait (MERGEs not hidden behind the next batch), finish."""

    @property
    def processed(self) -> int:
        return self.ok + self.error

    @property
    def throughput(self) -> float:
        """Tasks processed per second of wall time."""
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "processed": self.processed, "throughput": round(self.throughput, 3)}

    def __str__(self) -> str:
        lines = [
            f"run-tasks {self.run_id} ({self.source})",
            f"  tasks: {self.tasks_total} in input, {self.pending} pending, "
            f"{self.skipped} skipped (already done)",
            f"  this run: {self.ok} ok, {self.error} error ({self.invalid} invalid input), "
            f"{self.attempts} model calls, {self.batches} commits",
            f"  tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion",
            f"  wall time: {self.wall_s:.1f} s, {self.throughput:.2f} tasks/s",
            f"  results (this input): {self.results_ok} ok, {self.results_error} error; "
            f"table version {self.results_version}",
        ]
        if self.timings:
            lines.append(
                "  phases: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in self.timings.items())
            )
        lines += [f"  note: {n}" for n in self.notes]
        if self.errors_by_reason:
            top = sorted(self.errors_by_reason.items(), key=lambda kv: -kv[1])[:5]
            lines.append("  top errors: " + "; ".join(f"{n}× {reason}" for reason, n in top))
        return "\n".join(lines)


def error_kind(message: str | None) -> str:
    """A short, groupable reason from an error message (for the report)."""
    if not message:
        return "unknown"
    parts = message.split(";")[0].split(":", 2)
    return ":".join(parts[:2]).strip()[:80]


class Progress:
    """Progress lines on stderr: done/total, ok/error, tokens, rate and ETA."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.total = total
        self.done = self.ok = self.error = self.tokens = 0
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self.enabled = enabled

    def update(self, ok: int, error: int, tokens: int) -> str:
        self.ok += ok
        self.error += error
        self.done += ok + error
        self.tokens += tokens
        line = self.line()
        if self.enabled:
            print(line, file=self._stream or sys.stderr, flush=True)
        return line

    def line(self) -> str:
        elapsed = max(1e-9, self._clock() - self._start)
        rate = self.done / elapsed
        remaining = max(0, self.total - self.done)
        eta = f"{remaining / rate:.0f}s" if rate > 0 and remaining else ("0s" if not remaining else "?")
        return (
            f"[run-tasks] {self.done}/{self.total} tasks, {self.ok} ok, {self.error} error, "
            f"{self.tokens} tokens, {rate:.1f} tasks/s, elapsed {elapsed:.0f}s, ETA {eta}"
        )
