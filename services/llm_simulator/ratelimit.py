"""The `x-ratelimit-*` headers real providers send, so rate-limit gauges can be tested.

OpenAI (and Moonshot's and Zhipu's OpenAI-compatible APIs) report, per API key, the
request and token limits of the current window and what is left of them:
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``. The simulator keeps one
window per provider: it starts with the first request, lasts `SIM_RATELIMIT_WINDOW_S`
and counts every chat request and the tokens of every answer in it, so the figures are
deterministic for a given sequence of requests. Nothing is refused for being over the
limit (that is the `rate_limit` fault's job); remaining figures stop at 0.
Plain data and decisions, no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from llm_simulator.types import ProviderName


@dataclass
class _Window:
    started: float
    requests: int = 0
    tokens: int = 0


class RateLimitWindows:
    def __init__(
        self,
        requests_limit: int,
        tokens_limit: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A limit of 0 sends no headers for that resource."""
        self.requests_limit = requests_limit
        self.tokens_limit = tokens_limit
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[ProviderName, _Window] = {}

    def reset(self) -> None:
        self._windows.clear()

    def spend(
        self, provider: ProviderName, *, requests: int = 1, tokens: int = 0
    ) -> dict[str, str]:
        """Count one request (and its answer's tokens); the headers to send with it."""
        now = self._clock()
        window = self._windows.get(provider)
        if window is None or now - window.started >= self.window_s:
            window = self._windows[provider] = _Window(now)
        window.requests += requests
        window.tokens += tokens
        reset = f"{max(math.ceil(window.started + self.window_s - now), 0)}s"
        headers: dict[str, str] = {}
        for resource, limit, used in (
            ("requests", self.requests_limit, window.requests),
            ("tokens", self.tokens_limit, window.tokens),
        ):
            if limit > 0:
                headers[f"x-ratelimit-limit-{resource}"] = str(limit)
                headers[f"x-ratelimit-remaining-{resource}"] = str(max(limit - used, 0))
                headers[f"x-ratelimit-reset-{resource}"] = reset
        return headers

    def exhausted(self, provider: ProviderName) -> dict[str, str]:
        """The headers of a 429: the request counts, no requests are left."""
        headers = self.spend(provider)
        if "x-ratelimit-remaining-requests" in headers:
            headers["x-ratelimit-remaining-requests"] = "0"
        return headers
