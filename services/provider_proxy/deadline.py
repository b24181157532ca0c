"""The total time a request may take, across attempts, back-off waits and fallback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from provider_proxy.errors import DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    at: float  # event-loop time
    budget_s: float

    @classmethod
    def start(cls, budget_s: float) -> Deadline:
        return cls(asyncio.get_running_loop().time() + budget_s, budget_s)

    def remaining(self) -> float:
        return max(0.0, self.at - asyncio.get_running_loop().time())

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the body until the deadline; past it, raise :class:`DeadlineExceeded`."""
        scope = asyncio.timeout_at(self.at)
        try:
            async with scope:
                yield
        except TimeoutError:
            if scope.expired():
                raise DeadlineExceeded(self.budget_s) from None
            raise
