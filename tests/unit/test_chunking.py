"""Token-aware chunking: budgets in the model's own tokens, boundaries, overlap, stable ids, speed."""

from __future__ import annotations

import hashlib
import os
import random
import time

import pytest

from lakechain.embed.chunking import (
    CL100K_URL,
    HFTokenCounter,
    RegexTokenCounter,
    TiktokenCounter,
    chunk_text,
    ensure_tiktoken_offline,
    make_chunk_id,
    tokenizer_for,
    vector_id,
)

WORDS = "spark delta lake embedding vector index chain model table query answer data cluster".split()


def sentence(rng: random.Random, n: int | None = None) -> str:
    n = n or rng.randint(6, 25)
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def document(rng: random.Random, paragraphs: int) -> str:
    return "\n\n".join(" ".join(sentence(rng) for _ in range(rng.randint(1, 6))) for _ in range(paragraphs))


@pytest.fixture(scope="module")
def local():
    return tokenizer_for("local")


def test_local_tokenizer_is_the_models_own(local):
    assert isinstance(local, HFTokenCounter) and local.max_tokens == 256
    # word pieces, no [CLS]/[SEP], no padding/truncation at 128 from tokenizer.json
    assert local.count_batch(["hello world", "hello " * 300]) == [2, 300]


def test_tiktoken_offline_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    import tiktoken.load

    def no_network(url: str) -> bytes:
        raise AssertionError(f"network access attempted: {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    target = ensure_tiktoken_offline()
    assert target == str(tmp_path / "tk" / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    data = open(target, "rb").read()
    assert hashlib.sha256(data).hexdigest().startswith("223921b7")
    counter = TiktokenCounter()
    assert counter.count_batch(["hello world"]) == [2]
    assert tokenizer_for("openai").name == "tiktoken:cl100k_base"


def test_chunks_respect_budget_and_cover_text(local):
    rng = random.Random(1)
    text = document(rng, 40)
    chunks = chunk_text("doc", text, local, chunk_tokens=64, overlap_tokens=8)
    assert len(chunks) > 5
    real = local.count_batch([c.text for c in chunks])
    assert max(real) <= 64 + 2  # sentence counts are summed; joins may shift a token or two
    for c in chunks:
        assert text[c.start : c.end] == c.text and c.text == c.text.strip()
    # every sentence lands in some chunk
    covered = " ".join(c.text for c in chunks)
    for s in text.replace("\n\n", " ").split(". "):
        assert s.strip(". ") in covered
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))


def test_paragraph_boundaries_preferred(local):
    rng = random.Random(2)
    paras = [" ".join(sentence(rng, 10) for _ in range(3)) for _ in range(6)]  # ~33 tokens each
    text = "\n\n".join(paras)
    chunks = chunk_text("d", text, local, chunk_tokens=80, overlap_tokens=0)
    # 2 paragraphs fit per chunk; no paragraph is split across chunks
    assert len(chunks) == 3
    for c in chunks:
        assert all(p in text for p in c.text.split("\n\n"))
        assert c.text.split("\n\n")[0] in paras


def test_sentence_overlap(local):
    rng = random.Random(3)
    sents = [sentence(rng, 12) for _ in range(30)]
    text = " ".join(sents)
    chunks = chunk_text("d", text, local, chunk_tokens=60, overlap_tokens=20)
    for a, b in zip(chunks, chunks[1:], strict=False):
        last = a.text.split(". ")[-1]
        assert b.text.startswith(last.rstrip(".")), (a.text, b.text)  # the last sentence is repeated
    no_overlap = chunk_text("d", text, local, chunk_tokens=60, overlap_tokens=0)
    assert len(no_overlap) < len(chunks)
    assert sum(len(c.text) for c in no_overlap) <= len(text)


def test_overlong_sentence_falls_back_to_token_windows(local):
    text = " ".join(f"token{i}" for i in range(3000))  # one "sentence", no punctuation
    chunks = chunk_text("d", text, local, chunk_tokens=100, overlap_tokens=10)
    counts = local.count_batch([c.text for c in chunks])
    assert len(chunks) > 10 and max(counts) <= 100
    assert chunks[0].text.startswith("token0") and chunks[-1].text.endswith("token2999")
    # consecutive windows overlap in characters
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_budget_capped_by_model_window(local):
    text = " ".join(sentence(random.Random(4)) for _ in range(200))
    chunks = chunk_text("d", text, local, chunk_tokens=5000, overlap_tokens=0)
    assert max(local.count_batch([c.text for c in chunks])) <= 256


def test_empty_and_whitespace(local):
    assert chunk_text("d", "", local) == []
    assert chunk_text("d", " \n\n \t ", local) == []


def test_stable_ids():
    c = RegexTokenCounter()
    a = chunk_text("doc-1", "First sentence. Second one.", c, 16, 0)
    b = chunk_text("doc-1", "First sentence. Second one.", c, 16, 0)
    assert [x.chunk_id for x in a] == [x.chunk_id for x in b]
    assert a[0].chunk_id == make_chunk_id("doc-1", 0, a[0].text)
    assert make_chunk_id("doc-2", 0, a[0].text) != a[0].chunk_id
    assert make_chunk_id("doc-1", 1, a[0].text) != a[0].chunk_id
    assert make_chunk_id("doc-1", 0, a[0].text + "!") != a[0].chunk_id
    ids = {vector_id(make_chunk_id("d", i, str(i))) for i in range(5000)}
    assert len(ids) == 5000 and all(0 <= v < 2**63 for v in ids)
    assert vector_id("abc") == vector_id("abc")


def test_ten_megabyte_document_is_fast(local):
    rng = random.Random(5)
    text = document(rng, 2500)
    while len(text) < 10_000_000:
        text = text + "\n\n" + text
    text = text[:10_000_000]
    t0 = time.perf_counter()
    chunks = chunk_text("big", text, local, chunk_tokens=200, overlap_tokens=32)
    elapsed = time.perf_counter() - t0
    assert len(chunks) > 10_000
    limit = 60 if os.cpu_count() and os.cpu_count() <= 2 else 30
    assert elapsed < limit, elapsed


def test_cached_word_counts_match_the_tokenizer(local):
    texts = [
        "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
        "Café résumé naïve: l'été, don't stop; x^2 + y_1 = 3.14 (approx.) — “quoted” [1] 中文字符",
        "URLs like https://example.com/a?b=1&c=2 and e-mails like a.b@example.org count too!",
    ]
    assert local.count_batch(texts) == local.count_exact(texts)
