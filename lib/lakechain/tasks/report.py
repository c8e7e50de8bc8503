"""The task stage's end-of-run report and how errors are grouped in it (pure).

Which tasks a run executes is decided on the cluster (``stage._pending``, a join of
``tasks`` with ``results``); progress lines come from ``runtime.progress``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any


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
    cache_on: bool = False
    """Whether the response cache was used (``tasks.cache``)."""
    cache_hits: int = 0
    """Tasks whose answer came from ``llm_cache`` or from an identical call of this run."""
    calls_saved: int = 0
    batches: int = 0
    wall_s: float = 0.0
    results_version: int | None = None
    results_ok: int = 0
    """Tasks of this input with an ok result in ``results`` after the run (all runs)."""
    results_error: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    recomputed: dict[str, int] = field(default_factory=dict)
    """Done tasks pending again, per ``tasks.recompute_on`` reason (a task may count under several)."""
    cost_usd: float = 0.0
    """This run's spend at ``prices`` (rows of unpriced models count 0; see ``cost_unknown``)."""
    cost_unknown: int = 0
    """Tasks of this run whose cost is unknown (a remote model without a price)."""
    budget_stop: str | None = None
    """Why the run stopped early at a commit boundary (``tasks.max_cost_usd``/``max_tokens``)."""
    estimate: dict[str, Any] | None = None
    """``run-tasks --estimate``: the projection written to ``run_estimates`` (``estimate.Estimate``)."""
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
        unpriced = f" ({self.cost_unknown} tasks unpriced)" if self.cost_unknown else ""
        lines = [
            f"run-tasks {self.run_id} ({self.source})",
            f"  tasks: {self.tasks_total} in input, {self.pending} pending, "
            f"{self.skipped} skipped (already done)",
            f"  this run: {self.ok} ok, {self.error} error ({self.invalid} invalid input), "
            f"{self.attempts} model calls, {self.batches} commits",
            f"  tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion; "
            f"cost ${self.cost_usd:.4f}{unpriced}",
            f"  response cache: {'on' if self.cache_on else 'off'}, {self.cache_hits} hits, "
            f"{self.calls_saved} model calls saved",
            f"  wall time: {self.wall_s:.1f} s, {self.throughput:.2f} tasks/s",
            f"  results (this input): {self.results_ok} ok, {self.results_error} error; "
            f"table version {self.results_version}",
        ]
        if self.timings:
            lines.append(
                "  phases: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in self.timings.items())
            )
        if self.recomputed:
            lines.append(
                "  pending again: " + ", ".join(f"{n} for {reason}" for reason, n in self.recomputed.items())
            )
        if self.budget_stop:
            lines.append(f"  stopped: {self.budget_stop}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.errors_by_reason:
            top = sorted(self.errors_by_reason.items(), key=lambda kv: -kv[1])[:5]
            lines.append("  top errors: " + "; ".join(f"{n}× {reason}" for reason, n in top))
        return "\n".join(lines)


POSITION = r"\b(line|row) \d+"
"""Where in the input a bad row was (dropped when grouping reasons)."""


def error_kind(message: str | None) -> str:
    """A short, groupable reason from an error message (for the report): the text before the
    first ``;`` up to its second ``:``, with input positions (``line 5``) made ``line N`` so
    one cause groups once whichever rows it hit."""
    if not message:
        return "unknown"
    parts = message.split(";")[0].split(":", 2)
    return re.sub(POSITION, r"\1 N", ":".join(parts[:2]).strip())[:80]
