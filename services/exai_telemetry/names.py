"""EXAI's own telemetry names (DESIGN §6). Standard names come from semconv constants.

Dashboards, alert rules and the collector's tail-sampling policies use these strings;
change one only together with them.
"""

from typing import Final

# --- span / metric attributes -------------------------------------------------------
CORRELATION_ID: Final = "exai.correlation_id"
SESSION_ID: Final = "exai.session_id"  # spans only: unbounded
# Which client's token authenticated the call (the id, never the token). On the
# gateway's spans; on provider-proxy's token and cost counters too, where it is bounded
# (provider_proxy.telemetry.ClientLabels).
CLIENT_ID: Final = "exai.client.id"
REQUEST_ID: Final = "exai.request_id"  # spans only: unbounded
CONTINUATION_ID: Final = "exai.continuation_id"  # spans only: unbounded
TOOL: Final = "exai.tool"
OUTCOME: Final = "exai.outcome"
ERROR_CODE: Final = "exai.error.code"  # the gateway's error code on a failed call's span
PROTOCOL: Final = "exai.protocol"  # native | mcp
PROVIDER_ATTEMPT: Final = "exai.provider.attempt"  # 1-based, on each attempt span
ATTEMPT_OUTCOME: Final = "exai.provider.attempt.outcome"
PROVIDER_RETRIES: Final = "exai.provider.retries"  # int on the proxy request span
PROVIDER_FALLBACK: Final = "exai.provider.fallback"  # bool on the proxy request span
CIRCUIT_STATE: Final = "exai.provider.circuit_state"  # closed | half_open | open
RETRY_REASON: Final = "exai.retry.reason"  # rate_limit | server_error | connect | timeout
TOKEN_TYPE: Final = "exai.token.type"  # input | output | cached
CACHE_RESULT: Final = "exai.cache.result"  # hit | miss | error
DEPENDENCY: Final = "exai.dependency"  # cache | durable
OPERATION: Final = "exai.operation"
COST_USD: Final = "exai.cost.usd"  # span attribute, per request
CACHED_TOKENS: Final = "exai.usage.cached_tokens"  # span attribute

# --- metrics --------------------------------------------------------------------------
M_PROVIDER_TOKENS: Final = "exai.provider.tokens"
M_PROVIDER_COST: Final = "exai.provider.cost"
# The hourly spend budget (EXAI_SPEND_BUDGET_USD_PER_HOUR), for the TokenSpendAboveBudget alert.
M_PROVIDER_COST_BUDGET: Final = "exai.provider.cost.budget"
M_PROVIDER_RETRIES: Final = "exai.provider.retries"
M_PROVIDER_CIRCUIT_STATE: Final = "exai.provider.circuit.state"
M_PROVIDER_REQUESTS: Final = "exai.provider.requests"
M_GATEWAY_CONNECTIONS: Final = "exai.gateway.connections"
M_GATEWAY_CALLS: Final = "exai.gateway.calls"
M_GATEWAY_CALL_DURATION: Final = "exai.gateway.call.duration"
M_GATEWAY_INFLIGHT: Final = "exai.gateway.inflight"
M_STORAGE_CACHE_LOOKUPS: Final = "exai.storage.cache.lookups"
M_STORAGE_DEPENDENCY_UP: Final = "exai.storage.dependency.up"
M_STORAGE_DURABLE_ERRORS: Final = "exai.storage.durable.errors"
# 1 per configured dependency, by exai.dependency and db.system.name: a card can say
# "not configured" instead of "No data" (no Redis under `make run`).
M_STORAGE_DEPENDENCY_CONFIGURED: Final = "exai.storage.dependency.configured"

# --- latency the gateway controls -----------------------------------------------------
# Streamed calls: from the call's start at the gateway to its first chunk to the client.
M_GATEWAY_TIME_TO_FIRST_CHUNK: Final = "exai.gateway.time_to_first_chunk"
# A call's duration minus the wall time spent waiting on the upstream LLM providers.
M_GATEWAY_OVERHEAD_DURATION: Final = "exai.gateway.overhead.duration"
# One event per finished successful call and indicator, met or missed its threshold.
M_GATEWAY_LATENCY_OBJECTIVE: Final = "exai.gateway.latency_objective"
SLO_INDICATOR: Final = "exai.slo.indicator"  # first_chunk | overhead
SLO_RESULT: Final = "exai.slo.result"  # met | missed

# --- provider-proxy: fallbacks and rate-limit headroom ------------------------------
M_PROVIDER_FALLBACKS: Final = "exai.provider.fallbacks"
FALLBACK_FROM: Final = "exai.fallback.from"  # provider names
FALLBACK_TO: Final = "exai.fallback.to"
M_PROVIDER_RATELIMIT_REMAINING: Final = "exai.provider.ratelimit.remaining"
M_PROVIDER_RATELIMIT_LIMIT: Final = "exai.provider.ratelimit.limit"
RATELIMIT_RESOURCE: Final = "exai.ratelimit.resource"  # requests | tokens

CIRCUIT_STATE_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
