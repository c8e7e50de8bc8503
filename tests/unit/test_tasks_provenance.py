"""Provenance parts and fingerprints, prices and the hard budget: pure, no Spark."""

from __future__ import annotations

import pytest
from langchain_core.prompts import ChatPromptTemplate

from lakechain.chains import prompts
from lakechain.config import ConfigError, load_settings
from lakechain.tasks.budget import Budget
from lakechain.tasks.pricing import DEFAULT_PRICES, FREE, Price, price_for, price_table, row_cost, unpriced
from lakechain.tasks.provenance import prompt_versions, row_provenance, run_parts


def parts(*overrides: str, checksum: str | None = "idx-1"):
    return run_parts(load_settings(None, list(overrides)), checksum)


def test_each_part_changes_only_with_its_own_settings():
    base = parts()
    model = parts("chat.temperature=0.7")
    retrieval = parts("retrieval.k=8")
    image = parts("images.size=256x256")
    assert model.chat_fp != base.chat_fp and model.retrieval_fp == base.retrieval_fp
    assert retrieval.retrieval_fp != base.retrieval_fp and retrieval.chat_fp == base.chat_fp
    assert image.image_fp != base.image_fp and image.chat_fp == base.chat_fp
    assert parts() == base  # deterministic across calls


def test_a_weight_the_mode_ignores_is_not_a_retrieval_change():
    dense = parts("retrieval.mode=dense")
    assert parts("retrieval.mode=dense", "retrieval.keyword_weight=3").retrieval_fp == dense.retrieval_fp
    assert parts("retrieval.keyword_weight=3").retrieval_fp != parts().retrieval_fp  # hybrid uses it


def test_an_edited_prompt_template_gets_a_new_version(monkeypatch):
    before = prompt_versions()
    edited = ChatPromptTemplate.from_messages(
        [("system", prompts.QA_SYSTEM + " Be brief."), ("human", prompts.QA_HUMAN)]
    )
    monkeypatch.setattr(prompts, "qa_prompt", edited)
    after = prompt_versions()
    assert after["qa_prompt"] != before["qa_prompt"]
    assert after["refine_prompt"] == before["refine_prompt"]


def test_a_row_records_only_the_parts_its_task_used():
    p = parts()
    qa = row_provenance(p, "h1", asks=True, draws=False, illustrates=False)
    image = row_provenance(p, "h1", asks=False, draws=True, illustrates=False)
    assert (qa["chat_fp"], qa["retrieval_fp"], qa["image_fp"]) == (p.chat_fp, p.retrieval_fp, None)
    assert (image["chat_fp"], image["prompt_fp"], image["retrieval_fp"]) == (None, None, None)
    refined = row_provenance(
        parts("images.refine_prompts=true"), "h1", asks=False, draws=True, illustrates=False
    )
    assert refined["chat_fp"] and refined["prompt_fp"]  # the chat model rewrote the image prompt


def test_the_fingerprint_covers_input_parts_and_index():
    p = parts()
    fp = row_provenance(p, "h1", asks=True, draws=False, illustrates=False)["fingerprint"]
    assert fp == row_provenance(parts(), "h1", asks=True, draws=False, illustrates=False)["fingerprint"]
    assert fp != row_provenance(p, "h2", asks=True, draws=False, illustrates=False)["fingerprint"]
    other_index = parts(checksum="idx-2")
    assert fp != row_provenance(other_index, "h1", asks=True, draws=False, illustrates=False)["fingerprint"]
    image_only = row_provenance(p, "h1", asks=False, draws=True, illustrates=False)["fingerprint"]
    assert (
        image_only
        == row_provenance(other_index, "h1", asks=False, draws=True, illustrates=False)["fingerprint"]
    )


def test_recompute_on_is_validated_and_takes_a_comma_list():
    s = load_settings(None, ["tasks.recompute_on=input,model,index,model"])
    assert s.tasks.recompute_on == ["input", "model", "index"]
    assert load_settings(None).tasks.recompute_on == ["input", "model", "prompt"]
    with pytest.raises(ConfigError, match=r"tasks\.recompute_on\.1: Input should be 'input', 'model'"):
        load_settings(None, ["tasks.recompute_on=input,models"])


