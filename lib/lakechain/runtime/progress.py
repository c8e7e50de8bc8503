"""A small progress line for long Spark jobs: "done/total, rate, ETA" on stderr.

Why a polling thread: the driver blocks inside the Spark action; a daemon thread reads a
counter (a Spark accumulator, updated as tasks finish) and prints at most every
``interval_s`` seconds, so a multi-hour embed run shows it is alive without flooding logs.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def format_progress(label: str, done: int, total: int, elapsed_s: float) -> str:
    """``embed: 1200/5000 chunks (24.0%) 85.3/s ETA 44s`` (ETA unknown until something is done)."""
    pct = 100.0 * done / total if total else 100.0
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = format_duration((total - done) / rate) if rate > 0 and total >= done else "?"
    return f"{label}: {done}/{total} ({pct:.1f}%) {rate:.1f}/s elapsed {format_duration(elapsed_s)} ETA {eta}"


class ProgressReporter:
    """Print ``format_progress`` lines from a daemon thread while a job runs.

    ``done_fn`` returns the count so far (e.g. ``lambda: acc.value``). Use as a context
    manager around the blocking action; a final line is printed on exit.
    """

    def __init__(
        self,
        label: str,
        total: int,
        done_fn: Callable[[], int],
        interval_s: float = 5.0,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.done_fn = done_fn
        self.interval_s = interval_s
        self.stream = stream
        self.enabled = enabled and total > 0
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _emit(self) -> None:
        try:
            done = int(self.done_fn())
        except Exception:  # a counter that cannot be read must not kill the job
            return
        line = format_progress(self.label, done, self.total, time.monotonic() - self._t0)
        self.lines.append(line)
        print(line, file=self.stream or sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._emit()

    def __enter__(self) -> ProgressReporter:
        self._t0 = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name=f"progress-{self.label}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1)
            self._emit()
