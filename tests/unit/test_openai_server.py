"""The fake OpenAI server speaks the real client's protocol and injects faults exactly as scripted."""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from lakechain.testing.openai_server import default_chat_reply


def client(srv, **kw) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=srv.url, api_key="test", **kw)


def test_embeddings_deterministic_unit_vectors(srv):
    c = client(srv)
    r1 = c.embeddings.create(model="m", input=["alpha", "beta"])
    r2 = c.embeddings.create(model="m", input="alpha")
    v = np.array([d.embedding for d in r1.data], dtype=np.float32)
    assert v.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(v[0], v[1])
    np.testing.assert_allclose(v[0], r2.data[0].embedding, atol=1e-6)
    assert r1.usage.prompt_tokens == 2
    r3 = c.embeddings.create(model="m", input=["alpha"], dimensions=64)
    assert len(r3.data[0].embedding) == 64
    assert srv.counts["/v1/embeddings"] == 3
    assert srv.requests_for("/v1/embeddings")[2]["dimensions"] == 64


def test_chat_default_reply_quotes_first_sentence_with_citation(srv):
    c = client(srv)
    msg = "Context:\n[1] Spark is fast. It is also big.\n[2] Other.\nQuestion: what is Spark?"
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": msg}])
    assert r.choices[0].message.content == "Spark is fast. [1]"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "no context here"}])
    assert r.choices[0].message.content == "Not in context."


def test_chat_responder_and_json_schema(srv):
    seen = []

    def responder(req):
        seen.append(req)
        return {"answer": "42", "citations": [1]}

    srv.chat_responder = responder
    c = client(srv)
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}], response_format=fmt)
    assert json.loads(r.choices[0].message.content) == {"answer": "42", "citations": [1]}
    assert seen[0]["response_format"]["type"] == "json_schema"


def test_images_real_png_deterministic_and_sized(srv):
    c = client(srv)
    r1 = c.images.generate(model="m", prompt="a red fox", size="64x32", response_format="b64_json")
    r2 = c.images.generate(model="m", prompt="a red fox", size="64x32", response_format="b64_json")
    r3 = c.images.generate(model="m", prompt="a blue owl", size="64x32", response_format="b64_json")
    png = base64.b64decode(r1.data[0].b64_json)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (64, 32)
    assert r1.data[0].b64_json == r2.data[0].b64_json != r3.data[0].b64_json
    assert "a red fox" in r1.data[0].revised_prompt


def test_scripted_faults_in_order_then_ok(srv):
    srv.script("429", "500", "malformed", "ok")
    with httpx.Client(base_url=srv.url) as h:
        body = {"model": "m", "input": "x"}
        r = h.post("/embeddings", json=body)
        assert r.status_code == 429 and r.headers["Retry-After"] == "0.01"
        assert h.post("/embeddings", json=body).status_code == 500
        r = h.post("/embeddings", json=body)
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.text)
        assert h.post("/embeddings", json=body).status_code == 200
        assert h.post("/embeddings", json=body).json()["data"][0]["index"] == 0
    assert srv.fault_counts["429"] == 1 and srv.fault_counts["500"] == 1
    assert srv.counts["/v1/embeddings"] == 5


def test_openai_client_retries_429_with_retry_after(srv):
    srv.script("429", "429")
    t0 = time.perf_counter()
    r = client(srv, max_retries=2).embeddings.create(model="m", input=["x"])
    assert len(r.data) == 1
    assert srv.counts["/v1/embeddings"] == 3
    assert time.perf_counter() - t0 < 3  # honoured the short Retry-After, not a long backoff


def test_timeout_fault_trips_client_timeout(srv):
    srv.timeout_sleep_s = 0.5
    srv.script("timeout")
    with pytest.raises(openai.APITimeoutError):
        client(srv, timeout=0.1).embeddings.create(model="m", input=["x"])
    srv.timeout_sleep_s = 5.0


def test_seeded_fault_rates_are_reproducible(srv):
    def run() -> list[int]:
        srv.reset()
        srv.seed = 7
        srv.fault_rates = {"429": 0.3, "500": 0.2}
        with httpx.Client(base_url=srv.url) as h:
            return [h.post("/embeddings", json={"input": "x"}).status_code for _ in range(40)]

    a, b = run(), run()
    assert a == b
    assert {200, 429, 500} <= set(a)


def test_latency_and_concurrency_are_thread_safe(srv):
    srv.latency_s = 0.1

    def call(i: int) -> int:
        with httpx.Client(base_url=srv.url) as h:
            return h.post("/embeddings", json={"input": f"t{i}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(16)))
    assert codes == [200] * 16
    assert srv.counts["/v1/embeddings"] == 16 and len(srv.requests) == 16
    assert srv.peak_in_flight > 1  # requests overlap in their latency: served concurrently
    assert srv.in_flight == 0


def test_bad_requests_and_unknown_script(srv):
    with httpx.Client(base_url=srv.url) as h:
        assert h.post("/nope", json={}).status_code == 404
        assert h.post("/embeddings", content=b"{not json").status_code == 400
        assert h.post("/images/generations", json={"prompt": "p", "size": "big"}).status_code == 400
    with pytest.raises(ValueError):
        srv.script("teapot")


def test_default_chat_reply_pure():
    req = {
        "messages": [
            {"role": "system", "content": "[1] ignored."},
            {"role": "user", "content": "[1] A b c! d"},
        ]
    }
    assert default_chat_reply(req) == "A b c! [1]"
    assert default_chat_reply({"messages": []}) == "Not in context."
