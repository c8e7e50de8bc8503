"""The hard budget of a run (``tasks.max_cost_usd`` / ``tasks.max_tokens``), checked between batches (pure).

Why at commit boundaries, projected: a batch runs as one Spark job and is committed whole,
so the only clean place to stop is before the next one starts. Its spend is projected from
this run's average per task so far; the first batch has no average and always runs
(``tasks.commit_every`` bounds how far it can overshoot).
"""

from __future__ import annotations

from dataclasses import dataclass

from lakechain.config import Settings


@dataclass(frozen=True)
class Budget:
    max_cost_usd: float | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> Budget:
        return cls(settings.tasks.max_cost_usd, settings.tasks.max_tokens)

    @property
    def limited(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens is not None

    def stop_reason(self, cost_usd: float, tokens: int, done: int, next_n: int, pending: int) -> str | None:
        """Why the next ``next_n`` tasks must not start (None: go on); ``done`` of ``pending``
        tasks have run so far at ``cost_usd`` and ``tokens``."""
        if not done or not next_n:
            return None
        spent = f"spent ${cost_usd:.4f} and {tokens:,} tokens on {done:,} of {pending:,} pending tasks"
        for key, limit, used, fmt in (
            ("tasks.max_cost_usd", self.max_cost_usd, cost_usd, "${:.4f}"),
            ("tasks.max_tokens", self.max_tokens, tokens, "{:,.0f}"),
        ):
            if limit is None:
                continue
            projected = used + used / done * next_n
            if projected > limit:
                rest = used / done * (pending - done)
                return (
                    f"budget reached: {spent}; the next {next_n:,} would bring it to about "
                    f"{fmt.format(projected)}, over {key}={limit:g}. The committed results are kept; "
                    f"resume with a larger budget (about {fmt.format(rest)} runs the other "
                    f"{pending - done:,}): lakechain run-tasks --set {key}=<budget>"
                )
        return None
