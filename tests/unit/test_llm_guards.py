"""What keeps a small generative model honest, checked without a server: the groundedness
guard (with the real local embedding model), the image-prompt echo check, and the
``chat.provider: llamacpp`` configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from lakechain.chains.grounding import (
    GroundednessGuard,
    answer_sentences,
    clean_image_prompt,
    echo_overlap,
    template_image_prompt,
)
from lakechain.chains.illustrated import image_prompt_from_answer
from lakechain.chains.local_chat import ExtractiveChatModel
from lakechain.chains.qa import answer_from_docs
from lakechain.config import ConfigError, EmbeddingConfig, load_settings

REPO = Path(__file__).resolve().parents[2]
DOCS = [
    Document("Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform. "
             "It integrates with Azure storage and identity."),
    Document("LangChain is a framework designed to simplify the creation of applications using large "
             "language models."),
]  # fmt: skip


@pytest.fixture(scope="module")
def guard() -> GroundednessGuard:
    from lakechain.embed.embedders import cached_embedder

    return GroundednessGuard(cached_embedder(EmbeddingConfig()), min_similarity=0.8, min_share=0.5)


def test_citation_markers_belong_to_the_sentence_they_follow():
    got = answer_sentences("Databricks runs Spark. [1] LangChain builds LLM apps [2]. It is popular.")
    assert got == [
        ("Databricks runs Spark.", [1]),
        ("LangChain builds LLM apps.", [2]),
        ("It is popular.", []),
    ]


def test_a_faithful_answer_is_fully_grounded(guard):
    answer = "Azure Databricks is a collaborative analytics platform based on Apache Spark. [1]"
    assert guard.check(answer, DOCS) == {"grounded_share": 1.0, "not_grounded": False}


def test_invented_sentences_lower_the_share_and_raise_the_flag(guard):
    half = ("Azure Databricks is an Apache Spark-based analytics platform. [1] "
            "It was invented by medieval monks to count sheep in 1350. [1]")  # fmt: skip
    assert guard.check(half, DOCS) == {"grounded_share": 0.5, "not_grounded": False}
    invented = "Pirates built the first spaceship out of cheese. The moon is a large library."
    assert guard.check(invented, DOCS) == {"grounded_share": 0.0, "not_grounded": True}


def test_a_sentence_is_checked_against_the_passage_it_cites(guard):
    # True to passage 1, but it cites passage 2: the citation does not support it.
    uncited = "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform."
    assert guard.check(f"{uncited} [2]", DOCS)["not_grounded"] is True
    assert guard.check(f"{uncited} [7]", DOCS)["not_grounded"] is True  # no passage 7
    assert guard.check(uncited, DOCS)["grounded_share"] == 1.0  # no marker at all: any passage


def test_no_claim_is_neither_grounded_nor_flagged(guard):
    assert guard.check("Not in context.", DOCS) == {"grounded_share": None, "not_grounded": False}


def test_qa_results_carry_the_guard_fields(guard):
    extractive = ExtractiveChatModel(embedder=guard.embedder)
    out = answer_from_docs(extractive, guard=guard).invoke({"question": "What is Azure Databricks?",
                                                            "docs": DOCS})  # fmt: skip
    assert out["citations"] == [1] and (out["grounded_share"], out["not_grounded"]) == (1.0, False)
    invented = FakeListChatModel(responses=["Databricks was founded on Mars by cats. [1]"])
    out = answer_from_docs(invented, guard=guard).invoke({"question": "What is Azure Databricks?",
                                                          "docs": DOCS})  # fmt: skip
    assert (out["grounded_share"], out["not_grounded"]) == (0.0, True)
    unguarded = answer_from_docs(invented).invoke({"question": "What is Azure Databricks?", "docs": DOCS})
    assert (unguarded["grounded_share"], unguarded["not_grounded"]) == (None, False)


QUESTION = "What is Azure Databricks?"
ANSWER = "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform. [1]"


def test_an_echoed_image_prompt_falls_back_to_a_template():
    echo = FakeListChatModel(responses=["Prompt: Azure Databricks is a fast, easy, and collaborative "
                                        "Apache Spark-based analytics platform."])  # fmt: skip
    written = image_prompt_from_answer(echo, QUESTION, ANSWER)
    assert written.source == "template"
    assert written.prompt == template_image_prompt(QUESTION, ANSWER)
    assert echo_overlap(written.prompt, f"{QUESTION} {ANSWER}") < 0.5


def test_a_scene_from_the_model_is_kept_and_cleaned():
    reply = '"A glowing cluster of servers inside a cloud, engineers at dashboards, isometric illustration"'
    scene = FakeListChatModel(responses=[reply + " [1]\n\nExtra chatter."])
    written = image_prompt_from_answer(scene, QUESTION, ANSWER)
    assert written == (
        "A glowing cluster of servers inside a cloud, engineers at dashboards, isometric illustration",
        written.usage,
        "model",
    )
    too_short = FakeListChatModel(responses=["Databricks."])
    assert image_prompt_from_answer(too_short, QUESTION, ANSWER).source == "template"


def test_the_extractive_models_templated_prompt_is_kept(guard):
    extractive = ExtractiveChatModel(embedder=guard.embedder)
    written = image_prompt_from_answer(extractive, QUESTION, ANSWER)
    assert written.source == "model" and written.prompt.startswith("An illustration of: Azure Databricks")


def test_echo_overlap_and_cleaning():
    assert echo_overlap("the cat sat on the mat", "the cat sat on the mat today") == 1.0
    assert echo_overlap("a red barn under stars", "the cat sat on the mat") == 0.0
    assert clean_image_prompt("Image prompt: 'A lake at dawn [2]'") == "A lake at dawn"
    assert len(clean_image_prompt("word " * 100).split()) == 60


# --- configuration -----------------------------------------------------------------------------


def test_llamacpp_is_a_chat_provider_named_after_its_model_file(tmp_path, monkeypatch):
    s = load_settings(REPO / "conf" / "local-llm.yaml")
    assert (s.chat.provider, s.chat.model) == ("llamacpp", "SmolLM2-135M-Instruct.Q4_1")
    gguf = tmp_path / "tiny-model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    s = load_settings(REPO / "conf" / "local-llm.yaml", ["chat.llamacpp.model_path=tiny-model.Q8_0.gguf"])
    assert s.chat.llamacpp.model_path == str(gguf)  # absolute: workers may run elsewhere
    assert s.chat.model == "tiny-model.Q8_0"
    with pytest.raises(ConfigError, match=r"embedding\.provider"):
        load_settings(None, ["embedding.provider=llamacpp"])
    with pytest.raises(ConfigError, match=r"chat\.llamacpp\.thread: unknown key; allowed: ctx_size"):
        load_settings(None, ["chat.provider=llamacpp", "chat.llamacpp.thread=2"])
    with pytest.raises(ConfigError, match=r"chat\.llamacpp\.parallel"):
        load_settings(None, ["chat.provider=llamacpp", "chat.llamacpp.parallel=0"])


def test_llamacpp_config_problems_fail_at_start_naming_the_key(tmp_path):
    s = load_settings(REPO / "conf" / "local-llm.yaml", ["chat.base_url=http://localhost:8000/v1"])
    with pytest.raises(ConfigError, match=r"chat\.base_url: not used with provider 'llamacpp'"):
        s.chat.check_remote("chat")
    s = load_settings(REPO / "conf" / "local-llm.yaml", [f"chat.llamacpp.model_path={tmp_path}/none.gguf"])
    with pytest.raises(ConfigError, match=r"chat\.llamacpp\.model_path: no such file"):
        s.chat.check_remote("chat")
    load_settings(REPO / "conf" / "local-llm.yaml").chat.check_remote("chat")  # installed: passes


def test_tidy_answer_drops_repeats_and_a_sentence_cut_at_max_tokens():
    from lakechain.chains.qa import tidy_answer

    fine = "Spark is fast. [1] It runs on clusters. [2]"
    assert tidy_answer(fine, "stop") == fine
    looped = "[1] Delta keeps a log. Delta keeps a log. It has commits [2]. The log is"
    assert tidy_answer(looped, "length") == "[1] Delta keeps a log. It has commits [2]."
    assert tidy_answer("The log is", "length") == "The log is"  # nothing better to keep
