"""Chat model factory: ``settings.chat`` → a LangChain ``BaseChatModel``.

Why one factory: chains, the task stage and the CLI must agree on how a provider is wired
(deployment names on Azure, ``base_url`` for OpenAI-compatible servers, timeouts and the
client's own retries), and the offline default must need nothing but the local embedding
model.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from lakechain.chains.local_chat import ExtractiveChatModel
from lakechain.config import ChatConfig, ConfigError, EmbeddingConfig, RetrievalConfig

LOCAL_CHAT_MODEL = "lakechain-extractive"
STRUCTURED_OUTPUT_PROVIDERS = frozenset({"openai", "azure_openai", "openai_compatible"})


def supports_structured_output(cfg: ChatConfig) -> bool:
    """``with_structured_output(method="json_schema")`` is used only where it is asked for and served."""
    return cfg.structured_output and cfg.provider in STRUCTURED_OUTPUT_PROVIDERS


def make_chat_model(
    cfg: ChatConfig, embedder: Any | None = None, retrieval: RetrievalConfig | None = None
) -> BaseChatModel:
    """Build the chat model of ``settings.chat``.

    ``embedder`` and ``retrieval`` are used only by the local extractive model: the
    embedder defaults to the process-wide local model
    (``lakechain.embed.embedders.cached_embedder``); ``retrieval`` gives it the mode's
    dense/keyword weights, so it picks sentences with the signal the retriever uses.
    """
    if cfg.provider == "local":
        if embedder is None:
            from lakechain.embed.embedders import cached_embedder

            embedder = cached_embedder(EmbeddingConfig())
        dense_weight, keyword_weight = (retrieval or RetrievalConfig(mode="dense")).weights
        return ExtractiveChatModel(
            embedder=embedder,
            model_name=cfg.model or LOCAL_CHAT_MODEL,
            dense_weight=dense_weight,
            keyword_weight=keyword_weight,
            rrf_k=(retrieval or RetrievalConfig()).rrf_k,
        )
    cfg.check_remote("chat")
    if cfg.provider != "azure_openai" and cfg.model in ("", LOCAL_CHAT_MODEL):
        raise ConfigError(
            f"chat.model: name the remote model for provider '{cfg.provider}' (e.g. gpt-4o-mini)"
        )
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else "not-needed"
    common: dict[str, Any] = {
        "api_key": key,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "timeout": cfg.timeout_s,
        "max_retries": cfg.max_retries,
    }
    if cfg.provider == "azure_openai":
        from langchain_openai import AzureChatOpenAI

        return AzureChatOpenAI(
            azure_endpoint=cfg.base_url,
            azure_deployment=cfg.deployment,
            api_version=cfg.api_version,
            model=cfg.model or None,
            **common,
        )
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, stream_usage=False, **common)