def test_budget_keys_are_validated():
    with pytest.raises(ConfigError, match=r"tasks\.max_cost_usd: Input should be greater than 0"):
        load_settings(None, ["tasks.max_cost_usd=0"])
    with pytest.raises(ConfigError, match=r"prices\.m\.per_token: unknown key"):
        load_settings(None, ["prices.m.per_token=1"])


def test_prices_local_default_dated_and_configured():
    s = load_settings(
        None, ["chat.provider=openai", "chat.model=gpt-4o-mini-2024-07-18", "prices.my-llm.input_per_1m=3"]
    )
    table = price_table(s)
    assert price_for(s.chat, table) == DEFAULT_PRICES["gpt-4o-mini"]
    assert table["my-llm"] == Price(3.0, 0.0, 0.0)
    assert price_for(load_settings(None).chat, table) is FREE
    s.chat.model = "mystery"
    assert price_for(s.chat, table) is None and unpriced(s) == ["chat: mystery"]


def test_row_cost():
    gpt4o = DEFAULT_PRICES["gpt-4o"]
    assert row_cost(1_000_000, 100_000, 0, gpt4o, None) == pytest.approx(2.50 + 1.00)
    assert row_cost(0, 0, 2, None, Price(0, 0, 0.04)) == pytest.approx(0.08)
    assert row_cost(10, 5, 0, None, FREE) is None  # unknown, not zero


def test_budget_projects_the_next_batch_from_the_average_so_far():
    b = Budget(max_cost_usd=1.0)
    assert b.stop_reason(0.0, 0, 0, 100, 300) is None  # the first batch has no average: it runs
    assert b.stop_reason(0.4, 4000, 100, 100, 300) is None  # 0.4 + 0.4 = 0.8 ≤ 1.0
    why = b.stop_reason(0.6, 6000, 100, 100, 300)  # 0.6 + 0.6 > 1.0
    assert why is not None
    assert "spent $0.6000 and 6,000 tokens on 100 of 300 pending tasks" in why
    assert "about $1.2000 runs the other 200" in why and "--set tasks.max_cost_usd=" in why
    tokens = Budget(max_tokens=10_000).stop_reason(0.0, 6000, 100, 100, 300)
    assert tokens is not None and "over tasks.max_tokens=10000" in tokens
    assert not Budget().limited and Budget().stop_reason(9.0, 9, 1, 1, 3) is None


def test_an_executed_row_carries_its_provenance_and_cost():
    import dataclasses

    from lakechain.tasks.execute import TaskOutcome
    from lakechain.tasks.results import RunContext, outcome_row

    p = parts()
    ctx = RunContext("run-1", "gpt-4o", "m", "e", "idx-1", 1, p, DEFAULT_PRICES["gpt-4o"], FREE)
    out = TaskOutcome("t1", answer="A", qa_status="ok", prompt_tokens=1000, completion_tokens=100)
    task = {"task_id": "t1", "question": "Q?", "image_prompt": None, "illustrate": False, "input_hash": "h"}
    row = outcome_row(task, out, ctx)
    assert row["cost_usd"] == pytest.approx((1000 * 2.50 + 100 * 10.00) / 1e6)
    assert (
        row["fingerprint"] == row_provenance(p, "h", asks=True, draws=False, illustrates=False)["fingerprint"]
    )
    assert outcome_row(task, out, dataclasses.replace(ctx, chat_price=None))["cost_usd"] is None


def test_doc_weight_is_a_retrieval_change_only_in_hybrid_mode():
    dense = parts("retrieval.mode=dense")
    assert parts("retrieval.mode=dense", "retrieval.doc_weight=0").retrieval_fp == dense.retrieval_fp
    assert parts("retrieval.doc_weight=0").retrieval_fp != parts().retrieval_fp


def test_a_quantized_embedding_model_is_a_retrieval_change():
    assert parts("embedding.quantize=int8").retrieval_fp != parts().retrieval_fp
    assert parts("embedding.quantize=null").retrieval_fp == parts().retrieval_fp
