"""Response-cache key derivation and when the cache is on (pure: no Spark, no model)."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from lakechain.chains.chat_models import LLAMACPP_STOP
from lakechain.config import ChatConfig, Settings
from lakechain.tasks.llm_cache import cache_enabled, cache_key, call_params

MESSAGES = [SystemMessage("Answer from the context."), HumanMessage("Context: [1] x\nQuestion: q?")]


def chat(**kw) -> ChatConfig:
    return ChatConfig(**{"provider": "openai", "model": "gpt-4o-mini", **kw})


def test_identical_calls_share_a_key_and_messages_as_pairs_match_message_objects():
    key = cache_key(call_params(chat()), MESSAGES)
    assert key == cache_key(call_params(chat()), list(MESSAGES))
    pairs = [("system", MESSAGES[0].content), ("human", MESSAGES[1].content)]
    assert key == cache_key(call_params(chat()), pairs)
    assert len(key) == 64 and int(key, 16) >= 0


def test_the_key_ignores_the_order_of_parameters():
    params = call_params(chat())
    assert cache_key(params, MESSAGES) == cache_key(dict(reversed(list(params.items()))), MESSAGES)


@pytest.mark.parametrize(
    "change",
    [
        {"provider": "azure_openai", "deployment": "gpt-4o-mini"},
        {"model": "gpt-4o"},
        {"temperature": 0.2},
        {"max_tokens": 99},
        {"structured_output": True},
    ],
)
def test_each_reply_parameter_changes_the_key(change):
    assert cache_key(call_params(chat(**change)), MESSAGES) != cache_key(call_params(chat()), MESSAGES)


def test_the_exact_messages_change_the_key():
    base = cache_key(call_params(chat()), MESSAGES)
    edited = [MESSAGES[0], HumanMessage(MESSAGES[1].content + " ")]
    swapped_roles = [HumanMessage(MESSAGES[0].content), SystemMessage(MESSAGES[1].content)]
    assert base != cache_key(call_params(chat()), edited)
    assert base != cache_key(call_params(chat()), swapped_roles)
    assert base != cache_key(call_params(chat()), MESSAGES[:1])


def test_params_name_the_structured_schema_and_llamacpp_stops_only_where_they_apply():
    assert call_params(chat())["structured_output"] is None
    assert "answer" in call_params(chat(structured_output=True))["structured_output"]["properties"]
    assert call_params(chat(provider="local", structured_output=True))["structured_output"] is None
    assert call_params(chat(provider="llamacpp"))["stop"] == LLAMACPP_STOP
    assert call_params(chat(provider="llamacpp", structured_output=True))["stop"] is None


@pytest.mark.parametrize(
    ("mode", "provider", "temperature", "on"),
    [
        ("auto", "openai", 0.0, True),
        ("auto", "llamacpp", 0.0, True),
        ("auto", "openai", 0.7, False),
        ("auto", "local", 0.0, False),
        ("on", "openai", 0.7, True),
        ("off", "openai", 0.0, False),
    ],
)
def test_auto_caches_deterministic_paid_calls(mode, provider, temperature, on):
    s = Settings()
    s.tasks.cache, s.chat.provider, s.chat.temperature = mode, provider, temperature
    assert cache_enabled(s) is on
