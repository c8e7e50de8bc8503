"""Embedder providers: the local model, OpenAI-style providers (fake server), the LangChain adapter."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from pydantic import SecretStr

from lakechain.config import ConfigError, EmbeddingConfig
from lakechain.embed.embedders import (
    LangChainEmbedder,
    as_langchain,
    cached_embedder,
    l2_normalize,
    make_embedder,
    model_name,
)
from lakechain.testing.openai_server import fake_embedding

SEED = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
]


@pytest.fixture(scope="module")
def local():
    return cached_embedder(EmbeddingConfig())


def remote(srv, **kw) -> EmbeddingConfig:
    base = {"provider": "openai_compatible", "model": "fake-embed", "base_url": srv.url, "max_retries": 2}
    return EmbeddingConfig(**(base | kw))


def test_local_seed_texts(local):
    assert local.name == "all-MiniLM-L6-v2" and local.dim == 384
    v = local.embed(SEED)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(local.embed(SEED[:1])[0], v[0], atol=1e-5)  # batch-independent
    q = local.embed(["Which company built GPT-4?"])[0]
    assert int(np.argmax(v @ q)) == 2
    assert local.embed([]).shape == (0, 384)
    assert cached_embedder(EmbeddingConfig()) is local


def test_langchain_adapter_with_faiss(local):
    from langchain_community.vectorstores import FAISS

    lc = as_langchain(local)
    docs = lc.embed_documents(SEED)
    assert len(docs) == 3 and len(docs[0]) == 384 and isinstance(docs[0][0], float)
    store = FAISS.from_texts(SEED, lc)
    hit = store.similarity_search("a framework for LLM applications", k=1)[0]
    assert hit.page_content == SEED[1]


def test_openai_compatible_retries_429_then_succeeds(srv):
    srv.script("429")
    emb = make_embedder(remote(srv, batch_size=2))
    v = emb.embed(SEED)
    assert v.shape == (3, 384) and emb.dim == 384
    np.testing.assert_allclose(v[0], fake_embedding(SEED[0]), atol=1e-6)
    assert srv.fault_counts["429"] == 1
    bodies = srv.requests_for("/v1/embeddings")
    assert len(bodies) == 3  # one 429 + two batches of ≤2
    assert [len(b["input"]) for b in bodies[1:]] == [2, 1]
    assert all(isinstance(x, str) for b in bodies for x in b["input"])  # raw strings


def test_openai_compatible_gives_up_after_retries(srv):
    srv.script("500", "500")
    emb = make_embedder(remote(srv, max_retries=1))
    with pytest.raises(openai.InternalServerError):
        emb.embed(["x"])
    assert srv.counts["/v1/embeddings"] == 2


def test_malformed_response_is_an_error_not_garbage(srv):
    srv.script("malformed")
    with pytest.raises(Exception) as info:  # noqa: B017 - any client error type is fine, garbage is not
        make_embedder(remote(srv, max_retries=0)).embed(["x"])
    assert not isinstance(info.value, AssertionError)


def test_openai_provider_dimensions_and_offline_tiktoken(srv, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    cfg = EmbeddingConfig(
        provider="openai",
        model="text-embedding-3-small",
        base_url=srv.url,
        api_key=SecretStr("sk-test"),
        dimensions=64,
    )
    emb = make_embedder(cfg)
    assert emb.name == "text-embedding-3-small@64" == model_name(cfg) and emb.dim == 64
    v = emb.embed(["hello world"])
    assert v.shape == (1, 64)
    body = srv.requests_for("/v1/embeddings")[0]
    assert body["dimensions"] == 64 and body["input"] == [[15339, 1917]]  # cl100k token ids, offline


def test_azure_provider(srv):
    cfg = EmbeddingConfig(
        provider="azure_openai",
        model="text-embedding-3-small",
        base_url=srv.azure_endpoint,
        deployment="emb",
        api_version="2024-06-01",
        api_key=SecretStr("k"),
        dimensions=32,
    )
    v = make_embedder(cfg).embed(["hello"])
    assert v.shape == (1, 32)
    assert srv.counts["/v1/embeddings"] == 1


def test_dimension_mismatch_is_detected(srv):
    cfg = EmbeddingConfig(
        provider="openai", model="text-embedding-3-small", base_url=srv.url, api_key=SecretStr("k")
    )
    with pytest.raises(RuntimeError, match="dim 384, expected 1536"):  # the fake server answers 384
        make_embedder(cfg).embed(["hello"])


def test_config_errors():
    with pytest.raises(ConfigError, match="embedding.api_key"):
        make_embedder(EmbeddingConfig(provider="openai", model="text-embedding-3-small"))
    with pytest.raises(ConfigError, match="embedding.base_url"):
        make_embedder(EmbeddingConfig(provider="openai_compatible", model="m"))
    with pytest.raises(ConfigError, match="embedding.model 'some/hub-model'.*all-MiniLM-L6-v2"):
        make_embedder(EmbeddingConfig(model="some/hub-model"))


def test_dimension_probe_and_normalisation():
    class Raw:
        def embed_query(self, text):
            return [3.0, 4.0]

        def embed_documents(self, texts):
            return [[3.0, 4.0], [0.0, 0.0]][: len(texts)]

    e = LangChainEmbedder(Raw(), "raw")
    assert e.dim == 2
    np.testing.assert_allclose(e.embed(["a", "b"]), [[0.6, 0.8], [0.0, 0.0]])
    assert l2_normalize([1.0, 0.0]).shape == (1, 2)
