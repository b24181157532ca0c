"""Names shared across the proxy's modules."""

from __future__ import annotations

from typing import Any, Literal

ProviderName = Literal["kimi", "glm"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("kimi", "glm")

CircuitStateName = Literal["closed", "half_open", "open"]

# What one upstream attempt ended with (span attribute `exai.provider.attempt.outcome`).
AttemptOutcome = Literal[
    "ok",
    "rate_limited",
    "server_error",
    "timeout",
    "connect_error",
    "malformed",
    "rejected",
    "pool_exhausted",
]
# How a logical call ended (metric attribute `exai.outcome` on `exai.provider.requests`);
# only `error` is the provider's failure (see provider_proxy.errors).
CallOutcome = Literal[
    "ok",
    "error",
    "cancelled",
    "client_error",
    "config_error",
    "proxy_error",
    "deadline_exceeded",
]
# Why a retry happened (metric attribute `exai.retry.reason`).
RetryReason = Literal["rate_limit", "server_error", "connect", "timeout"]

JsonObject = dict[str, Any]
