"""Retrieval-augmented QA as two LCEL runnables: ``retrieve`` then ``answer_from_docs``.

Why split: the task stage retrieves for a whole partition in one batched search
(``LakechainRetriever.retrieve_many``) and then runs only the LLM half with bounded
concurrency (``answer_from_docs(...).batch(items, config={"max_concurrency": n})``); a
notebook user just calls ``qa_chain(...).invoke("question")``. Both paths produce the same
result dict::

    {"question", "answer", "not_in_context", "citations": [n, ...],
     "sources": [{"ref", "chunk_id", "doc_id", "score", "snippet", "cited"}],
     "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}, "model",
     "grounded_share": float | None, "not_grounded": bool}

Grounding: the prompt allows only the numbered context and demands ``[n]`` citations; when
retrieval returns nothing above the score threshold the model is not called at all and the
answer is "Not in context." (no invented answer, zero tokens spent). With a
``grounding.GroundednessGuard`` every answer sentence is checked against the passages it
cites; without one ``grounded_share`` is ``None`` and ``not_grounded`` false.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.documents import Document
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from pydantic import BaseModel, Field, ValidationError

from lakechain.chains.errors import ContentFilterError, StructuredOutputError, wrap_provider_error
from lakechain.chains.grounding import NO_CLAIM, GroundednessGuard
from lakechain.chains.prompts import (
    NOT_IN_CONTEXT,
    cited_numbers,
    format_context,
    one_line,
    qa_prompt,
    says_not_in_context,
    strip_citations,
)
from lakechain.chains.usage import empty_usage, model_name_of, usage_from_message

SNIPPET_CHARS = 240
_SENTENCE_END = re.compile(r"(?<=[.!?\]])\s+(?=[\"'(A-Z0-9])")


class QAAnswer(BaseModel):
    """JSON schema asked of providers that support structured output."""

    answer: str = Field(description="The answer, citing passages as [n]; 'Not in context.' if unanswerable")
    citations: list[int] = Field(description="Numbers of the context passages the answer relies on")
    not_in_context: bool = Field(description="True when the passages do not contain the answer")


def chat_model_name(model: Any) -> str:
    for attr in ("model_name", "deployment_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def question_of(inputs: Any) -> str:
    """Accept ``"text"`` or ``{"question": "text"}``; anything else is a clear ``ValueError``."""
    q = inputs.get("question") if isinstance(inputs, dict) else inputs
    if not isinstance(q, str) or not q.strip():
        raise ValueError(f"qa input needs a non-empty 'question' string, got {inputs!r:.200}")
    return q.strip()


def sources_of(docs: list[Document], cited: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "ref": i,
            "chunk_id": str(d.metadata.get("chunk_id", "")),
            "doc_id": str(d.metadata.get("doc_id", "")),
            "score": float(d.metadata.get("score", 0.0)),
            "snippet": one_line(d.page_content)[:SNIPPET_CHARS],
            "cited": i in cited,
        }
        for i, d in enumerate(docs, start=1)
    ]


def not_in_context_result(question: str, docs: list[Document], model: str) -> dict[str, Any]:
    return {
        "question": question,
        "answer": NOT_IN_CONTEXT,
        "not_in_context": True,
        "citations": [],
        "sources": sources_of(docs, []),
        "usage": empty_usage(),
        "model": model,
        **NO_CLAIM,
    }


def tidy_answer(text: str, finish_reason: str | None) -> str:
    """Drop what a small model adds after its answer: sentences it already wrote (repetition
    loops) and, when the reply was cut at ``max_tokens``, the unfinished last sentence."""
    text = text.strip()
    sentences = _SENTENCE_END.split(text)  # a trailing [n] stays with the sentence it follows
    unfinished = not sentences[-1].endswith((".", "!", "?", "]"))
    cut = finish_reason == "length" and len(sentences) > 1 and unfinished
    if cut:
        sentences = sentences[:-1]
    seen: set[str] = set()
    kept = []
    for s in sentences:
        key = " ".join(strip_citations(s).lower().split())
        if key not in seen:
            seen.add(key)
            kept.append(s)
    return text if len(kept) == len(sentences) and not cut else " ".join(kept)


def qa_messages(question: str, docs: list[Document]) -> list[Any]:
    """The QA call's exact messages (also what its response-cache key is derived from)."""
    return qa_prompt.format_messages(context=format_context(docs), question=question)


def reply_of(raw: Any, default_model: str) -> dict[str, Any]:
    """A chat reply as the response cache stores it (``tasks.llm_cache.Reply``)."""
    usage = usage_from_message(raw)
    return {
        "response": str(raw.content),
        "finish_reason": (raw.response_metadata or {}).get("finish_reason"),
        "model": model_name_of(raw, default_model),
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
    }


