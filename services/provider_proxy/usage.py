"""Token usage as Kimi and GLM report it, and what it costs.

Both report `prompt_tokens` / `completion_tokens`; cached prompt tokens arrive either
as a top-level `usage.cached_tokens` (Kimi) or as
`usage.prompt_tokens_details.cached_tokens` (GLM, OpenAI). Cached tokens are part of
the prompt tokens and are priced at the cached rate instead of the input rate.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


def _count(value: object) -> int | None:
    # bool is an int subclass; a JSON `true` is not a token count.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def parse_usage(raw: object) -> Usage | None:
    """`Usage` from a provider's `usage` object; None when it is absent or unreadable."""
    if not isinstance(raw, Mapping):
        return None
    input_tokens = _count(raw.get("prompt_tokens"))
    output_tokens = _count(raw.get("completion_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    cached = _count(raw.get("cached_tokens"))
    details = raw.get("prompt_tokens_details")
    if cached is None and isinstance(details, Mapping):
        cached = _count(details.get("cached_tokens"))
    return Usage(input_tokens, output_tokens, min(cached or 0, input_tokens))


class ModelPrice(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, allow_inf_nan=False)
    output: float = Field(ge=0, allow_inf_nan=False)
    # Defaults to the input rate: a provider without a cache discount.
    cached_input: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    def cost_usd(self, usage: Usage) -> float:
        cached_rate = self.input if self.cached_input is None else self.cached_input
        uncached = usage.input_tokens - usage.cached_tokens
        return (
            uncached * self.input
            + usage.cached_tokens * cached_rate
            + usage.output_tokens * self.output
        ) / PER_MILLION


# Public list prices (USD / 1M tokens) of the models the llm-simulator serves, so that
# cost dashboards show plausible numbers out of the box. Override with EXAI_PRICE_TABLE.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "kimi-k2-0905-preview": ModelPrice(input=0.60, cached_input=0.15, output=2.50),
    "kimi-k2-0711-preview": ModelPrice(input=0.60, cached_input=0.15, output=2.50),
    "kimi-k2-turbo-preview": ModelPrice(input=1.15, cached_input=0.15, output=8.00),
    "kimi-latest": ModelPrice(input=1.00, cached_input=0.15, output=3.00),
    "moonshot-v1-8k": ModelPrice(input=0.20, output=2.00),
    "moonshot-v1-32k": ModelPrice(input=1.00, output=3.00),
    "moonshot-v1-128k": ModelPrice(input=2.00, output=5.00),
    "glm-4.6": ModelPrice(input=0.60, cached_input=0.11, output=2.20),
    "glm-4.5": ModelPrice(input=0.60, cached_input=0.11, output=2.20),
    "glm-4.5-air": ModelPrice(input=0.20, cached_input=0.03, output=1.10),
    "glm-4.5-flash": ModelPrice(input=0.0, cached_input=0.0, output=0.0),
}


class PriceTable:
    """Prices by model name; keys may be glob patterns (`kimi-*`), exact names win."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def price(self, model: str) -> ModelPrice | None:
        if model in self._prices:
            return self._prices[model]
        for pattern, price in self._prices.items():
            if fnmatch.fnmatchcase(model, pattern):
                return price
        return None

    def cost_usd(self, model: str, usage: Usage) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost_usd(usage)

    def models(self) -> list[str]:
        return [m for m in self._prices if not _is_pattern(m)]


def _is_pattern(name: str) -> bool:
    return any(ch in name for ch in "*?[")
