"""The estimate's projection math and prompt token counting (pure)."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from lakechain.tasks.estimate import PilotStats, Workload, chat_prompt_tokens, project, spread
from lakechain.tasks.pricing import Price

PILOT = PilotStats(tasks=25, chat_tasks=25, completion_mean=100.0, completion_sd=50.0,
                   latency_mean_s=2.0, latency_sd_s=1.0)  # fmt: skip
WORK = Workload(tasks=1000, chat_tasks=800, prompt_tokens=400_000, image_calls=10)


def test_spread_is_two_standard_errors_of_the_mean():
    assert spread(100.0, 50.0, 25) == (80.0, 120.0)
    assert spread(5.0, 50.0, 25) == (0.0, 25.0)  # never below zero
    assert spread(7.0, 0.0, 1) == (7.0, 7.0)


def test_completion_tokens_scale_the_pilot_mean_to_the_calling_tasks():
    e = project(1025, PILOT, WORK, Price(1.0, 2.0), Price(0.0, 0.0, 0.04), 1000, 10**6, 10**9)
    assert (e.prompt_tokens, e.completion_tokens) == (400_000, 80_000)
    assert (e.completion_tokens_low, e.completion_tokens_high) == (64_000, 96_000)
    assert (e.pending, e.pilot_tasks, e.remaining) == (1025, 25, 1000)


def test_cost_prices_prompt_completion_and_images_with_a_range():
    e = project(1025, PILOT, WORK, Price(1.0, 2.0), Price(0.0, 0.0, 0.04), 1000, 10**6, 10**9)
    assert e.cost_usd == pytest.approx(0.4 + 0.16 + 0.4)
    assert e.cost_usd_low == pytest.approx(0.4 + 0.128 + 0.4)
    assert e.cost_usd_high == pytest.approx(0.4 + 0.192 + 0.4)


def test_an_unpriced_remote_model_gives_an_unknown_cost():
    e = project(1025, PILOT, WORK, None, Price(0.0, 0.0, 0.04), 1000, 10**6, 10**9)
    assert (e.cost_usd, e.cost_usd_low, e.cost_usd_high) == (None, None, None)


def test_wall_time_is_concurrency_bound_when_the_budgets_are_loose():
    e = project(1025, PILOT, WORK, None, None, 8, 10**6, 10**9)
    assert e.bound_by == "concurrency"
    assert e.wall_s == pytest.approx(1000 * 2.0 / 8)
    assert (e.wall_s_low, e.wall_s_high) == pytest.approx((1000 * 1.6 / 8, 1000 * 2.4 / 8))


def test_wall_time_follows_the_tightest_budget():
    by_rpm = project(1025, PILOT, WORK, None, None, 1000, 60, 10**9)
    assert by_rpm.bound_by == "requests_per_minute" and by_rpm.wall_s == pytest.approx(810 * 60 / 60)
    by_tpm = project(1025, PILOT, WORK, None, None, 1000, 10**6, 48_000)
    assert by_tpm.bound_by == "tokens_per_minute"
    assert by_tpm.wall_s == pytest.approx(60 * 480_000 / 48_000)
    assert by_tpm.wall_s_low < by_tpm.wall_s < by_tpm.wall_s_high  # the completion range moves it


def test_openai_prompt_tokens_are_tiktoken_plus_the_message_overhead():
    import tiktoken

    from lakechain.embed.chunking import ensure_tiktoken_offline

    ensure_tiktoken_offline()
    enc = tiktoken.get_encoding("cl100k_base")
    msgs = [SystemMessage("Answer from the context."), HumanMessage("What is Delta Lake?")]
    expected = 3 + sum(
        3 + len(enc.encode(r)) + len(enc.encode(m.content))
        for r, m in zip(["system", "user"], msgs, strict=True)
    )
    assert chat_prompt_tokens(msgs, "gpt-4") == expected  # gpt-4 is cl100k_base
    assert chat_prompt_tokens(msgs, "no-such-model") == expected  # unknown: the cl100k fallback
    as_dicts = [{"role": "system", "content": msgs[0].content}, {"role": "user", "content": msgs[1].content}]
    assert chat_prompt_tokens(as_dicts, "gpt-4") == expected  # a request body's messages count alike


def test_local_providers_count_as_their_usage_reports():
    msgs = [SystemMessage("one two"), HumanMessage("three four five")]
    assert chat_prompt_tokens(msgs, "tiny", provider="local") == 5
    assert chat_prompt_tokens(msgs, "tiny", provider="llamacpp") == 5


def test_the_pilots_spark_overhead_is_added_per_commit_batch():
    calls = project(1025, PILOT, WORK, None, None, 8, 10**6, 10**9)
    e = project(1025, PILOT, WORK, None, None, 8, 10**6, 10**9, batch_overhead_s=10.0, batches=3)
    assert (e.wall_s, e.wall_s_high) == pytest.approx((calls.wall_s + 30, calls.wall_s_high + 30))
    assert e.wall_s_low == pytest.approx(calls.wall_s_low + 10)  # later batches find models loaded
