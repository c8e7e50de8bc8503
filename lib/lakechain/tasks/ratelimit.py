"""Thread-safe token buckets for requests-per-minute and tokens-per-minute budgets (pure).

Why: provider quotas are global (per key / deployment) while calls are made by many
threads in many Spark partitions at once. Each partition gets an equal share of the
global budget (``budget / partitions running at once``) and enforces it locally with two
buckets, so no coordination between executors is needed and the cluster as a whole
stays under the quota. Clock and sleep are injected so tests run on a fake clock.

Token counts are not known before a call: a caller acquires an *estimate* up front and
:meth:`RateLimiter.settle` corrects the bucket with the real usage afterwards (a bucket
may go negative, which simply delays later callers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` units per second, holding at most ``capacity`` (the allowed burst)."""

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._level = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def level(self) -> float:
        with self._lock:
            self._refill()
            return self._level

    def try_acquire(self, n: float) -> float:
        """Take ``n`` units now and return 0.0, or take nothing and return seconds to wait.

        A request larger than the capacity is let through once the bucket is full (it
        then goes negative) so an oversized call is throttled, never deadlocked.
        """
        with self._lock:
            self._refill()
            need = min(float(n), self.capacity)
            if self._level >= need:
                self._level -= float(n)
                return 0.0
            return (need - self._level) / self.rate

    def acquire(self, n: float = 1.0) -> float:
        """Block until ``n`` units are taken; returns the seconds spent waiting."""
        if n <= 0:
            return 0.0
        waited = 0.0
        while True:
            wait = self.try_acquire(n)
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def adjust(self, delta: float) -> None:
        """Give back (``delta > 0``) or charge (``delta < 0``) units after the fact."""
        with self._lock:
            self._refill()
            self._level = min(self.capacity, self._level + float(delta))


class RateLimiter:
    """A partition's share of the global RPM and TPM budgets."""

    def __init__(
        self,
        requests_per_minute: float,
        tokens_per_minute: float,
        *,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        rps, tps = requests_per_minute / 60.0, tokens_per_minute / 60.0
        self.requests = TokenBucket(rps, max(1.0, rps * burst_s), clock=clock, sleep=sleep)
        self.tokens = TokenBucket(tps, max(1.0, tps * burst_s), clock=clock, sleep=sleep)

    @classmethod
    def share(
        cls,
        requests_per_minute: float,
        tokens_per_minute: float,
        concurrent_partitions: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RateLimiter:
        """One partition's equal share when ``concurrent_partitions`` run at the same time."""
        n = max(1, int(concurrent_partitions))
        return cls(requests_per_minute / n, tokens_per_minute / n, clock=clock, sleep=sleep)

    def acquire(self, estimated_tokens: int = 0) -> float:
        """Wait for one request slot and ``estimated_tokens``; returns seconds waited."""
        waited = self.requests.acquire(1)
        if estimated_tokens > 0:
            waited += self.tokens.acquire(estimated_tokens)
        return waited

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Correct the token bucket once a call's real usage is known."""
        if actual_tokens >= 0 and actual_tokens != estimated_tokens:
            self.tokens.adjust(estimated_tokens - actual_tokens)


def concurrent_partitions(num_partitions: int, parallelism: int) -> int:
    """Partitions that can run at once: the budget divisor."""
    return max(1, min(int(num_partitions), int(parallelism)))
