"""Chains through real OpenAI clients (ChatOpenAI, openai.images) against the fake server."""

from __future__ import annotations

import hashlib
import io
import re
import time

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from lakechain.chains import InMemorySearcher, build_chains
from lakechain.chains.errors import MalformedResponseError, ProviderError, StructuredOutputError
from lakechain.chains.prompts import IMAGE_TASK_MARKER
from lakechain.config import Settings
from lakechain.testing.openai_server import FakeOpenAIServer

TEXTS = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
]


class HashEmbedder:
    """Bag-of-words hashing embedder: deterministic, instant, good enough for keyword retrieval."""

    name, dim = "hash-bow", 256

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9-]+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    server.timeout_sleep_s = 1.0
    yield server
    server.reset()


def remote_settings(url: str, **chat_overrides) -> Settings:
    s = Settings()
    s.retrieval.score_threshold = 0.1
    s.chat.provider = "openai_compatible"
    s.chat.base_url = url
    s.chat.model = "gpt-4o-mini"
    s.chat.api_key = SecretStr("test-key")
    s.chat.max_retries = 2
    s.chat.timeout_s = 5
    s.images.provider = "openai_compatible"
    s.images.base_url = url
    s.images.model = "dall-e-3"
    s.images.api_key = SecretStr("test-key")
    s.images.size = "128x96"
    s.images.max_retries = 2
    s.images.timeout_s = 5
    for k, v in chat_overrides.items():
        setattr(s.chat, k, v)
    return s


def make_chains(srv, **chat_overrides):
    embedder = HashEmbedder()
    searcher = InMemorySearcher.from_texts(
        embedder, TEXTS, chunk_ids=["c0", "c1", "c2"], doc_ids=["d0", "d1", "d2"]
    )
    return build_chains(remote_settings(srv.url, **chat_overrides), searcher, embedder=embedder)


