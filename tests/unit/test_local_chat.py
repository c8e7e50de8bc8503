"""The offline extractive chat model: quotes the best-supported sentence, or refuses."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from lakechain.chains.local_chat import ExtractiveChatModel, parse_qa_messages, split_sentences
from lakechain.chains.prompts import (
    NOT_IN_CONTEXT,
    image_from_answer_prompt,
    qa_prompt,
    refine_prompt,
)
from lakechain.config import EmbeddingConfig

PASSAGES = [
    "Delta Lake stores tables as Parquet files plus a transaction log. It supports time travel.",
    "The cafeteria opens at nine. GPT-4 is a powerful language model developed by OpenAI. "
    "It accepts text and image inputs.",
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "Bananas are rich in potassium and grow in tropical climates.",
]


@pytest.fixture(scope="module")
def model():
    from lakechain.embed.embedders import cached_embedder

    return ExtractiveChatModel(embedder=cached_embedder(EmbeddingConfig()))


def _qa_messages(question: str, passages: list[str]):
    context = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    return qa_prompt.format_messages(context=context, question=question)


def test_finds_the_supporting_sentence_among_distractors(model):
    reply = model.invoke(_qa_messages("Who developed GPT-4?", PASSAGES))
    assert reply.content.startswith("GPT-4 is a powerful language model developed by OpenAI. [2]")
    assert "cafeteria" not in reply.content and "Bananas" not in reply.content


def test_cites_the_passage_number_it_quotes(model):
    reply = model.invoke(_qa_messages("What is Azure Databricks?", PASSAGES))
    assert reply.content == (
        "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform. [3]"
    )


def test_says_not_in_context_when_nothing_matches(model):
    reply = model.invoke(_qa_messages("What is the capital of France?", PASSAGES))
    assert reply.content == NOT_IN_CONTEXT


def test_no_context_means_not_in_context(model):
    assert model.invoke([HumanMessage("Question: What is Azure Databricks?")]).content == NOT_IN_CONTEXT
    assert model.invoke("hello there").content == NOT_IN_CONTEXT


def test_deterministic_with_usage_and_honest_metadata(model):
    messages = _qa_messages("Does Delta Lake support time travel?", PASSAGES)
    a, b = model.invoke(messages), model.invoke(messages)
    assert a.content == b.content
    assert "[1]" in a.content
    prompt_words = sum(len(m.content.split()) for m in messages)
    assert a.usage_metadata["input_tokens"] == prompt_words
    assert a.usage_metadata["output_tokens"] == len(a.content.split())
    assert a.usage_metadata["total_tokens"] == prompt_words + len(a.content.split())
    assert a.response_metadata["model_name"] == "lakechain-extractive"
    assert a.response_metadata["extractive"] is True


def test_raising_the_floor_turns_a_weak_match_into_a_refusal(model):
    strict = model.model_copy(update={"similarity_floor": 0.99})
    assert strict.invoke(_qa_messages("Who developed GPT-4?", PASSAGES)).content == NOT_IN_CONTEXT


def test_writes_an_image_prompt_from_an_answer(model):
    messages = image_from_answer_prompt.format_messages(
        question="What is Azure Databricks?",
        answer="Azure Databricks is an Apache Spark-based analytics platform. [1] It is fast. [1]",
    )
    out = model.invoke(messages).content
    assert out == "An illustration of: Azure Databricks is an Apache Spark-based analytics platform."


def test_refines_an_image_request_keeping_it(model):
    out = model.invoke(refine_prompt.format_messages(prompt="A futuristic city with flying cars")).content
    assert "A futuristic city with flying cars" in out and len(out) > len(
        "A futuristic city with flying cars"
    )


def test_parsing_and_sentence_split():
    messages = [
        SystemMessage("sys"),
        HumanMessage("Context:\n[1] One two. Three four!\n[12] x y z\n\nQuestion: Why?"),
    ]
    question, passages = parse_qa_messages(messages)
    assert question == "Why?"
    assert passages == [(1, "One two. Three four!"), (12, "x y z")]
    assert split_sentences("Yes. It is fine. A b c? ok") == ["It is fine.", "A b c? ok"]
