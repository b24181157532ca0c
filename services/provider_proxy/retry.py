"""When to retry an upstream call, and after how long — pure functions, no I/O.

Exponential backoff with full jitter (a random wait between 0 and
`min(max_delay, base * 2**(retry-1))`), never shorter than the provider's
`Retry-After`. A retry whose wait would not leave time for another attempt before
the request's deadline is not made: the last error is the answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from provider_proxy.errors import UpstreamError

Jitter = Callable[[float, float], float]

# Below this, an attempt cannot complete a round trip; do not start one.
MIN_ATTEMPT_BUDGET_S = 0.05


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def backoff(self, retry: int, jitter: Jitter = random.uniform) -> float:
        """Full-jitter wait before retry number `retry` (1 for the first retry)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return jitter(0.0, ceiling)

    def next_delay(
        self,
        attempt: int,
        error: UpstreamError,
        remaining_s: float,
        jitter: Jitter = random.uniform,
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to stop retrying."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        delay = self.backoff(attempt, jitter)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        if delay + MIN_ATTEMPT_BUDGET_S >= remaining_s:
            return None
        return delay
