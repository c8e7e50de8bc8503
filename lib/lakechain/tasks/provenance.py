"""What determines a result row, as hashes: the run's parts (driver) and each row's share (executors).

Why parts and not one hash: ``tasks.recompute_on`` picks which kinds of change make a done
task pending again, so each kind is kept as its own column (``chat_fp``, ``image_fp``,
``prompt_fp``, ``retrieval_fp``, ``index_checksum``) next to the row's ``fingerprint`` of
them all. A row records only the parts its task used (an image-only task has no
``retrieval_fp``), and a part that is null, because the task did not use it or the row was
written before these columns existed, is never a reason to recompute.

Pure: no pyspark; the run's parts are computed once on the driver and shipped in the
:class:`~lakechain.tasks.results.RunContext`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakechain.config import RecomputeReason as Reason

if TYPE_CHECKING:
    from lakechain.config import Settings

PART_COLUMNS = ("chat_fp", "image_fp", "prompt_fp", "retrieval_fp")
"""The hashed parts stored per row (``index_checksum`` and ``input_hash`` already exist)."""

REASON_PARTS: dict[Reason, tuple[str, ...]] = {
    "input": ("input_hash",),
    "model": ("chat_fp", "image_fp"),
    "prompt": ("prompt_fp",),
    "retrieval": ("retrieval_fp",),
    "index": ("index_checksum",),
}
"""Which row columns each ``tasks.recompute_on`` reason compares with the current run."""

PROMPT_TEMPLATES = ("qa_prompt", "image_from_answer_prompt", "refine_prompt")
"""The templates of ``chains.prompts`` a task's messages are built from."""


def digest(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys): equal settings, equal hash."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def template_text(template: Any) -> list[list[str]]:
    """(role, text) of each message of a ``ChatPromptTemplate``: what a version hash covers."""
    out = []
    for m in template.messages:
        prompt = getattr(m, "prompt", None)
        text = getattr(prompt, "template", None)
        out.append([type(m).__name__, str(text if text is not None else m)])
    return out


def prompt_versions() -> dict[str, str]:
    """Template name → sha256 of its messages, read from ``chains.prompts`` at call time."""
    from lakechain.chains import prompts

    return {name: digest(template_text(getattr(prompts, name))) for name in PROMPT_TEMPLATES}


@dataclass(frozen=True)
class RunParts:
    """The current run's part hashes (what a done row is compared with)."""

    chat_fp: str
    image_fp: str
    prompt_fp: str
    retrieval_fp: str
    index_checksum: str | None
    refines: bool
    """Image tasks call the chat model too (``images.refine_prompts``)."""

    def current(self, column: str) -> str | None:
        value = getattr(self, column)
        return None if value is None else str(value)


def chat_params(settings: Settings) -> dict[str, Any]:
    c = settings.chat
    return {
        "provider": c.provider,
        "model": c.model,
        "deployment": c.deployment,
        "temperature": c.temperature,
        "max_tokens": c.max_tokens,
        "structured_output": c.structured_output,
        "grounding": c.grounding.model_dump(),
    }


def image_params(settings: Settings) -> dict[str, Any]:
    i = settings.images
    return {
        "provider": i.provider,
        "model": i.model,
        "deployment": i.deployment,
        "size": i.size,
        "refine_prompts": i.refine_prompts,
    }


def retrieval_params(settings: Settings) -> dict[str, Any]:
    """Retrieval settings plus the query embedding model (it places the question's vector);
    a quantized model is another one (a float32 fingerprint stays as it was)."""
    r, e = settings.retrieval, settings.embedding
    return {
        **r.model_dump(exclude={"dense_weight", "keyword_weight", "doc_weight"}),
        "weights": list(r.weights),  # as the mode uses them: a dense run ignores keyword_weight
        **({"doc_weight": r.doc_weight} if r.mode == "hybrid" else {}),
        "embedding": [e.provider, e.model, e.dimensions, *([e.quantize] if e.quantize else [])],
    }


def run_parts(settings: Settings, index_checksum: str | None) -> RunParts:
    return RunParts(
        chat_fp=digest(chat_params(settings)),
        image_fp=digest(image_params(settings)),
        prompt_fp=digest(prompt_versions()),
        retrieval_fp=digest(retrieval_params(settings)),
        index_checksum=index_checksum,
        refines=settings.images.refine_prompts,
    )


def row_provenance(
    parts: RunParts | None, input_hash: str | None, *, asks: bool, draws: bool, illustrates: bool
) -> dict[str, str | None]:
    """The provenance columns of one row: the parts its task used, and their ``fingerprint``.

    ``asks``: the question was answered (retrieval, index, chat); ``draws``: an image was
    attempted; ``illustrates``: the chat model wrote the image prompt from the answer.
    """
    if parts is None:
        return {c: None for c in ("fingerprint", *PART_COLUMNS)}
    chats = asks or illustrates or (draws and parts.refines)
    row = {
        "chat_fp": parts.chat_fp if chats else None,
        "image_fp": parts.image_fp if draws else None,
        "prompt_fp": parts.prompt_fp if chats else None,
        "retrieval_fp": parts.retrieval_fp if asks else None,
    }
    index = parts.index_checksum if asks else None
    row["fingerprint"] = digest([input_hash, *(row[c] for c in PART_COLUMNS), index])
    return row
