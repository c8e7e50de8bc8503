"""LCEL chains over the Lakechain index: retriever, QA, image, router, illustrated answer.

Everything is built from ``Settings`` by :func:`build_chains`, so the task stage (per Spark
partition), the ``lakechain ask`` CLI command and notebooks share one wiring::

    chains = build_chains(load_settings("conf/local.yaml"))
    chains.qa.invoke("What is Azure Databricks?")
    chains.router.invoke({"qa": {"question": "..."}, "image_generation": {"prompt": "..."}})

Batch use (task stage): ``docs = chains.retriever.retrieve_many(questions)`` then
``chains.answer.batch([{"question": q, "docs": d} ...], config={"max_concurrency": n},
return_exceptions=True)`` and classify failures with ``lakechain.chains.errors``.

Names are imported on first use (PEP 562): the driver of a run reads ``chains.prompts`` and
``chains.chat_models`` only, and importing every chain (LangChain's tracers, langsmith) cost
it 0.8 s per command.
"""

# ruff: noqa: F401 (the TYPE_CHECKING imports are re-exports, listed in __all__ below)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names for type checkers; at run time ``__getattr__`` imports them
    from lakechain.chains.build import Chains, ask, build_chains, grounding_guard, load_searcher
    from lakechain.chains.chat_models import make_chat_model
    from lakechain.chains.errors import ChainError, ErrorInfo, ProviderError, classify, is_retryable
    from lakechain.chains.grounding import GroundednessGuard
    from lakechain.chains.illustrated import illustrated_answer_chain
    from lakechain.chains.images import ImageModel, LocalImageRenderer, make_image_model, render_png
    from lakechain.chains.local_chat import ExtractiveChatModel
    from lakechain.chains.qa import answer_from_docs, qa_chain
    from lakechain.chains.retriever import ChunkSearcher, InMemorySearcher, LakechainRetriever
    from lakechain.chains.router import RouterInputError, multi_task_router

_MODULE = {
    "Chains": "build",
    "ask": "build",
    "build_chains": "build",
    "grounding_guard": "build",
    "load_searcher": "build",
    "make_chat_model": "chat_models",
    "ChainError": "errors",
    "ErrorInfo": "errors",
    "ProviderError": "errors",
    "classify": "errors",
    "is_retryable": "errors",
    "GroundednessGuard": "grounding",
    "illustrated_answer_chain": "illustrated",
    "ImageModel": "images",
    "LocalImageRenderer": "images",
    "make_image_model": "images",
    "render_png": "images",
    "ExtractiveChatModel": "local_chat",
    "answer_from_docs": "qa",
    "qa_chain": "qa",
    "ChunkSearcher": "retriever",
    "InMemorySearcher": "retriever",
    "LakechainRetriever": "retriever",
    "RouterInputError": "router",
    "multi_task_router": "router",
}
"""Public name → the submodule of ``lakechain.chains`` that defines it. No name may be a
submodule's (``image_chain``): importing the submodule would bind the module in its place."""

__all__ = sorted(_MODULE)


def __getattr__(name: str) -> Any:
    if name not in _MODULE:
        raise AttributeError(f"module 'lakechain.chains' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lakechain.chains.{_MODULE[name]}"), name)
