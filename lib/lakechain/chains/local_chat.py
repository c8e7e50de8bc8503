"""An offline, deterministic, *extractive* chat model: the embedded default.

Why: the pipeline must run end to end without any LLM endpoint (laptops, CI, air-gapped
clusters). Rather than pretend to generate, this model quotes: it reads the numbered
context passages and the question from its input messages (the format of
``prompts.qa_prompt``), scores every context sentence by cosine similarity with the
question using the local embedding model, and returns the best-supported sentence(s) with
their citation markers, e.g. ``"Azure Databricks is a … analytics platform. [1]"``. When no
sentence passes ``similarity_floor`` it replies ``"Not in context."``.

With a ``keyword_weight`` (``retrieval.mode: hybrid``) the sentences are ranked like the
retriever ranks chunks: the cosine ranking and a BM25 ranking over the same sentences
(``lakechain.index.keyword``), fused by reciprocal rank. So a question about
``AssertionError`` quotes the sentence that names it, even when a vaguer sentence is a
little closer in embedding space. A sentence sharing no term with the question and below
the floor is never quoted, and the floor alone still decides "Not in context.".

It also serves the image-prompt instructions (``prompts.IMAGE_TASK_MARKER`` in the system
message): from ``Answer: …`` it returns ``"An illustration of: <answer sentence>"``, from
``Request: …`` a templated detailed prompt. Anything else gets ``"Not in context."``: it is
not a general chat model, and says so in ``response_metadata["extractive"]``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from lakechain.chains.prompts import IMAGE_TASK_MARKER, NOT_IN_CONTEXT, strip_citations
from lakechain.chains.usage import count_tokens
from lakechain.index.fusion import rrf_scores

_PASSAGE = re.compile(r"^\[(\d{1,3})\][ \t]*(.*)$", re.M)
_QUESTION = re.compile(r"^Question:[ \t]*(.+)$", re.M)
_ANSWER = re.compile(r"^Answer:[ \t]*(.+)$", re.M | re.S)
_REQUEST = re.compile(r"^Request:[ \t]*(.+)$", re.M | re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_MARGIN_BREAK = re.compile(r"\s\|(?:\s+\|)+\s")
"""An empty line inside a ``|``-margined block (pydoc class pages, text tables), as it reads
once the passage is on one line: a paragraph break, so never inside a quoted sentence."""


def message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentences (also at ``|``-margin paragraph breaks); fragments
    under two words are dropped."""
    blocks = _MARGIN_BREAK.split(" ".join(text.split()))
    parts = [p.strip(" |") for block in blocks for p in _SENTENCE_END.split(block)]
    return [p for p in parts if len(p.split()) >= 2]


def parse_qa_messages(messages: Sequence[BaseMessage]) -> tuple[str | None, list[tuple[int, str]]]:
    """(question, [(number, passage)]) from the last human message in the ``qa_prompt`` format."""
    human = [m for m in messages if not isinstance(m, (SystemMessage, AIMessage))]
    text = message_text(human[-1]) if human else ""
    q = _QUESTION.findall(text)
    question = q[-1].strip() if q else (text.strip() or None)
    passages = [(int(n), body.strip()) for n, body in _PASSAGE.findall(text) if body.strip()]
    return question, passages


class ExtractiveChatModel(BaseChatModel):
    """Quotes the context sentences most similar to the question (see module docstring)."""

    embedder: Any = Field(exclude=True)
    """Anything with ``embed(list[str]) -> np.ndarray`` of L2-normalised rows."""
    model_name: str = "lakechain-extractive"
    similarity_floor: float = 0.3
    """Cosine similarity a sentence needs to count as an answer."""
    max_sentences: int = 2
    margin: float = 0.08
    """Further sentences are quoted only when within ``margin`` of the best one."""
    dense_weight: float = 1.0
    keyword_weight: float = 0.0
    """Weight of the BM25 ranking of sentences (0 = cosine only; see module docstring)."""
    rrf_k: int = 60
    cache_size: int = 4096

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _cache: OrderedDict[str, np.ndarray] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "lakechain-extractive"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "similarity_floor": self.similarity_floor,
            "max_sentences": self.max_sentences,
        }

    # -- embedding with a small LRU cache (the same chunks recur across questions) ----------

    def _vectors(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            found = {t: self._cache[t] for t in dict.fromkeys(texts) if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vecs = np.asarray(self.embedder.embed(missing), dtype=np.float32)
            found.update(zip(missing, vecs, strict=True))
        with self._lock:
            for t, v in found.items():
                self._cache[t] = v
                self._cache.move_to_end(t)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    # -- the three tasks ------------------------------------------------------------------

    def rank_sentences(self, question: str, sentences: list[str], cosine: np.ndarray) -> list[int]:
        """Sentence positions to quote from, best first: by cosine, or fused with BM25.

        Only sentences at or above the floor, or sharing a term with the question, appear.
        """
        dense = sorted(range(len(sentences)), key=lambda i: (-float(cosine[i]), i))
        if self.keyword_weight <= 0:
            return [i for i in dense if cosine[i] >= self.similarity_floor]
        from lakechain.index.keyword import KeywordIndex

        _, positions = KeywordIndex.build(sentences).search([question], len(sentences))
        keyword = [int(i) for i in positions[0] if i >= 0]
        eligible = set(keyword) | {i for i in dense if cosine[i] >= self.similarity_floor}
        fused = rrf_scores([dense, keyword], [self.dense_weight, self.keyword_weight], self.rrf_k)
        return [i for i, _ in fused if i in eligible]

    def answer(self, question: str, passages: list[tuple[int, str]]) -> str:
        """Best-supported sentence(s) with ``[n]`` markers, or ``NOT_IN_CONTEXT``."""
        candidates = [(n, s) for n, body in passages for s in split_sentences(body)]
        if not question or not candidates:
            return NOT_IN_CONTEXT
        vecs = self._vectors([question] + [s for _, s in candidates])
        scores = vecs[1:] @ vecs[0]
        best = float(scores.max())
        if best < self.similarity_floor:
            return NOT_IN_CONTEXT
        order = self.rank_sentences(question, [s for _, s in candidates], scores)
        chosen = order[:1] + [
            i
            for i in order[1 : self.max_sentences]
            if float(scores[i]) >= max(self.similarity_floor, best - self.margin)
        ]
        return " ".join(f"{candidates[i][1]} [{candidates[i][0]}]" for i in chosen)

    @staticmethod
    def image_prompt(text: str) -> str:
        answer = _ANSWER.search(text)
        if answer:
            body = strip_citations(answer.group(1))
            first = split_sentences(body)
            return f"An illustration of: {first[0] if first else body}"
        request = _REQUEST.search(text)
        body = strip_citations(request.group(1) if request else text)
        return (
            f"A detailed illustration of {body.rstrip('.')}, clear composition, soft lighting, rich colour."
        )

    def respond(self, messages: Sequence[BaseMessage]) -> str:
        system = " ".join(message_text(m) for m in messages if isinstance(m, SystemMessage))
        if IMAGE_TASK_MARKER in system:
            human = [m for m in messages if not isinstance(m, (SystemMessage, AIMessage))]
            return self.image_prompt(message_text(human[-1]) if human else "")
        question, passages = parse_qa_messages(messages)
        return self.answer(question or "", passages)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self.respond(messages)
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        completion_tokens = count_tokens(text)
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            response_metadata={"model_name": self.model_name, "finish_reason": "stop", "extractive": True},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