def _png_size(data: bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img.size


def test_qa_through_chat_openai(srv):
    out = make_chains(srv).qa.invoke("What is Azure Databricks?")
    # the fake quotes the first sentence of passage [1], citing it
    assert out["answer"] == f"{TEXTS[0]} [1]"
    assert out["citations"] == [1] and out["sources"][0]["chunk_id"] == "c0" and out["sources"][0]["cited"]
    assert out["model"] == "gpt-4o-mini"
    (body,) = srv.requests_for("/v1/chat/completions")
    system, user = body["messages"]
    assert system["role"] == "system" and "only the numbered context" in system["content"]
    assert (
        user["content"].startswith("Context:\n[1] " + TEXTS[0])
        and "Question: What is Azure Databricks?" in user["content"]
    )
    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
    assert out["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(out["answer"].split()),
        "total_tokens": prompt_tokens + len(out["answer"].split()),
    }


def test_model_reply_not_in_context_is_flagged(srv):
    srv.chat_responder = lambda body: "Not in context."
    out = make_chains(srv).qa.invoke("What is Azure Databricks?")
    assert out["not_in_context"] is True and out["citations"] == [] and not out["sources"][0]["cited"]


def test_image_through_openai_images_api(srv):
    out = make_chains(srv).image.invoke("A futuristic city with flying cars")
    assert _png_size(out["png"]) == (128, 96) == (out["width"], out["height"])
    assert out["revised_prompt"] == "A futuristic city with flying cars (rendered)"
    assert out["model"] == "dall-e-3" and out["usage"]["images"] == 1
    (body,) = srv.requests_for("/v1/images/generations")
    assert body["response_format"] == "b64_json" and body["size"] == "128x96"
    assert body["prompt"] == "A futuristic city with flying cars"


def test_image_prompt_refinement_uses_the_chat_model(srv):
    def responder(body):
        system = body["messages"][0]["content"]
        assert IMAGE_TASK_MARKER in system
        return "A detailed neon city at dusk with flying cars weaving between towers"

    srv.chat_responder = responder
    chains = make_chains(srv)
    chains.settings.images.refine_prompts = True
    chains = build_chains(chains.settings, chains.searcher, embedder=chains.embedder)
    out = chains.image.invoke("A futuristic city with flying cars")
    assert out["prompt_used"] == "A detailed neon city at dusk with flying cars weaving between towers"
    assert srv.requests_for("/v1/images/generations")[0]["prompt"] == out["prompt_used"]
    assert (
        out["usage"]["completion_tokens"] == len(out["prompt_used"].split()) and out["usage"]["images"] == 1
    )


def test_chat_retries_429_and_500_then_succeeds(srv):
    srv.script("429", "500")
    out = make_chains(srv).qa.invoke("What is Azure Databricks?")
    assert out["answer"] == f"{TEXTS[0]} [1]"
    assert srv.counts["/v1/chat/completions"] == 3
    assert srv.fault_counts["429"] == 1 and srv.fault_counts["500"] == 1


def test_image_retries_500_and_429_then_succeeds(srv):
    srv.script("500", "429")
    out = make_chains(srv).image.invoke("A red square")
    assert _png_size(out["png"]) == (128, 96)
    assert srv.counts["/v1/images/generations"] == 3


def test_rate_limit_after_retries_is_a_retryable_error_with_retry_after(srv):
    srv.script("429", "429", "429")
    with pytest.raises(ProviderError) as err:
        make_chains(srv).qa.invoke("What is Azure Databricks?")
    assert err.value.retryable and err.value.status == 429 and err.value.retry_after_s == pytest.approx(0.05)
    assert "gpt-4o-mini" in str(err.value) and "rate limit" in str(err.value)
    assert srv.counts["/v1/chat/completions"] == 3  # 1 + max_retries


def test_malformed_chat_body_is_a_clear_error(srv):
    srv.script("malformed")
    with pytest.raises(MalformedResponseError, match="malformed response body") as err:
        make_chains(srv).qa.invoke("What is Azure Databricks?")
    assert err.value.info.kind == "malformed"


def test_malformed_image_body_is_a_clear_error(srv):
    srv.script("malformed")
    with pytest.raises(MalformedResponseError, match="image model 'dall-e-3'"):
        make_chains(srv).image.invoke("A red square")


def test_timeout_is_a_clear_retryable_error(srv):
    srv.script("timeout")
    chains = make_chains(srv, timeout_s=0.3, max_retries=0)
    started = time.perf_counter()
    with pytest.raises(ProviderError, match="timeout") as err:
        chains.qa.invoke("What is Azure Databricks?")
    assert time.perf_counter() - started < 0.9
    assert err.value.info.kind == "timeout" and err.value.retryable


def test_structured_output_uses_json_schema(srv):
    srv.chat_responder = lambda body: {
        "answer": "Azure Databricks is an Apache Spark-based analytics platform [1].",
        "citations": [1],
        "not_in_context": False,
    }
    out = make_chains(srv, structured_output=True).qa.invoke("What is Azure Databricks?")
    assert out["answer"].startswith("Azure Databricks is an Apache Spark-based") and out["citations"] == [1]
    assert out["usage"]["total_tokens"] > 0
    (body,) = srv.requests_for("/v1/chat/completions")
    assert body["response_format"]["type"] == "json_schema"
    assert set(body["response_format"]["json_schema"]["schema"]["properties"]) == {
        "answer",
        "citations",
        "not_in_context",
    }


def test_structured_output_mismatch_is_not_retryable(srv):
    srv.chat_responder = lambda body: "plain prose, not JSON"
    with pytest.raises(StructuredOutputError) as err:
        make_chains(srv, structured_output=True).qa.invoke("What is Azure Databricks?")
    assert not err.value.retryable


def test_router_runs_branches_concurrently(srv):
    chains = make_chains(srv)
    task = {
        "qa": {"question": "Tell me about LangChain."},
        "image_generation": {"prompt": "A diagram of LangChain"},
    }
    chains.router.invoke(task)  # warm connections and clients
    srv.latency_s = 0.3
    started = time.perf_counter()
    out = chains.router.invoke(task)
    elapsed = time.perf_counter() - started
    assert out["qa"]["answer"].startswith("LangChain is a framework") or out["qa"]["citations"]
    assert _png_size(out["image_generation"]["png"]) == (128, 96)
    assert elapsed < 0.55, f"branches ran one after the other ({elapsed:.2f}s for two 0.3s calls)"


def test_illustrated_answer_makes_three_calls_and_sums_usage(srv):
    def responder(body):
        if IMAGE_TASK_MARKER in body["messages"][0]["content"]:
            return "A glowing Spark cluster inside a cloud, isometric illustration"
        return f"{TEXTS[0]} [1]"

    srv.chat_responder = responder
    out = make_chains(srv).illustrated.invoke("What is Azure Databricks?")
    assert out["image_prompt"] == "A glowing Spark cluster inside a cloud, isometric illustration"
    assert srv.requests_for("/v1/images/generations")[0]["prompt"] == out["image_prompt"]
    assert srv.counts["/v1/chat/completions"] == 2
    assert out["usage"]["images"] == 1
    assert out["usage"]["completion_tokens"] == len(out["answer"].split()) + len(out["image_prompt"].split())


def test_walkthrough_against_an_openai_compatible_server(srv, tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "seed_walkthrough.py"
    spec = importlib.util.spec_from_file_location("seed_walkthrough_remote", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sets = []
    for section, model in (
        ("embedding", "text-embedding-3-small"),
        ("chat", "gpt-4o-mini"),
        ("images", "dall-e-3"),
    ):
        sets += ["--set", f"{section}.provider=openai_compatible", "--set", f"{section}.base_url={srv.url}"]
        sets += ["--set", f"{section}.model={model}"]
    sets += [
        "--set",
        "embedding.dimensions=64",
        "--set",
        "retrieval.score_threshold=-1",
        "--set",
        "images.size=64x64",
    ]
    assert module.main([str(tmp_path), *sets]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    # fake embeddings are random, so which passage ranks first is arbitrary; the fake chat quotes [1]
    assert summary["qa"]["answer"] in {f"{t} [1]" for t in TEXTS}
    assert summary["qa"]["model"] == "gpt-4o-mini" and summary["qa"]["usage"]["total_tokens"] > 0
    assert summary["image"]["revised_prompt"] == "A futuristic city with flying cars (rendered)"
    assert [_png_size(p.read_bytes()) for p in sorted(tmp_path.glob("*.png"))] == [(64, 64)] * 3
    assert srv.counts["/v1/embeddings"] >= 1 and srv.counts["/v1/images/generations"] == 3
    assert "Q: What is Azure Databricks?" in capsys.readouterr().out


@pytest.mark.parametrize("structured", [False, True])
def test_a_cached_reply_gives_the_called_result_without_a_call(srv, structured):
    """What the response cache relies on: the answer chain reads a stored reply as it reads a
    fresh one (same answer, citations, sources), spends no tokens and calls nothing."""
    if structured:
        reply = {"answer": "Spark-based [1].", "citations": [1], "not_in_context": False}
        srv.chat_responder = lambda body: reply
    chains = make_chains(srv, structured_output=structured)
    docs = chains.retriever.retrieve_many(["What is Azure Databricks?"])[0]
    called = chains.answer.invoke({"question": "What is Azure Databricks?", "docs": docs})
    assert len(srv.requests_for("/v1/chat/completions")) == 1
    reply = called["reply"]
    assert reply["model"] == "gpt-4o-mini" and reply["prompt_tokens"] > 0 and reply["finish_reason"] == "stop"
    cached = chains.answer.invoke({"question": "What is Azure Databricks?", "docs": docs, "reply": reply})
    assert len(srv.requests_for("/v1/chat/completions")) == 1
    same = ("answer", "citations", "sources", "not_in_context", "model")
    assert {k: cached[k] for k in same} == {k: called[k] for k in same}
    assert cached["usage"]["total_tokens"] == 0 and called["usage"]["total_tokens"] > 0
