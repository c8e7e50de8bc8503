"""Image chain: prompt → (optional refinement by the chat model) → image model → PNG bytes.

Output dict::

    {"prompt", "prompt_used", "revised_prompt", "png": bytes, "width", "height", "model",
     "usage": {"prompt_tokens", "completion_tokens", "total_tokens", "images"}}

``prompt_used`` is what the image model was sent (the refined prompt when refinement is
on); ``revised_prompt`` is the provider's own rewrite when it reports one (DALL·E 3 does).
Usage adds the refinement call's tokens to the image call's.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lakechain.chains.errors import wrap_provider_error
from lakechain.chains.images import ImageModel, png_size
from lakechain.chains.prompts import refine_prompt
from lakechain.chains.qa import chat_model_name
from lakechain.chains.usage import add_usage, empty_usage, usage_from_message

MAX_PROMPT_CHARS = 4000


def prompt_of(inputs: Any) -> tuple[str, str | None]:
    """(prompt, size) from ``"text"`` or ``{"prompt": "text", "size": "WxH"}``."""
    if isinstance(inputs, dict):
        prompt, size = inputs.get("prompt"), inputs.get("size")
    else:
        prompt, size = inputs, None
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"image_generation input needs a non-empty 'prompt' string, got {inputs!r:.200}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"image prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if size is not None and not isinstance(size, str):
        raise ValueError(f"image size must be a string like '512x512', got {size!r}")
    return prompt.strip(), size


def refine(chat_model: BaseChatModel, prompt: str, config: RunnableConfig | None = None) -> tuple[str, dict]:
    """The chat model's detailed rewrite of ``prompt`` and the tokens it cost."""
    try:
        msg = chat_model.invoke(refine_prompt.format_messages(prompt=prompt), config)
    except Exception as exc:  # classified and re-raised
        raise wrap_provider_error(
            exc, f"chat model '{chat_model_name(chat_model)}' (prompt refinement)"
        ) from exc
    text = str(msg.content).strip()
    return (text or prompt), usage_from_message(msg)


def image_chain(
    image_model: ImageModel, chat_model: BaseChatModel | None = None, *, refine_prompts: bool = False
) -> Runnable[Any, dict]:
    """Runnable prompt → generated image dict (see module docstring)."""
    if refine_prompts and chat_model is None:
        raise ValueError("refine_prompts=True needs a chat model")

    def _generate(inputs: Any, config: RunnableConfig) -> dict[str, Any]:
        prompt, size = prompt_of(inputs)
        used, usage = prompt, empty_usage()
        if refine_prompts and chat_model is not None:
            used, usage = refine(chat_model, prompt, config)
        image = image_model.generate(used, size)
        png_size(image.png)  # every provider path must hand back a real PNG
        return {
            "prompt": prompt,
            "prompt_used": used,
            "revised_prompt": image.revised_prompt,
            "png": image.png,
            "width": image.width,
            "height": image.height,
            "model": image.model,
            "usage": add_usage(usage, image.usage),
        }

    return RunnableLambda(_generate, name="lakechain_image")
