"""Classify model-call failures so callers can decide whether to retry.

Why: the task stage runs thousands of calls and owns its retry policy (attempts, backoff,
rate limits). It needs one question answered for any exception a chain raises: *is this
worth another attempt, and how long does the server want us to wait?* Provider clients
raise many exception types (openai, httpx, json); this module folds them into
:class:`ErrorInfo` and wraps them in :class:`ProviderError` with a message that names the
model and the cause.

Policy: 429, 408/409, 5xx, timeouts, connection failures and truncated/garbled bodies are
retryable; every other 4xx (bad request, auth, not found, …) and content-filter refusals
are not.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
from dataclasses import dataclass
from typing import Any


def _raised_by(exc: BaseException, package: str) -> Any:
    """``package`` (openai, httpx) when ``exc`` is one of its types, else None. It is taken
    from ``sys.modules``, never imported: the client that raised the error imported it (a
    first import racing in several worker threads fails with "partially initialized
    module"), and local models (``lakechain ask``) never pay the ~1 s openai import."""
    if any(c.__module__.split(".")[0] == package for c in type(exc).__mro__):
        return sys.modules.get(package)
    return None


RETRYABLE_STATUS = frozenset({408, 409, 429})
CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "moderation_blocked"})


@dataclass(frozen=True)
class ErrorInfo:
    """What a caller needs to know about a failure."""

    kind: str
    """rate_limit | server | timeout | connection | malformed | bad_output | content_filter |
    bad_request | auth | not_found | other"""
    retryable: bool
    status: int | None = None
    retry_after_s: float | None = None
    message: str = ""


class ChainError(Exception):
    """Base class of every error raised by ``lakechain.chains``."""


class ProviderError(ChainError):
    """A model call failed; ``info`` says whether it is worth retrying."""

    def __init__(self, message: str, info: ErrorInfo) -> None:
        super().__init__(message)
        self.info = info

    @property
    def retryable(self) -> bool:
        return self.info.retryable

    @property
    def status(self) -> int | None:
        return self.info.status

    @property
    def retry_after_s(self) -> float | None:
        return self.info.retry_after_s


class MalformedResponseError(ProviderError):
    """The server answered with a body that is not what the API promises (bad JSON, no PNG…)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, ErrorInfo("malformed", True, status, None, message))


class StructuredOutputError(ProviderError):
    """The model's reply does not match the requested JSON schema (retrying rarely helps)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorInfo("bad_output", False, None, None, message))


class ContentFilterError(ProviderError):
    """The provider refused the request or truncated the reply on content-policy grounds."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, ErrorInfo("content_filter", False, status, None, message))


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        raw = headers.get("retry-after")
    except AttributeError:
        return None
    if ms is not None:
        try:  # a garbled header must not turn a retryable 429 into a crash of the classifier
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_code(exc: Any) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            code = err.get("code") or err.get("type")
            inner = err.get("innererror")
            if isinstance(inner, dict) and inner.get("code"):
                code = inner.get("code")
            return str(code) if code else None
    return getattr(exc, "code", None)


def _status_kind(status: int) -> tuple[str, bool]:
    if status == 429:
        return "rate_limit", True
    if status >= 500:
        return "server", True
    if status in RETRYABLE_STATUS:
        return "timeout" if status == 408 else "server", True
    if status in (401, 403):
        return "auth", False
    if status == 404:
        return "not_found", False
    return "bad_request", False


def classify(exc: BaseException) -> ErrorInfo:
    """Classify any exception; follows ``__cause__`` through wrappers we do not know."""
    if isinstance(exc, ProviderError):
        return exc.info
    msg = str(exc) or type(exc).__name__
    openai = _raised_by(exc, "openai")
    httpx = _raised_by(exc, "httpx")
    if openai is not None:
        if isinstance(exc, openai.APITimeoutError):
            return ErrorInfo("timeout", True, None, None, msg)
        if isinstance(exc, openai.APIConnectionError):
            return ErrorInfo("connection", True, None, None, msg)
        if isinstance(exc, openai.ContentFilterFinishReasonError):
            return ErrorInfo("content_filter", False, None, None, msg)
        if isinstance(exc, openai.APIStatusError):
            status = int(exc.status_code)
            retry_after = parse_retry_after(getattr(exc.response, "headers", None))
            code = _body_code(exc)
            if code in CONTENT_FILTER_CODES:
                return ErrorInfo("content_filter", False, status, None, msg)
            kind, retryable = _status_kind(status)
            return ErrorInfo(kind, retryable, status, retry_after, msg)
        if isinstance(exc, openai.APIResponseValidationError):
            return ErrorInfo("malformed", True, getattr(exc, "status_code", None), None, msg)
    if httpx is not None:
        if isinstance(exc, httpx.TimeoutException):
            return ErrorInfo("timeout", True, None, None, msg)
        if isinstance(exc, httpx.TransportError):
            return ErrorInfo("connection", True, None, None, msg)
    if isinstance(exc, TimeoutError):
        return ErrorInfo("timeout", True, None, None, msg)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return ErrorInfo("malformed", True, None, None, msg)
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        inner = classify(exc.__cause__)
        if inner.kind != "other":
            return inner
    return ErrorInfo("other", False, None, None, msg)


def is_retryable(exc: BaseException) -> bool:
    """True when another attempt of the same call may succeed."""
    return classify(exc).retryable


def wrap_provider_error(exc: BaseException, what: str) -> BaseException:
    """Turn a client exception into a :class:`ProviderError` naming ``what`` failed.

    Exceptions that are not provider failures (our own bugs) are returned unchanged so
    they surface as themselves.
    """
    if isinstance(exc, ProviderError):
        return exc
    info = classify(exc)
    if info.kind == "other":
        return exc
    facts = [f"HTTP {info.status}"] if info.status is not None else []
    if info.retry_after_s is not None:
        facts.append(f"retry after {info.retry_after_s:g}s")
    detail = info.kind.replace("_", " ") + (f" ({', '.join(facts)})" if facts else "")
    text = f"{what} failed: {detail}: {info.message}"
    if info.kind == "malformed":
        text = f"{what} failed: the server sent a malformed response body ({info.message})"
        return MalformedResponseError(text, info.status)
    if info.kind == "content_filter":
        return ContentFilterError(text, info.status)
    return ProviderError(text, info)
