"""The one progress printer: ``label: done/total (pct) rate/s elapsed ETA [extra]`` on stderr.

Why driver-side counts: stages commit in batches, and after each batch the driver knows
exactly what was done from the batch's own summary row. That works the same on a classic
session and on Spark Connect, which has no SparkContext (so no Accumulators either).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def format_progress(label: str, done: int, total: int, elapsed_s: float, extra: str = "") -> str:
    """``embed: 1200/5000 (24.0%) 85.3/s elapsed 14s ETA 44s`` (ETA unknown until something is done)."""
    pct = 100.0 * done / total if total else 100.0
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    remaining = max(0, total - done)
    eta = "0s" if not remaining else format_duration(remaining / rate) if rate > 0 else "?"
    tail = f", {extra}" if extra else ""
    return (
        f"{label}: {done}/{total} ({pct:.1f}%) {rate:.1f}/s elapsed {format_duration(elapsed_s)} "
        f"ETA {eta}{tail}"
    )


class Progress:
    """Counts work as batches finish and prints one line per update."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.lines: list[str] = []
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self.enabled = enabled and total > 0

    def update(self, done: int, extra: str = "") -> str:
        """Add ``done`` finished items; returns (and prints, when enabled) the line."""
        self.done += done
        line = format_progress(self.label, self.done, self.total, self._clock() - self._start, extra)
        self.lines.append(line)
        if self.enabled:
            print(line, file=self._stream or sys.stderr, flush=True)
        return line
