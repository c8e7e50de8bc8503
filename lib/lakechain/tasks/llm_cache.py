"""The response cache's pure half: when it is on, the key of a chat call, the cached reply.

Why a content key: a call's reply depends only on the provider, the model, the exact
messages and the parameters that shape the reply, so two calls that agree on all of them
(two rows asking the same question over the same passages, or a rerun) may share one reply.
At temperature 0 that reply is what the model would say again; above it the cache is off by
default (``tasks.cache: auto``), since sampling is what the user asked for.

What is cached: the QA answer call (its messages are known before the call, after the
partition's retrieval). The illustration prompt and the image are not: the first is written
from the answer, which is only known after the answer call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from lakechain.config import ChatConfig, Settings

KEY_VERSION = 1
"""Bumped when the key's recipe changes, so old entries are never matched by new calls."""


class Reply(TypedDict):
    """A chat model's reply as the cache stores it (``storage.schemas.LLM_REPLY_TYPE``)."""

    response: str
    finish_reason: str | None
    model: str
    prompt_tokens: int
    completion_tokens: int


def cache_enabled(settings: Settings) -> bool:
    """``tasks.cache``: ``on``/``off``, or ``auto``: on for a remote or llama.cpp chat model at
    temperature 0 (the local extractive model costs nothing to call again)."""
    mode = settings.tasks.cache
    if mode == "auto":
        return settings.chat.temperature == 0 and settings.chat.provider != "local"
    return mode == "on"


def call_params(cfg: ChatConfig) -> dict[str, Any]:
    """What besides the messages decides a chat reply: provider, model and reply parameters."""
    from lakechain.chains.chat_models import LLAMACPP_STOP, supports_structured_output
    from lakechain.chains.qa import QAAnswer

    structured = supports_structured_output(cfg)
    return {
        "provider": cfg.provider,
        "model": cfg.deployment or cfg.model,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "structured_output": QAAnswer.model_json_schema() if structured else None,
        "stop": LLAMACPP_STOP if cfg.provider == "llamacpp" and not structured else None,
    }


def message_pairs(messages: Sequence[Any]) -> list[list[str]]:
    """``[[role, content], ...]`` of LangChain messages (or of such pairs already)."""
    out = []
    for m in messages:
        role, content = (m.type, m.content) if hasattr(m, "type") else (m[0], m[1])
        out.append([str(role), content if isinstance(content, str) else json.dumps(content, sort_keys=True)])
    return out


def cache_key(params: Mapping[str, Any], messages: Sequence[Any]) -> str:
    """sha256 of the key version, ``params`` and the exact messages (roles and text)."""
    payload = {"v": KEY_VERSION, "params": dict(params), "messages": message_pairs(messages)}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
