"""Provider wiring from settings: the right client class, names, limits and early config errors."""

from __future__ import annotations

import pytest
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from pydantic import SecretStr

from lakechain.chains.chat_models import make_chat_model, supports_structured_output
from lakechain.chains.images import LocalImageRenderer, OpenAIImageModel, make_image_model
from lakechain.chains.local_chat import ExtractiveChatModel
from lakechain.config import ChatConfig, ConfigError, ImagesConfig


class NoEmbedder:
    name, dim = "none", 4

    def embed(self, texts):  # never called in these tests
        raise AssertionError("not expected")


def test_local_chat_is_extractive():
    model = make_chat_model(ChatConfig(), embedder=NoEmbedder())
    assert isinstance(model, ExtractiveChatModel) and model.model_name == "lakechain-extractive"
    assert not supports_structured_output(ChatConfig(structured_output=True))


def test_openai_compatible_chat():
    cfg = ChatConfig(
        provider="openai_compatible",
        model="llama-3",
        base_url="http://127.0.0.1:9/v1",
        timeout_s=7,
        max_retries=4,
        max_tokens=99,
        structured_output=True,
    )
    model = make_chat_model(cfg)
    assert isinstance(model, ChatOpenAI)
    assert (
        model.model_name,
        model.openai_api_base,
        model.max_retries,
        model.request_timeout,
        model.max_tokens,
    ) == (
        "llama-3",
        "http://127.0.0.1:9/v1",
        4,
        7,
        99,
    )
    assert supports_structured_output(cfg)


def test_azure_chat_uses_the_deployment():
    cfg = ChatConfig(
        provider="azure_openai",
        model="gpt-4o",
        base_url="https://example.openai.azure.com",
        deployment="gpt4o-prod",
        api_version="2024-10-21",
        api_key=SecretStr("k"),
    )
    model = make_chat_model(cfg)
    assert isinstance(model, AzureChatOpenAI)
    assert (model.deployment_name, model.openai_api_version, model.azure_endpoint) == (
        "gpt4o-prod",
        "2024-10-21",
        "https://example.openai.azure.com",
    )


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        (ChatConfig(provider="openai", model="gpt-4o-mini"), "chat.api_key"),
        (ChatConfig(provider="azure_openai", api_key=SecretStr("k")), "chat.base_url"),
        (ChatConfig(provider="openai_compatible", base_url="http://h/v1"), "chat.model"),
    ],
)
def test_chat_config_errors_name_the_key(cfg, named):
    with pytest.raises(ConfigError, match=named):
        make_chat_model(cfg)


def test_image_providers():
    assert isinstance(make_image_model(ImagesConfig()), LocalImageRenderer)
    compat = make_image_model(
        ImagesConfig(
            provider="openai_compatible", model="sdxl", base_url="http://127.0.0.1:9/v1", size="256x256"
        )
    )
    assert isinstance(compat, OpenAIImageModel) and (compat.model, compat.size) == ("sdxl", "256x256")
    assert compat.client.max_retries == 3
    azure = make_image_model(
        ImagesConfig(
            provider="azure_openai",
            base_url="https://example.openai.azure.com",
            deployment="dalle3-prod",
            api_version="2024-10-21",
            api_key=SecretStr("k"),
        )
    )
    assert isinstance(azure, OpenAIImageModel) and azure.model == "dalle3-prod"
    assert "deployments/dalle3-prod" in str(azure.client.base_url)
    with pytest.raises(ConfigError, match="images.model"):
        make_image_model(ImagesConfig(provider="openai", api_key=SecretStr("k")))
