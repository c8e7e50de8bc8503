"""Sentence-level groundedness of a generated answer, and echo detection for image prompts.

Why: a small local model answers in fluent sentences, some of which are not in the context
it was given. The prompt asks it to keep to the numbered passages; this guard checks that it
did, with the embedding model the pipeline has already loaded: every answer sentence is
compared with the sentences of the passages it cites (its own ``[n]`` markers, else the
answer's, else every passage when the answer cites none; a sentence citing only passages
that do not exist is unsupported) and counts as supported when its best cosine similarity
reaches ``min_similarity``. The QA result records the supported share
and flags the answer ``not_grounded`` below ``min_share``; the answer itself is left as the
model wrote it, so the row shows what the model said and how far to trust it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from langchain_core.documents import Document

from lakechain.chains.local_chat import split_sentences
from lakechain.chains.prompts import cited_numbers, says_not_in_context, strip_citations


class Grounding(TypedDict):
    grounded_share: float | None
    """Supported sentences / sentences; ``None`` when there is no claim to check."""
    not_grounded: bool


NO_CLAIM: Grounding = {"grounded_share": None, "not_grounded": False}


def answer_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, the ``[n]`` it cites) for each sentence of ``answer``.

    A marker written after the full stop (``... platform. [1]``) belongs to the sentence it
    follows, which is how both the extractive model and most LLMs place it.
    """
    text = re.sub(r"\s*((?:\[\d{1,3}\]\s*)+)", lambda m: " " + m.group(1).replace(" ", "") + " ", answer)
    text = re.sub(r"([.!?])\s+((?:\[\d{1,3}\])+)", r"\2\1", text)  # "x. [1]" → "x[1]."
    out = []
    for sentence in split_sentences(text):
        cited = [int(n) for n in re.findall(r"\[(\d{1,3})\]", sentence)]
        body = strip_citations(sentence)
        if len(body.split()) >= 2:
            out.append((body, cited))
    return out


@dataclass
class GroundednessGuard:
    """Checks each generated sentence against the passages it cites (see module docstring)."""

    embedder: Any
    """Anything with ``embed(list[str]) -> np.ndarray`` of L2-normalised rows."""
    min_similarity: float = 0.8
    min_share: float = 0.5

    def check(self, answer: str, docs: Sequence[Document]) -> Grounding:
        if not docs or says_not_in_context(answer):
            return dict(NO_CLAIM)  # type: ignore[return-value]
        claims = answer_sentences(answer)
        if not claims:
            return dict(NO_CLAIM)  # type: ignore[return-value]
        n = len(docs)
        answer_cited = cited_numbers(answer, n)
        passages = {i: split_sentences(d.page_content) or [d.page_content] for i, d in enumerate(docs, 1)}
        texts = [c for c, _ in claims] + [s for i in sorted(passages) for s in passages[i]]
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        claim_vecs, rest = vectors[: len(claims)], vectors[len(claims) :]
        rows: dict[int, np.ndarray] = {}
        at = 0
        for i in sorted(passages):
            rows[i] = rest[at : at + len(passages[i])]
            at += len(passages[i])
        supported = 0
        for vec, (_, own) in zip(claim_vecs, claims, strict=True):
            refs = [r for r in own if 1 <= r <= n] if own else answer_cited or list(passages)
            if not refs:  # it cites only passages that do not exist
                continue
            best = max(float(np.max(rows[r] @ vec)) for r in refs)
            supported += best >= self.min_similarity
        share = supported / len(claims)
        return {"grounded_share": round(share, 4), "not_grounded": share < self.min_share}


# --- image prompts -----------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = _WORD.findall(text.lower())
    return set(zip(words, words[1:], strict=False))


def echo_overlap(prompt: str, source: str) -> float:
    """Share of the prompt's word pairs that appear in ``source`` (1.0 = a pure echo)."""
    pairs = _bigrams(prompt)
    return len(pairs & _bigrams(source)) / len(pairs) if pairs else 1.0


def clean_image_prompt(text: str, max_words: int = 60) -> str:
    """The model's reply as a prompt: no label, quotes or citation markers; first paragraph only."""
    first = strip_citations(text.strip().split("\n\n")[0])
    first = re.sub(r"^(image prompt|prompt|scene)\s*:\s*", "", first, flags=re.I).strip().strip("\"'“”")
    words = first.split()
    return " ".join(words[:max_words])


def template_image_prompt(question: str, answer: str) -> str:
    """The fallback when the model's prompt is an echo: a concrete, generic scene."""
    subject = strip_citations(question).rstrip(" ?.!") or strip_citations(answer)[:120]
    return (
        f"An explanatory illustration for the question \u201c{subject}\u201d: simple labelled shapes "
        "connected by arrows, flat vector style, soft colours, white background"
    )
