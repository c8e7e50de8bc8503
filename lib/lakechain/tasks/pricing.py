"""What model calls cost: the price table (defaults + ``prices`` in config) and a row's cost (pure).

Why a table in config: list prices change and Azure deployments are priced per contract, so
the defaults below are a starting point a user overrides per model. Local models
(``local``, ``llamacpp``) cost nothing; a remote model with no price has an unknown cost
(``cost_usd`` null), which a run with ``tasks.max_cost_usd`` refuses at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from lakechain.config import EndpointConfig, Settings


class Price(NamedTuple):
    """USD per 1M input tokens, per 1M output tokens, and per generated image."""

    input_per_1m: float
    output_per_1m: float = 0.0
    per_image: float = 0.0


FREE = Price(0.0, 0.0, 0.0)
LOCAL_PROVIDERS = frozenset({"local", "llamacpp"})

DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
    "dall-e-3": Price(0.0, 0.0, 0.04),
    "dall-e-2": Price(0.0, 0.0, 0.02),
}
"""OpenAI list prices (USD, standard tier, 2025); Azure OpenAI global deployments charge
the same. Dated variants (``gpt-4o-2024-08-06``) use their base model's price."""


def price_table(settings: Settings) -> dict[str, Price]:
    """The defaults with the config's ``prices`` entries added or overriding."""
    own = {name: Price(p.input_per_1m, p.output_per_1m, p.per_image) for name, p in settings.prices.items()}
    return {**DEFAULT_PRICES, **own}


def price_for(endpoint: EndpointConfig, table: dict[str, Price]) -> Price | None:
    """The endpoint's price: free when local; else by model name, then deployment name, the
    longest table entry the name starts with (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``)."""
    if endpoint.provider in LOCAL_PROVIDERS:
        return FREE
    for name in (endpoint.model, endpoint.deployment):
        if not name:
            continue
        if name in table:
            return table[name]
        prefixes = [k for k in table if name.startswith(k + "-")]
        if prefixes:
            return table[max(prefixes, key=len)]
    return None


def row_cost(
    prompt_tokens: int, completion_tokens: int, images: int, chat: Price | None, image: Price | None
) -> float | None:
    """USD of one task's calls; None when a model it used has no price."""
    cost = 0.0
    if prompt_tokens or completion_tokens:
        if chat is None:
            return None
        cost += (prompt_tokens * chat.input_per_1m + completion_tokens * chat.output_per_1m) / 1e6
    if images:
        if image is None:
            return None
        cost += images * image.per_image
    return cost


def unpriced(settings: Settings) -> list[str]:
    """``section: model`` of each remote chat/image model with no price (for the budget check)."""
    table = price_table(settings)
    return [
        f"{name}: {ep.deployment or ep.model}"
        for name, ep in (("chat", settings.chat), ("images", settings.images))
        if price_for(ep, table) is None
    ]
