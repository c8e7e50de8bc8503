"""Prompt templates and the context format every chat model (remote or local) sees.

Why a fixed, parseable format: the answer must be grounded and auditable, so the model is
given numbered passages (``[1] …``, one passage per line) and told to cite them; the
offline extractive model (``local_chat``) reads the very same messages, so the format and
the task markers below are part of its contract.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate

NOT_IN_CONTEXT = "Not in context."
"""What a model must reply when the context does not answer the question."""

QA_SYSTEM = (
    "You answer questions using only the numbered context passages you are given. "
    "Cite every statement with the number of the passage that supports it, like [1] or [2]. "
    f"If the passages do not contain the answer, reply exactly: {NOT_IN_CONTEXT} "
    "Never use outside knowledge and never invent sources."
)
QA_HUMAN = (
    "Context:\n{context}\n\nQuestion: {question}\n"
    "Answer in one to three sentences from the context, each ending with its passage number like [1]."
)
"""The closing reminder is for small local models, which follow the last line best."""

IMAGE_TASK_MARKER = "You write prompts for an image model."
"""First sentence of every image-prompt instruction; the local model keys on it."""

IMAGE_FROM_ANSWER_SYSTEM = (
    f"{IMAGE_TASK_MARKER} Given a question and its answer, describe one concrete scene that "
    "illustrates the answer: what is shown, where, and in which visual style (at most 60 words). "
    "Do not repeat or quote the question or the answer; describe a picture instead. Reply with "
    "the scene description only, without citation markers."
)
IMAGE_FROM_ANSWER_HUMAN = "Question: {question}\nAnswer: {answer}"

REFINE_SYSTEM = (
    f"{IMAGE_TASK_MARKER} Rewrite the user's request as one detailed image prompt "
    "(subject, setting, composition, style, lighting; at most 80 words). Keep every element "
    "the user asked for. Reply with the prompt only."
)
REFINE_HUMAN = "Request: {prompt}"

qa_prompt = ChatPromptTemplate.from_messages([("system", QA_SYSTEM), ("human", QA_HUMAN)])
image_from_answer_prompt = ChatPromptTemplate.from_messages(
    [("system", IMAGE_FROM_ANSWER_SYSTEM), ("human", IMAGE_FROM_ANSWER_HUMAN)]
)
refine_prompt = ChatPromptTemplate.from_messages([("system", REFINE_SYSTEM), ("human", REFINE_HUMAN)])

_CITATION = re.compile(r"\[(\d{1,3})\]")
_NOT_IN_CONTEXT = re.compile(r"^\W*not in (the )?context\b", re.I)


def one_line(text: str) -> str:
    """Collapse whitespace so a passage is exactly one line (keeps ``[n]`` parsing unambiguous)."""
    return " ".join(text.split())


def format_context(docs: Sequence[Document]) -> str:
    """``[1] first passage\\n[2] second passage`` (numbering starts at 1)."""
    return "\n".join(f"[{i}] {one_line(d.page_content)}" for i, d in enumerate(docs, start=1))


def cited_numbers(answer: str, n_sources: int) -> list[int]:
    """Distinct citation numbers in order of first use, limited to existing sources."""
    seen: list[int] = []
    for m in _CITATION.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= n_sources and n not in seen:
            seen.append(n)
    return seen


def strip_citations(text: str) -> str:
    return one_line(_CITATION.sub("", text)).replace(" .", ".").replace(" ,", ",")


def says_not_in_context(answer: str) -> bool:
    return bool(_NOT_IN_CONTEXT.match(answer.strip()))
