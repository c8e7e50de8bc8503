"""Token buckets and the per-partition RPM/TPM limiter, on a fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from lakechain.tasks.ratelimit import RateLimiter, TokenBucket, concurrent_partitions


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_bucket_allows_a_burst_then_paces_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, capacity=3.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.acquire(1) == 0.0
    assert clock.now == 0.0
    for _ in range(4):
        bucket.acquire(1)
    assert clock.now == pytest.approx(2.0)  # 4 more at 2/s


def test_long_run_rate_matches_the_budget():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=120, tokens_per_minute=10**9, clock=clock, sleep=clock.sleep)
    for _ in range(200):
        limiter.acquire(0)
    # 120/min = 2/s with a burst of 2: 200 requests need ~99 s
    assert clock.now == pytest.approx((200 - 2) / 2.0, rel=1e-6)


def test_tokens_budget_and_settle():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=10**6, tokens_per_minute=6000, clock=clock, sleep=clock.sleep)
    limiter.acquire(100)  # burst covers 100 tokens
    assert clock.now == 0.0
    limiter.settle(estimated_tokens=100, actual_tokens=40)  # 60 refunded
    assert limiter.tokens.level == pytest.approx(60.0)
    limiter.acquire(100)  # needs 40 more at 100 tokens/s
    assert clock.now == pytest.approx(0.4)
    limiter.settle(estimated_tokens=100, actual_tokens=300)  # under-estimate charged later
    assert limiter.tokens.level == pytest.approx(-200.0)


def test_request_larger_than_capacity_waits_for_a_full_bucket_and_never_deadlocks():
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, capacity=10.0, clock=clock, sleep=clock.sleep)
    bucket.acquire(5)
    bucket.acquire(50)  # waits until full (0.5 s), then goes to -40
    assert clock.now == pytest.approx(0.5)
    assert bucket.level == pytest.approx(-40.0)
    bucket.acquire(1)
    assert clock.now == pytest.approx(0.5 + 4.1)


def test_share_splits_the_global_budget():
    clock = FakeClock()
    limiter = RateLimiter.share(600, 60_000, concurrent_partitions=4, clock=clock, sleep=clock.sleep)
    assert limiter.requests.rate == pytest.approx(600 / 4 / 60)
    assert limiter.tokens.rate == pytest.approx(60_000 / 4 / 60)
    assert (
        concurrent_partitions(16, 2) == 2
        and concurrent_partitions(1, 8) == 1
        and concurrent_partitions(0, 4) == 1
    )


def test_bucket_is_thread_safe_in_real_time():
    bucket = TokenBucket(rate=400.0, capacity=1.0)
    taken: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            bucket.acquire(1)
            with lock:
                taken.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 80
    # 80 tokens at 400/s with a burst of 1 cannot take less than ~79/400 s
    assert time.monotonic() - start >= 79 / 400 * 0.95
