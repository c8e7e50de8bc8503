"""Chains on the embedded default (local embedder, extractive chat, local renderer): no network."""

from __future__ import annotations

import importlib.util
import io
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from PIL import Image

from lakechain.chains import (
    ExtractiveChatModel,
    InMemorySearcher,
    LakechainRetriever,
    RouterInputError,
    ask,
    build_chains,
)
from lakechain.chains.images import LocalImageRenderer
from lakechain.config import EmbeddingConfig, Settings

REPO = Path(__file__).resolve().parents[2]
SEED = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
]
DATABRICKS = SEED[0]


class CountingEmbedder:
    """Wraps the real embedder and counts calls (to check batching)."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, []

    @property
    def dim(self):
        return self.inner.dim

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed(texts)


class CountingSearcher:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def search_chunks(self, matrix, k):
        self.calls.append(np.asarray(matrix).shape)
        return self.inner.search_chunks(matrix, k)


class ChatCalls(BaseCallbackHandler):
    def __init__(self):
        self.n = 0
        self._lock = threading.Lock()

    def on_chat_model_start(self, serialized, messages, **kwargs):
        with self._lock:
            self.n += 1


@pytest.fixture(scope="module")
def embedder():
    from lakechain.embed.embedders import cached_embedder

    return cached_embedder(EmbeddingConfig())


@pytest.fixture(scope="module")
def searcher(embedder):
    return InMemorySearcher.from_texts(
        embedder, SEED, chunk_ids=["c-dbx", "c-lc", "c-gpt"], doc_ids=["d-dbx", "d-lc", "d-gpt"]
    )


@pytest.fixture
def chains(embedder, searcher):
    s = Settings()
    s.images.size = "128x128"
    return build_chains(s, searcher, embedder=embedder)


def _png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG"
    return img


# --- the walk-through ----------------------------------------------------------------------


def _walkthrough():
    spec = importlib.util.spec_from_file_location(
        "seed_walkthrough", REPO / "examples" / "seed_walkthrough.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_walkthrough_offline(tmp_path, capsys, embedder):
    out = tmp_path / "out"
    rc = _walkthrough().main([str(out), "--set", "images.size=256x256"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"A: {DATABRICKS} [1]" in printed

    summary = json.loads((out / "summary.json").read_text())
    qa = summary["qa"]
    assert qa["answer"] == f"{DATABRICKS} [1]"
    assert qa["citations"] == [1] and qa["not_in_context"] is False
    assert qa["sources"][0]["chunk_id"] == "seed-0" and qa["sources"][0]["cited"] is True
    assert qa["usage"]["total_tokens"] == qa["usage"]["prompt_tokens"] + qa["usage"]["completion_tokens"] > 0

    multi = summary["multi_task"]
    assert set(multi) == {"qa", "image_generation"}
    assert multi["qa"]["answer"].startswith("LangChain is a framework") and "[1]" in multi["qa"]["answer"]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3
    for p in pngs:
        assert _png(p.read_bytes()).size == (256, 256)
    assert summary["illustrated"]["image_prompt"] == f"An illustration of: {DATABRICKS}"


def test_walkthrough_reports_config_errors(tmp_path, capsys):
    rc = _walkthrough().main([str(tmp_path), "--set", "chat.provider=nope"])
    assert rc == 2
    assert "chat.provider" in capsys.readouterr().err


# --- retriever -------------------------------------------------------------------------------


def test_retrieve_many_embeds_once_and_searches_one_matrix(embedder, searcher):
    emb, srch = CountingEmbedder(embedder), CountingSearcher(searcher)
    retriever = LakechainRetriever(embedder=emb, searcher=srch, k=2, score_threshold=0.2)
    questions = ["What is Azure Databricks?", "Who made GPT-4?", "What is LangChain for?"]
    many = retriever.retrieve_many(questions)
    assert len(emb.calls) == 1 and emb.calls[0] == questions
    assert srch.calls == [(3, embedder.dim)]
    assert [docs[0].metadata["chunk_id"] for docs in many] == ["c-dbx", "c-gpt", "c-lc"]
    single = [retriever.invoke(q) for q in questions]
    for one, batched in zip(single, many, strict=True):  # batched embedding may differ in the last bits
        assert [d.metadata["chunk_id"] for d in one] == [d.metadata["chunk_id"] for d in batched]
        assert [d.metadata["score"] for d in one] == pytest.approx(
            [d.metadata["score"] for d in batched], abs=1e-5
        )
    assert retriever.batch(questions) == many
    doc = many[0][0]
    assert doc.page_content == DATABRICKS
    assert doc.metadata["doc_id"] == "d-dbx" and 0.5 < doc.metadata["score"] <= 1.0


def test_threshold_drops_irrelevant_chunks(embedder, searcher):
    retriever = LakechainRetriever(embedder=embedder, searcher=searcher, k=3, score_threshold=0.3)
    assert retriever.invoke("What is the capital of France?") == []
    kept = retriever.invoke("What is Azure Databricks?")
    assert kept and all(d.metadata["score"] >= 0.3 for d in kept)


def test_bad_questions_are_rejected_by_position(embedder, searcher):
    retriever = LakechainRetriever(embedder=embedder, searcher=searcher)
    with pytest.raises(ValueError, match=r"\[1\]"):
        retriever.retrieve_many(["ok?", "  "])


def test_mmr_prefers_diverse_chunks(embedder):
    texts = [
        "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
        "Azure Databricks is a fast, easy and collaborative analytics platform based on Apache Spark.",
        "Databricks clusters on Azure run Apache Spark jobs for data engineering and machine learning.",
        "Bananas are rich in potassium.",
    ]
    s = InMemorySearcher.from_texts(embedder, texts)
    common = {"embedder": embedder, "searcher": s, "k": 2, "fetch_k": 4, "score_threshold": 0.2}
    plain = LakechainRetriever(**common).invoke("What is Azure Databricks?")
    diverse = LakechainRetriever(**common, mmr=True, mmr_lambda=0.5).invoke("What is Azure Databricks?")
    assert {d.metadata["chunk_id"] for d in plain} == {"chunk-0", "chunk-1"}
    assert len(diverse) == 2 and "chunk-2" in {d.metadata["chunk_id"] for d in diverse}


# --- QA --------------------------------------------------------------------------------------


def test_qa_answers_with_citation_and_sources(chains):
    out = chains.qa.invoke({"question": "What is Azure Databricks?"})
    assert out["answer"] == f"{DATABRICKS} [1]"
    assert out["model"] == "lakechain-extractive"
    src = out["sources"][0]
    assert (src["chunk_id"], src["doc_id"], src["cited"], src["snippet"]) == (
        "c-dbx",
        "d-dbx",
        True,
        DATABRICKS,
    )
    assert set(out["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_nothing_relevant_means_not_in_context_without_calling_the_model(chains):
    calls = ChatCalls()
    out = chains.qa.invoke("What is the capital of France?", config={"callbacks": [calls]})
    assert out["not_in_context"] is True and out["answer"] == "Not in context."
    assert out["sources"] == [] and out["usage"]["total_tokens"] == 0
    assert calls.n == 0
    chains.qa.invoke("What is Azure Databricks?", config={"callbacks": [calls]})
    assert calls.n == 1


def test_answer_from_pre_retrieved_docs_in_a_bounded_batch(chains):
    questions = ["What is Azure Databricks?", "Who developed GPT-4?", "What is the capital of France?"]
    docs = chains.retriever.retrieve_many(questions)
    results = chains.answer.batch(
        [{"question": q, "docs": d} for q, d in zip(questions, docs, strict=True)],
        config={"max_concurrency": 2},
        return_exceptions=True,
    )
    assert results[0]["answer"] == f"{DATABRICKS} [1]"
    assert results[1]["answer"].startswith("GPT-4 is a powerful language model developed by OpenAI.")
    assert results[2]["not_in_context"] is True
    assert [r["answer"] for r in results] == [chains.qa.invoke(q)["answer"] for q in questions]


def test_qa_rejects_empty_question(chains):
    with pytest.raises(ValueError, match="question"):
        chains.qa.invoke({"question": "   "})


# --- image, router, illustrated ---------------------------------------------------------------


def test_image_chain_returns_png_and_metadata(chains):
    out = chains.image.invoke({"prompt": "A futuristic city with flying cars", "size": "96x64"})
    assert _png(out["png"]).size == (96, 64) == (out["width"], out["height"])
    assert out["prompt_used"] == "A futuristic city with flying cars" and out["model"] == "lakechain-render"
    assert out["usage"]["images"] == 1


def test_image_chain_refines_with_the_chat_model(embedder, searcher):
    s = Settings()
    s.images.refine_prompts = True
    s.images.size = "64x64"
    chains = build_chains(s, searcher, embedder=embedder)
    out = chains.image.invoke("A futuristic city with flying cars")
    assert out["prompt_used"] != out["prompt"] and "futuristic city with flying cars" in out["prompt_used"]
    assert out["usage"]["total_tokens"] > 0


def test_router_runs_both_branches(chains):
    out = chains.router.invoke(
        {
            "qa": {"question": "Tell me about LangChain."},
            "image_generation": {"prompt": "A conceptual diagram of LangChain in use"},
        }
    )
    assert set(out) == {"qa", "image_generation"}
    assert out["qa"]["answer"].startswith("LangChain is a framework designed to simplify")
    assert _png(out["image_generation"]["png"]).size == (128, 128)


def test_router_single_branch_and_plain_strings(chains):
    assert set(chains.router.invoke({"image_generation": "A red square"})) == {"image_generation"}
    only_qa = chains.router.invoke({"qa": "What is Azure Databricks?"})
    assert set(only_qa) == {"qa"} and only_qa["qa"]["citations"] == [1]


def test_router_illustrate_returns_answer_sources_and_image(chains):
    out = chains.router.invoke({"qa": {"question": "What is Azure Databricks?"}, "illustrate": True})
    qa = out["qa"]
    assert qa["answer"] == f"{DATABRICKS} [1]" and qa["sources"][0]["cited"]
    assert qa["image_prompt"] == f"An illustration of: {DATABRICKS}"
    assert _png(qa["image"]["png"]).size == (128, 128)
    assert qa["usage"]["images"] == 1 and qa["usage"]["total_tokens"] > 0


def test_illustrated_skips_the_image_when_not_in_context(chains):
    out = chains.illustrated.invoke("What is the capital of France?")
    assert out["not_in_context"] and out["image"] is None and out["image_skipped"] == "answer not in context"


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({}, "no task given"),
        ({"qa": {"question": "x"}, "translate": {"text": "y"}}, "translate"),
        ({"qa": {"questoin": "x"}}, "questoin"),
        ({"qa": {"question": ""}}, "qa.question"),
        ({"image_generation": {"prompt": 3}}, "image_generation.prompt"),
        ({"image_generation": ["p"]}, "image_generation: must be an object"),
        ({"image_generation": {"prompt": "p"}, "illustrate": True}, "needs a 'qa' task"),
        ({"qa": "x", "illustrate": "yes"}, "illustrate: must be true or false"),
        ("What is Azure Databricks?", "must be an object"),
    ],
)
def test_router_rejects_bad_input_naming_the_problem(chains, bad, named):
    with pytest.raises(RouterInputError, match=named) as err:
        chains.router.invoke(bad)
    assert isinstance(err.value, ValueError)


def test_router_can_report_a_failing_branch_and_keep_the_other(embedder, searcher):
    class Broken(LocalImageRenderer):
        def generate(self, prompt, size=None):
            raise TimeoutError("renderer stuck")

    chains = build_chains(Settings(), searcher, embedder=embedder, image_model=Broken(), capture_errors=True)
    out = chains.router.invoke({"qa": "What is Azure Databricks?", "image_generation": "A red square"})
    assert out["qa"]["citations"] == [1]
    err = out["image_generation"]["error"]
    assert err["kind"] == "timeout" and err["retryable"] is True and "renderer stuck" in err["message"]


# --- from settings and a saved index -----------------------------------------------------------


def test_build_chains_loads_the_current_index_and_ask_answers(tmp_path, embedder):
    from lakechain.index import build, clear_cache, index_root, store

    vectors = embedder.embed(SEED)
    ids = np.array([10, 11, 12], dtype=np.int64)
    index = build.make_empty(build.IndexPlan("flat", embedder.dim))
    build.add(index, vectors, ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": ["k-dbx", "k-lc", "k-gpt"],
            "doc_id": ["dbx.md", "lc.md", "gpt.md"],
            "chunk_index": [0, 0, 0],
            "text": SEED,
        }
    )
    settings = Settings()
    settings.storage.root = str(tmp_path)
    manifest = {
        "model": embedder.name,
        "dim": embedder.dim,
        "count": 3,
        "nprobe": 1,
        "description": "IDMap2,Flat",
    }
    store.save_build(index_root(settings.storage.files_root), index, rows, manifest)
    clear_cache()
    out = ask(settings, "What is Azure Databricks?")
    assert out["answer"] == f"{DATABRICKS} [1]"
    assert out["sources"][0]["chunk_id"] == "k-dbx" and out["sources"][0]["doc_id"] == "dbx.md"


def test_ask_without_an_index_says_how_to_build_one(tmp_path):
    from lakechain.index import IndexNotFoundError

    settings = Settings()
    settings.storage.root = str(tmp_path)
    with pytest.raises(IndexNotFoundError, match="lakechain index"):
        ask(settings, "What is Azure Databricks?")


def test_local_chat_model_is_the_default(chains):
    assert isinstance(chains.chat_model, ExtractiveChatModel)
