"""Wiring: ``Settings`` → every chain the pipeline runs (:func:`build_chains`), and ``ask``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from lakechain.chains.chat_models import make_chat_model, supports_structured_output
from lakechain.chains.grounding import GroundednessGuard
from lakechain.chains.illustrated import illustrated_answer_chain
from lakechain.chains.image_chain import image_chain
from lakechain.chains.images import ImageModel, make_image_model
from lakechain.chains.qa import answer_from_docs, qa_chain, retrieve
from lakechain.chains.retriever import LakechainRetriever
from lakechain.chains.router import multi_task_router
from lakechain.config import Settings


@dataclass
class Chains:
    """Every runnable the pipeline needs, wired from one ``Settings``."""

    settings: Settings
    embedder: Any
    searcher: Any
    chat_model: BaseChatModel
    image_model: ImageModel
    retriever: LakechainRetriever
    retrieve: Runnable[Any, dict]
    """question → {question, docs}"""
    answer: Runnable[dict, dict]
    """{question, docs} → QA result (the LLM half; batch it with max_concurrency)"""
    qa: Runnable[Any, dict]
    image: Runnable[Any, dict]
    illustrated: Runnable[Any, dict]
    router: Runnable[dict, dict]


def load_searcher(settings: Settings, embedder: Any) -> Any:
    """The live index under ``settings.storage.files_root`` (``index/CURRENT``), loaded once per
    process and checked against the embedder's model name and dimension."""
    from lakechain.index.search import cached_load

    return cached_load(
        settings.storage.files_root,
        expected_model=getattr(embedder, "name", None),
        expected_dim=int(embedder.dim),
        nprobe=settings.index.nprobe,
    )


def grounding_guard(settings: Settings, embedder: Any) -> GroundednessGuard | None:
    """The answer check of ``chat.grounding``: by default on when embedding is local (free)."""
    cfg = settings.chat.grounding
    on = cfg.check if cfg.check is not None else settings.embedding.provider == "local"
    return GroundednessGuard(embedder, cfg.min_similarity, cfg.min_share) if on else None


def build_chains(
    settings: Settings,
    searcher: Any | None = None,
    *,
    embedder: Any | None = None,
    chat_model: BaseChatModel | None = None,
    image_model: ImageModel | None = None,
    capture_errors: bool = False,
) -> Chains:
    """Build every chain from ``settings``; pass parts to override them (tests, notebooks).

    ``searcher`` defaults to the current index under ``settings.storage``; ``embedder`` to
    ``lakechain.embed.embedders.cached_embedder(settings.embedding)`` (one per process).
    """
    if embedder is None:
        from lakechain.embed.embedders import cached_embedder

        embedder = cached_embedder(settings.embedding)
    if searcher is None:
        searcher = load_searcher(settings, embedder)
    if chat_model is None:
        local_embedder = embedder if settings.embedding.provider == "local" else None
        chat_model = make_chat_model(settings.chat, embedder=local_embedder, retrieval=settings.retrieval)
    if image_model is None:
        image_model = make_image_model(settings.images)
    structured = supports_structured_output(settings.chat)
    guard = grounding_guard(settings, embedder)
    retriever = LakechainRetriever.from_settings(settings.retrieval, embedder, searcher)
    retrieve_step = retrieve(retriever)
    answer = answer_from_docs(chat_model, structured=structured, guard=guard)
    qa = qa_chain(retriever, chat_model, structured=structured, guard=guard)
    image = image_chain(image_model, chat_model, refine_prompts=settings.images.refine_prompts)
    plain_image = image_chain(image_model)  # the illustrated chain's prompt is already written by the model
    illustrated = illustrated_answer_chain(qa, chat_model, plain_image)
    router = multi_task_router(qa, image, illustrated, capture_errors=capture_errors)
    return Chains(
        settings=settings,
        embedder=embedder,
        searcher=searcher,
        chat_model=chat_model,
        image_model=image_model,
        retriever=retriever,
        retrieve=retrieve_step,
        answer=answer,
        qa=qa,
        image=image,
        illustrated=illustrated,
        router=router,
    )


def ask(settings: Settings, question: str, searcher: Any | None = None) -> dict[str, Any]:
    """One grounded answer with sources, from the current index (the ``lakechain ask`` command)."""
    return build_chains(settings, searcher).qa.invoke(question)
