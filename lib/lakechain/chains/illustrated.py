"""Multi-stage chain: question → grounded answer → image prompt written from it → image.

Output: the QA result dict plus ``image_prompt`` and ``image`` (the image chain's dict), with
``usage`` summing all three model calls. When the answer is "not in context" no image is
made (``image`` is ``None`` and ``image_skipped`` says why): illustrating a non-answer
would only decorate a gap.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lakechain.chains.errors import wrap_provider_error
from lakechain.chains.prompts import image_from_answer_prompt, strip_citations
from lakechain.chains.qa import chat_model_name
from lakechain.chains.usage import add_usage, usage_from_message


def write_image_prompt(
    chat_model: BaseChatModel, question: str, answer: str, config: RunnableConfig | None = None
) -> tuple[str, dict[str, int]]:
    """Ask the chat model for an illustration prompt of ``answer``; returns (prompt, usage)."""
    messages = image_from_answer_prompt.format_messages(question=question, answer=strip_citations(answer))
    try:
        msg = chat_model.invoke(messages, config)
    except Exception as exc:  # classified and re-raised
        raise wrap_provider_error(exc, f"chat model '{chat_model_name(chat_model)}' (image prompt)") from exc
    text = strip_citations(str(msg.content)).strip()
    return (text or f"An illustration of: {strip_citations(answer)}"), usage_from_message(msg)


def illustrated_answer_chain(
    qa: Runnable[Any, dict], chat_model: BaseChatModel, image: Runnable[Any, dict]
) -> Runnable[Any, dict]:
    """Runnable ``"question" | {"question"}`` → answer, sources and image together."""

    def _run(inputs: Any, config: RunnableConfig) -> dict[str, Any]:
        result = dict(qa.invoke(inputs, config))
        if result.get("not_in_context"):
            result.update(image_prompt=None, image=None, image_skipped="answer not in context")
            return result
        prompt, prompt_usage = write_image_prompt(chat_model, result["question"], result["answer"], config)
        picture = image.invoke({"prompt": prompt}, config)
        result.update(
            image_prompt=prompt,
            image=picture,
            image_skipped=None,
            usage=add_usage(result.get("usage"), prompt_usage, picture.get("usage")),
        )
        return result

    return RunnableLambda(_run, name="lakechain_illustrated_answer")
