"""Error classification: what the task stage retries and what it records as final."""

from __future__ import annotations

import email.utils
import json
import time

import httpx
import openai
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from lakechain.chains.errors import (
    ContentFilterError,
    MalformedResponseError,
    ProviderError,
    classify,
    is_retryable,
    parse_retry_after,
    wrap_provider_error,
)
from lakechain.chains.qa import answer_from_docs

URL = "http://127.0.0.1:1/v1/chat/completions"


def status_error(cls, status: int, headers=None, body=None):
    request = httpx.Request("POST", URL)
    response = httpx.Response(status, headers=headers or {}, request=request)
    return cls(f"Error code: {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "kind", "retryable", "status"),
    [
        (status_error(openai.RateLimitError, 429, {"retry-after": "2"}), "rate_limit", True, 429),
        (status_error(openai.InternalServerError, 503), "server", True, 503),
        (status_error(openai.APIStatusError, 408), "timeout", True, 408),
        (status_error(openai.BadRequestError, 400), "bad_request", False, 400),
        (status_error(openai.UnprocessableEntityError, 422), "bad_request", False, 422),
        (status_error(openai.AuthenticationError, 401), "auth", False, 401),
        (status_error(openai.NotFoundError, 404), "not_found", False, 404),
        (
            status_error(
                openai.BadRequestError, 400, body={"error": {"code": "content_filter", "message": "x"}}
            ),
            "content_filter",
            False,
            400,
        ),
        (
            status_error(openai.BadRequestError, 400, body={"code": "content_policy_violation"}),
            "content_filter",
            False,
            400,
        ),
        (openai.APITimeoutError(httpx.Request("POST", URL)), "timeout", True, None),
        (openai.APIConnectionError(request=httpx.Request("POST", URL)), "connection", True, None),
        (httpx.ReadTimeout("slow"), "timeout", True, None),
        (json.JSONDecodeError("Expecting value", "{", 1), "malformed", True, None),
        (TimeoutError("stuck"), "timeout", True, None),
        (KeyError("bug"), "other", False, None),
    ],
)
def test_classify(exc, kind, retryable, status):
    info = classify(exc)
    assert (info.kind, info.retryable, info.status) == (kind, retryable, status)
    assert is_retryable(exc) is retryable


def test_retry_after_from_headers():
    err = status_error(openai.RateLimitError, 429, {"retry-after": "2"})
    assert classify(err).retry_after_s == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(httpx.Headers({"retry-after": future})) <= 31
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "soon", "retry-after": "3"})) == 3.0
    assert parse_retry_after(None) is None


def test_wrap_names_the_call_and_keeps_the_cause():
    cause = status_error(openai.RateLimitError, 429, {"retry-after": "1.5"})
    wrapped = wrap_provider_error(cause, "chat model 'gpt-x'")
    assert isinstance(wrapped, ProviderError) and wrapped.retryable and wrapped.retry_after_s == 1.5
    assert str(wrapped).startswith("chat model 'gpt-x' failed: rate limit (HTTP 429, retry after 1.5s)")
    assert isinstance(wrap_provider_error(json.JSONDecodeError("x", "{", 0), "m"), MalformedResponseError)
    assert isinstance(
        wrap_provider_error(status_error(openai.BadRequestError, 400, body={"code": "content_filter"}), "m"),
        ContentFilterError,
    )
    bug = KeyError("ours")
    assert wrap_provider_error(bug, "m") is bug  # our own bugs are not disguised as provider errors


def test_unknown_wrapper_is_classified_by_its_cause():
    try:
        try:
            raise status_error(openai.InternalServerError, 502)
        except openai.InternalServerError as inner:
            raise RuntimeError("wrapped by someone") from inner
    except RuntimeError as outer:
        assert classify(outer).kind == "server" and is_retryable(outer)


def test_content_filtered_reply_is_a_non_retryable_error():
    reply = AIMessage("", response_metadata={"finish_reason": "content_filter", "model_name": "m"})
    model = GenericFakeChatModel(messages=iter([reply]))
    from langchain_core.documents import Document

    docs = [Document("Some passage.", metadata={"chunk_id": "c", "doc_id": "d", "score": 0.9})]
    with pytest.raises(ContentFilterError) as err:
        answer_from_docs(model).invoke({"question": "q?", "docs": docs})
    assert not is_retryable(err.value)
