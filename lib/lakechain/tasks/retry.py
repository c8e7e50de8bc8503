"""Retry policy for model calls (pure: the clock, sleep and randomness are injected).

Why: at thousands of calls per run, transient failures (429, 5xx, timeouts, garbled
bodies) are certain, and both retrying too eagerly (thundering herd, ignoring
``Retry-After``) and retrying the wrong things (a 400 never heals) cost money. Policy:

* exponential backoff with *full jitter*: wait ``uniform(0, min(max_s, base_s * 2**(n-1)))``
  after the n-th failed attempt, so synchronised workers spread out;
* a server's ``Retry-After`` replaces the jittered wait, capped at ``max_s`` so a
  hostile or buggy header cannot stall the run;
* at most ``max_attempts`` attempts in total; non-retryable errors (4xx other than
  408/409/429, content-filter refusals, our own bugs) fail at once.

The task stage is the only retry layer: provider clients are built with
``max_retries=0`` there (see ``worker.worker_settings``), otherwise each of our
attempts would hide up to ``1 + client.max_retries`` HTTP calls and the budgets, the
attempt counts and the backoff would all be wrong.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("backoff times must be non-negative")

    def delay(self, failed_attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(float(retry_after_s), self.max_s)
        ceiling = min(self.max_s, self.base_s * (2 ** (failed_attempt - 1)))
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class Classification:
    retryable: bool
    retry_after_s: float | None = None


def classify_error(exc: BaseException) -> Classification:
    """Default classifier: the chains' error taxonomy (status codes, timeouts, bodies)."""
    from lakechain.chains.errors import classify

    info = classify(exc)
    return Classification(info.retryable, info.retry_after_s)


@dataclass
class Attempted(Generic[T]):
    """A successful call's value and how many attempts it took."""

    value: T
    attempts: int


class RetryError(Exception):
    """The call failed for good; ``__cause__`` is the last error, ``attempts`` the count."""

    def __init__(self, message: str, attempts: int, retryable: bool) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    classify: Callable[[BaseException], Classification] = classify_error,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    what: str = "call",
) -> Attempted[T]:
    """Run ``fn`` until it succeeds, fails non-retryably, or runs out of attempts.

    Raises :class:`RetryError` (chained to the last exception) with a message naming
    ``what``, the attempt count and the cause. ``on_retry(attempt, exc, delay)`` is called
    before each wait (progress, metrics).
    """
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return Attempted(fn(), attempt)
        except Exception as exc:  # classified below; bugs are not retried
            c = classify(exc)
            cause = f"{type(exc).__name__}: {exc}"
            if not c.retryable:
                raise RetryError(f"{what} failed (not retryable): {cause}", attempt, False) from exc
            if attempt == policy.max_attempts:
                raise RetryError(f"{what} failed after {attempt} attempts: {cause}", attempt, True) from exc
            wait = policy.delay(attempt, c.retry_after_s, rng)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            if wait > 0:
                sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises
