"""Token-usage bookkeeping shared by every chain.

Why: results tables carry ``prompt_tokens / completion_tokens / total_tokens`` per task so
cost can be queried in SQL, and multi-stage chains (refine → image, QA → image prompt →
image) must add up the usage of each model call they make.
"""

from __future__ import annotations

from typing import Any

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def empty_usage() -> dict[str, int]:
    return {k: 0 for k in USAGE_KEYS}


def count_tokens(text: str) -> int:
    """Whitespace token count: what the offline models report (honest and cheap)."""
    return len(text.split())


def usage_from_message(message: Any) -> dict[str, int]:
    """Usage of one chat reply (LangChain ``usage_metadata``; zeros when the provider gave none)."""
    meta = getattr(message, "usage_metadata", None) or {}
    prompt = int(meta.get("input_tokens") or 0)
    completion = int(meta.get("output_tokens") or 0)
    total = int(meta.get("total_tokens") or prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def usage_from_openai(usage: Any) -> dict[str, int]:
    """Usage object of a raw ``openai`` response (images API: input/output tokens)."""
    if usage is None:
        return empty_usage()
    get = usage.get if isinstance(usage, dict) else lambda k: getattr(usage, k, None)
    prompt = int(get("input_tokens") or get("prompt_tokens") or 0)
    completion = int(get("output_tokens") or get("completion_tokens") or 0)
    total = int(get("total_tokens") or prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def add_usage(*usages: dict[str, int] | None) -> dict[str, int]:
    """Sum usages key by key; extra keys (e.g. ``images``) are summed too."""
    out = empty_usage()
    for u in usages:
        for k, v in (u or {}).items():
            out[k] = out.get(k, 0) + int(v or 0)
    return out


def model_name_of(message: Any, default: str = "") -> str:
    meta = getattr(message, "response_metadata", None) or {}
    return str(meta.get("model_name") or meta.get("model") or default)
