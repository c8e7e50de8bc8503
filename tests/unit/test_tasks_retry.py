"""Retry policy: backoff with full jitter, Retry-After, caps, attempt limits, classification."""

from __future__ import annotations

import random

import httpx
import openai
import pytest

from lakechain.tasks.retry import Classification, RetryError, RetryPolicy, call_with_retry, classify_error


class Flaky:
    """Raises the given exceptions in order, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def status_error(
    status: int, headers: dict[str, str] | None = None, body: dict | None = None
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://test/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request, json=body or {})
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError, 400: openai.BadRequestError}.get(
        status, openai.APIStatusError
    )
    return cls(f"HTTP {status}", response=response, body=body)


def timeout_error() -> openai.APITimeoutError:
    return openai.APITimeoutError(request=httpx.Request("POST", "http://test/v1/chat/completions"))


def run(fn, policy, **kw):
    sleeps: list[float] = []
    out = call_with_retry(fn, policy, sleep=sleeps.append, rng=random.Random(1), **kw)
    return out, sleeps


def test_retry_after_is_honoured_instead_of_backoff():
    fn = Flaky(status_error(429, {"retry-after": "2.5"}), status_error(429, {"retry-after-ms": "300"}))
    out, sleeps = run(fn, RetryPolicy(max_attempts=5, base_s=0.01, max_s=10))
    assert (out.value, out.attempts, fn.calls) == ("done", 3, 3)
    assert sleeps == [2.5, 0.3]


def test_retry_after_is_capped_at_backoff_max():
    fn = Flaky(status_error(429, {"retry-after": "3600"}))
    _, sleeps = run(fn, RetryPolicy(max_attempts=3, base_s=0.1, max_s=4.0))
    assert sleeps == [4.0]


def test_backoff_is_full_jitter_under_an_exponential_cap():
    policy = RetryPolicy(max_attempts=10, base_s=1.0, max_s=8.0)
    rng = random.Random(7)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(400)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > 0.9 * cap and min(delays) < 0.1 * cap  # spread over [0, cap]


@pytest.mark.parametrize(
    "exc",
    [status_error(500), timeout_error(), status_error(408), httpx.ReadTimeout("slow")],
)
def test_transient_errors_are_retried_until_success(exc):
    fn = Flaky(exc, exc)
    out, sleeps = run(fn, RetryPolicy(max_attempts=3, base_s=0.5, max_s=1.0))
    assert out.attempts == 3 and len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)


@pytest.mark.parametrize(
    "exc",
    [
        status_error(400),
        status_error(401),
        status_error(404),
        status_error(400, body={"error": {"code": "content_filter", "message": "blocked"}}),
        ValueError("a bug in our code"),
    ],
)
def test_non_retryable_errors_fail_at_once(exc):
    fn = Flaky(exc)
    with pytest.raises(RetryError) as err:
        run(fn, RetryPolicy(max_attempts=5))
    assert fn.calls == 1 and err.value.attempts == 1 and not err.value.retryable
    assert "not retryable" in str(err.value) and err.value.__cause__ is exc


def test_content_filter_is_classified_not_retryable_even_with_a_retryable_status():
    exc = status_error(429, body={"error": {"code": "content_filter", "message": "blocked"}})
    assert classify_error(exc).retryable is False


def test_max_attempts_bounds_the_number_of_calls():
    fn = Flaky(*[status_error(500)] * 10)
    with pytest.raises(RetryError) as err:
        run(fn, RetryPolicy(max_attempts=4, base_s=0.0, max_s=0.0))
    assert fn.calls == 4 and err.value.attempts == 4 and err.value.retryable
    assert "after 4 attempts" in str(err.value)


def test_on_retry_sees_each_wait_and_custom_classifier():
    seen: list[tuple[int, float]] = []
    fn = Flaky(KeyError("x"), KeyError("y"))
    out, sleeps = run(
        fn,
        RetryPolicy(max_attempts=3, base_s=1.0, max_s=1.0),
        classify=lambda e: Classification(isinstance(e, KeyError), 0.25),
        on_retry=lambda n, e, d: seen.append((n, d)),
    )
    assert out.attempts == 3 and seen == [(1, 0.25), (2, 0.25)] and sleeps == [0.25, 0.25]


def test_policy_validates_its_arguments():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
