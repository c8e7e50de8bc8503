"""The one step timer: ``with timer.step("embed"): ...`` adds the seconds under that name.

Reports print these, so a slow run says which step was slow.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = round(self.steps.get(name, 0.0) + time.perf_counter() - t, 3)

    @property
    def elapsed(self) -> float:
        return round(time.perf_counter() - self.start, 3)
