"""Names shared across the simulator's modules."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

ProviderName = Literal["kimi", "glm"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("kimi", "glm")

FAULT_HEADER = "X-Simulator-Fault"


class FaultMode(StrEnum):
    """What goes wrong with a request (DESIGN §4b)."""

    NONE = "none"
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    ERROR_500 = "error_500"  # 500
    HANG = "hang"  # no answer until the client gives up
    SLOW_STREAM = "slow_stream"  # tokens trickle at SIM_SLOW_TOKENS_PER_S
    # The answer starts only after SIM_SLOW_FIRST_TOKEN_S (a provider queueing requests),
    # then streams at the normal pace: what the gateway's first-chunk objective sees.
    SLOW_FIRST_TOKEN = "slow_first_token"
    MALFORMED = "malformed"  # 200 with a body (or SSE stream) that does not parse
    UNAUTHORIZED = "unauthorized"  # 401, as for a wrong or revoked API key
    # Streams only (a JSON answer is unaffected):
    TRUNCATED_STREAM = "truncated_stream"  # ends cleanly after one chunk, without [DONE]
    LONG_LINE = "long_line"  # one content chunk of SIM_LONG_LINE_BYTES: one very long line