def _cached_message(reply: dict[str, Any]) -> AIMessage:
    """A cached reply as the model's message: no usage, since no tokens were spent on it."""
    meta = {"finish_reason": reply.get("finish_reason"), "model_name": reply.get("model")}
    return AIMessage(content=str(reply["response"]), response_metadata=meta)


def _parsed_reply(raw: AIMessage) -> dict[str, Any]:
    """What ``with_structured_output(include_raw=True)`` returns, for a cached JSON reply."""
    try:
        return {"raw": raw, "parsed": QAAnswer.model_validate_json(str(raw.content)), "parsing_error": None}
    except ValidationError as exc:
        return {"raw": raw, "parsed": None, "parsing_error": exc}


def answer_from_docs(
    chat_model: BaseChatModel, *, structured: bool = False, guard: GroundednessGuard | None = None
) -> Runnable[dict, dict]:
    """Runnable ``{"question", "docs": [Document], "reply"?}`` → QA result dict (see module docstring).

    With ``reply`` (a cached reply to these exact messages, see ``tasks.llm_cache``) the model
    is not called and the reply is read as if it had just been returned; the result's
    ``reply`` is the model reply it was built from, for the cache.

    ``structured=True`` uses ``with_structured_output(QAAnswer, method="json_schema")``;
    only pass it for providers that support it (``chat_models.supports_structured_output``).
    Provider failures are raised as ``lakechain.chains.errors.ProviderError``.
    """
    name = chat_model_name(chat_model)
    what = f"chat model '{name}'"
    structured_model = (
        chat_model.with_structured_output(QAAnswer, method="json_schema", include_raw=True)
        if structured
        else None
    )

    def _answer(inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        question = question_of(inputs)
        docs = list(inputs.get("docs") or [])
        if not docs:
            return not_in_context_result(question, docs, name)
        messages = qa_messages(question, docs)
        cached = inputs.get("reply")
        out: dict[str, Any] = {}
        try:
            if cached is not None:
                raw = _cached_message(cached)
                out = _parsed_reply(raw) if structured_model is not None else {}
            elif structured_model is not None:
                reply = structured_model.invoke(messages, config)
                # include_raw=True: always {"raw", "parsed", "parsing_error"}, never a bare QAAnswer
                # (the signature cannot say so: its return type does not depend on include_raw).
                assert isinstance(reply, dict), type(reply)
                out = reply
                raw = out["raw"]
            else:
                raw = chat_model.invoke(messages, config)
        except (ValidationError, OutputParserException) as exc:
            # openai's structured parse validates inside the call: the reply is not the schema
            raise StructuredOutputError(f"{what}: reply does not match the QA schema: {exc}") from exc
        except Exception as exc:  # classified and re-raised
            raise wrap_provider_error(exc, what) from exc
        if (raw.response_metadata or {}).get("finish_reason") == "content_filter":
            raise ContentFilterError(f"{what}: the reply was withheld by the provider's content filter")
        if structured_model is not None:
            parsed = out.get("parsed")
            if parsed is None:
                raise StructuredOutputError(
                    f"{what}: reply does not match the QA schema: {out.get('parsing_error')}"
                )
            answer = parsed.answer.strip()
            cited = [n for n in dict.fromkeys(parsed.citations) if 1 <= n <= len(docs)] or cited_numbers(
                answer, len(docs)
            )
            missing = parsed.not_in_context or says_not_in_context(answer)
        else:
            answer = tidy_answer(str(raw.content), (raw.response_metadata or {}).get("finish_reason"))
            cited = cited_numbers(answer, len(docs))
            missing = says_not_in_context(answer)
        grounding = NO_CLAIM if guard is None or missing else guard.check(answer, docs)
        return {
            "question": question,
            "answer": answer,
            "not_in_context": bool(missing),
            "citations": [] if missing else cited,
            "sources": sources_of(docs, [] if missing else cited),
            "usage": usage_from_message(raw),
            "model": model_name_of(raw, name),
            "reply": reply_of(raw, name),
            **grounding,
        }

    return RunnableLambda(_answer, name="answer_from_docs")


def retrieve(retriever: Any) -> Runnable[Any, dict]:
    """Runnable ``"question" | {"question"}`` → ``{"question", "docs"}``."""

    def _retrieve(inputs: Any, config: RunnableConfig) -> dict[str, Any]:
        question = question_of(inputs)
        return {"question": question, "docs": retriever.invoke(question, config)}

    return RunnableLambda(_retrieve, name="retrieve")


def qa_chain(
    retriever: Any,
    chat_model: BaseChatModel,
    *,
    structured: bool = False,
    guard: GroundednessGuard | None = None,
) -> Runnable[Any, dict]:
    """question → retrieve → grounded, cited answer (``retrieve | answer_from_docs``)."""
    answer = answer_from_docs(chat_model, structured=structured, guard=guard)
    return (retrieve(retriever) | answer).with_config(run_name="lakechain_qa")
