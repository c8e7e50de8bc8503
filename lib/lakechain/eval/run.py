"""Answer an evaluation set through the chains, once per retrieval mode: no Spark.

Each mode gets the chains ``build_chains`` makes for it (the extractive answerer follows
the mode too), one batched retrieval for all questions and one bounded-concurrency answer
batch, exactly as the task stage runs them. The ranking is retrieved ``RANK_DEPTH`` deep
so hit@5 is measured even when ``retrieval.k`` is smaller; the answer sees its first
``retrieval.k`` chunks, which are what a ``k``-deep retrieval returns (without MMR).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from lakechain.config import ConfigError, Settings
from lakechain.embed.embedders import model_name
from lakechain.eval.metrics import EvalQuestion, QuestionScore, score_question

Mode = Literal["dense", "keyword", "hybrid"]
MODES: tuple[str, ...] = get_args(Mode)
RANK_DEPTH = 5


class EvalRow(QuestionScore):
    """One ``eval_results`` row: a question answered under one config."""

    run_id: str
    created_at: datetime
    mode: str
    config: str
    index_build: str | None
    question_id: str
    question: str
    expected_docs: list[str]
    key_phrase: str | None
    retrieved_docs: list[str | None]
    answer: str | None
    cited_docs: list[str | None]
    error: str | None


def parse_modes(text: str) -> list[Mode]:
    """``"dense,hybrid"`` → ["dense", "hybrid"]; unknown names fail naming the allowed ones."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes: unknown mode(s) {bad or [text]}; allowed: {', '.join(MODES)}")
    return list(dict.fromkeys(modes))  # type: ignore[arg-type]


def config_of(settings: Settings, mode: str) -> dict[str, Any]:
    """What identifies a config in ``eval_results`` (compare runs with SQL on it)."""
    r = settings.retrieval
    return {
        "mode": mode,
        "k": r.k,
        "score_threshold": r.score_threshold,
        "fetch_k": r.fetch_k,
        "rrf_k": r.rrf_k,
        "dense_weight": r.dense_weight,
        "keyword_weight": r.keyword_weight,
        "doc_weight": r.doc_weight,
        "mmr": r.mmr,
        "embedding_model": model_name(settings.embedding),  # as chunks.model: int8 is another model
        "chat_model": settings.chat.model,
    }


def evaluate(
    settings: Settings,
    questions: Sequence[EvalQuestion],
    modes: Sequence[str],
    *,
    searcher: Any | None = None,
    embedder: Any | None = None,
    chat_model: Any | None = None,
    run_id: str | None = None,
) -> list[EvalRow]:
    """Rows of ``eval_results`` for every question under every mode (questions in order)."""
    from lakechain.chains import build_chains

    run_id = run_id or f"eval-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    texts = [q["question"] for q in questions]
    rows: list[EvalRow] = []
    for mode in modes:
        s = settings.model_copy(deep=True)
        s.retrieval.mode = mode  # type: ignore[assignment]
        chains = build_chains(s, searcher, embedder=embedder, chat_model=chat_model)
        deep = chains.retriever.model_copy(update={"k": max(RANK_DEPTH, s.retrieval.k)})
        ranked = deep.retrieve_many(texts)
        items = [
            {"question": q, "docs": docs[: s.retrieval.k]} for q, docs in zip(texts, ranked, strict=True)
        ]
        answers = chains.answer.batch(
            items, config={"max_concurrency": s.tasks.max_concurrency}, return_exceptions=True
        )
        build = getattr(chains.searcher, "path", None)
        config = json.dumps(config_of(s, mode), sort_keys=True)
        for q, docs, out in zip(questions, ranked, answers, strict=True):
            doc_ids = [d.metadata.get("doc_id") for d in docs]
            error = f"{type(out).__name__}: {out}" if isinstance(out, BaseException) else None
            result: dict[str, Any] = {} if error else out
            cited = [src["doc_id"] for src in result.get("sources", []) if src.get("cited")]
            answer = result.get("answer")
            score = score_question(q, doc_ids, answer or "", bool(result.get("not_in_context")), cited)
            rows.append(
                EvalRow(
                    run_id=run_id,
                    created_at=now,
                    mode=mode,
                    config=config,
                    index_build=None if build is None else str(build),
                    question_id=q["id"],
                    question=q["question"],
                    expected_docs=list(q["expected_docs"]),
                    key_phrase=q["key_phrase"],
                    retrieved_docs=doc_ids,
                    answer=answer,
                    cited_docs=cited,
                    error=error,
                    **score,
                )
            )
    return rows
