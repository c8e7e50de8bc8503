"""Multi-stage chain: question → grounded answer → image prompt written from it → image.

Output: the QA result dict plus ``image_prompt`` and ``image`` (the image chain's dict), with
``usage`` summing all three model calls. When the answer is "not in context" no image is
made (``image`` is ``None`` and ``image_skipped`` says why): illustrating a non-answer
would only decorate a gap.

A generative model asked for an image prompt tends to echo the answer back. The reply is
cleaned (first paragraph, no label or markers) and refused when most of its word pairs come
from the question and answer (:func:`grounding.echo_overlap` ≥ ``ECHO_LIMIT``); a template
scene is used instead and ``image_prompt_source`` says ``"template"``. The extractive model's
templated prompt quotes the answer by design and is taken as it is.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lakechain.chains.errors import wrap_provider_error
from lakechain.chains.grounding import clean_image_prompt, echo_overlap, template_image_prompt
from lakechain.chains.prompts import image_from_answer_prompt, strip_citations
from lakechain.chains.qa import chat_model_name
from lakechain.chains.usage import add_usage, usage_from_message

ECHO_LIMIT = 0.5
"""Share of a prompt's word pairs found in the question and answer above which it is an echo."""
MIN_PROMPT_WORDS = 4


class ImagePrompt(NamedTuple):
    prompt: str
    usage: dict[str, int]
    source: Literal["model", "template"]


def image_prompt_from_answer(
    chat_model: BaseChatModel, question: str, answer: str, config: RunnableConfig | None = None
) -> ImagePrompt:
    """Ask the chat model for an illustration prompt of ``answer``; echoes fall back to a template."""
    plain = strip_citations(answer)
    messages = image_from_answer_prompt.format_messages(question=question, answer=plain)
    try:
        msg = chat_model.invoke(messages, config)
    except Exception as exc:  # classified and re-raised
        raise wrap_provider_error(exc, f"chat model '{chat_model_name(chat_model)}' (image prompt)") from exc
    usage = usage_from_message(msg)
    if (msg.response_metadata or {}).get("extractive"):
        text = strip_citations(str(msg.content)).strip()
        return ImagePrompt(text or f"An illustration of: {plain}", usage, "model")
    text = clean_image_prompt(str(msg.content))
    if len(text.split()) < MIN_PROMPT_WORDS or echo_overlap(text, f"{question} {plain}") >= ECHO_LIMIT:
        return ImagePrompt(template_image_prompt(question, plain), usage, "template")
    return ImagePrompt(text, usage, "model")


def write_image_prompt(
    chat_model: BaseChatModel, question: str, answer: str, config: RunnableConfig | None = None
) -> tuple[str, dict[str, int]]:
    """(prompt, usage) of :func:`image_prompt_from_answer`."""
    written = image_prompt_from_answer(chat_model, question, answer, config)
    return written.prompt, written.usage


def illustrated_answer_chain(
    qa: Runnable[Any, dict], chat_model: BaseChatModel, image: Runnable[Any, dict]
) -> Runnable[Any, dict]:
    """Runnable ``"question" | {"question"}`` → answer, sources and image together."""

    def _run(inputs: Any, config: RunnableConfig) -> dict[str, Any]:
        result = dict(qa.invoke(inputs, config))
        if result.get("not_in_context"):
            result.update(image_prompt=None, image_prompt_source=None, image=None)
            result["image_skipped"] = "answer not in context"
            return result
        prompt, prompt_usage, source = image_prompt_from_answer(
            chat_model, result["question"], result["answer"], config
        )
        picture = image.invoke({"prompt": prompt}, config)
        result.update(
            image_prompt=prompt,
            image_prompt_source=source,
            image=picture,
            image_skipped=None,
            usage=add_usage(result.get("usage"), prompt_usage, picture.get("usage")),
        )
        return result

    return RunnableLambda(_run, name="lakechain_illustrated_answer")
