"""What an operator reads beyond requests and errors: spend per client, fallbacks,
rate-limit headroom, the time spent on the provider, and series that exist at 0."""

from __future__ import annotations

import httpx
import pytest

from exai_contracts.ids import CLIENT_ID_HEADER
from exai_contracts.timing import SERVER_TIMING_HEADER, parse_sse_comment, parse_upstream
from exai_telemetry import names
from provider_proxy.telemetry import PROVIDER_FAILURE_TYPES
from tests.integration.provider_proxy.conftest import (
    MODEL,
    TIME_SCALE,
    Stack,
    chat_body,
    running_stack,
)
from tests.support.internal_auth import PROVIDER_TOKEN
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration

LATENCY_MS = 200


async def chat_as(stack: Stack, client_id: str | None, provider: str = "kimi") -> httpx.Response:
    headers = {} if client_id is None else {CLIENT_ID_HEADER: client_id}
    async with stack.client(headers=headers) as client:
        return await client.post("/v1/chat/completions", json=chat_body(provider))


def by_client(stack: Stack, metric: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for attributes, point in metric_points(stack.reader, metric):
        client = attributes[names.CLIENT_ID]
        totals[client] = totals.get(client, 0) + point.value
    return totals


async def test_tokens_and_cost_are_counted_per_client(stack: Stack) -> None:
    answers = {
        "team-a": await chat_as(stack, "team-a"),
        "unknown": await chat_as(stack, None),  # a direct caller sends no client id
        "other": await chat_as(stack, "not a client id!"),  # malformed: bounded as `other`
    }
    assert all(r.status_code == 200 for r in answers.values())
    await stack.settled(3)
    expected = {
        label: sum(r.json()["usage"][k] for k in ("prompt_tokens", "completion_tokens"))
        + r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
        for label, r in answers.items()
    }
    assert by_client(stack, names.M_PROVIDER_TOKENS) == expected
    cost = by_client(stack, names.M_PROVIDER_COST)
    assert set(cost) == {"team-a", "unknown", "other"}
    assert all(value > 0 for value in cost.values())


async def test_a_proxy_secret_is_never_a_client_label(stack: Stack) -> None:
    assert (await chat_as(stack, PROVIDER_TOKEN)).status_code == 200
    await stack.settled(1)
    labels = set(by_client(stack, names.M_PROVIDER_TOKENS))
    assert labels <= {"other"}, labels


def fallbacks(stack: Stack) -> dict[tuple[str, str, str], int]:
    return {
        (a[names.FALLBACK_FROM], a[names.FALLBACK_TO], a[names.OUTCOME]): p.value
        for a, p in metric_points(stack.reader, names.M_PROVIDER_FALLBACKS)
    }


async def test_fallbacks_are_counted_from_to_and_by_outcome(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, fallback_provider="glm", retry_max_attempts=1) as stack:
        # Before any traffic: the configured pair exists, at 0, for both outcomes.
        assert fallbacks(stack) == {("kimi", "glm", "ok"): 0, ("kimi", "glm", "error"): 0}
        await stack.global_fault("error_500", "kimi")
        assert (await stack.chat("kimi")).status_code == 200
        await stack.global_fault("error_500")  # now the fallback fails too
        assert (await stack.chat("kimi")).status_code == 502
        await stack.settled(2)
    assert fallbacks(stack) == {("kimi", "glm", "ok"): 1, ("kimi", "glm", "error"): 1}


async def test_requests_series_exist_at_zero_before_any_traffic(stack: Stack) -> None:
    points = {
        (
            a["gen_ai.provider.name"],
            a["gen_ai.request.model"],
            a[names.OUTCOME],
            a.get("error.type"),
        )
        for a, p in metric_points(stack.reader, names.M_PROVIDER_REQUESTS)
        if p.value == 0
    }
    for provider, model in MODEL.items():
        assert (provider, model, "ok", None) in points
        for error_type in PROVIDER_FAILURE_TYPES:
            assert (provider, model, "error", error_type) in points
        assert (provider, "other", "error", "server_error") in points
    assert "circuit_open" in PROVIDER_FAILURE_TYPES and "timeout" in PROVIDER_FAILURE_TYPES


def gauges(stack: Stack, metric: str) -> dict[tuple[str, str], int]:
    return {
        (a["gen_ai.provider.name"], a[names.RATELIMIT_RESOURCE]): p.value
        for a, p in metric_points(stack.reader, metric)
    }


async def test_rate_limit_headroom_from_the_providers_headers(captured: CapturedTelemetry) -> None:
    limits = {"ratelimit_requests": 100, "ratelimit_tokens": 50_000, "ratelimit_window_s": 600}
    async with running_stack(captured, simulator=limits) as stack:
        # Nothing heard from any provider yet: no series (not a made-up 0).
        assert gauges(stack, names.M_PROVIDER_RATELIMIT_REMAINING) == {}
        first = (await stack.chat("kimi")).json()["usage"]
        second = (await stack.chat("kimi")).json()["usage"]
        spent = sum(u["prompt_tokens"] + u["completion_tokens"] for u in (first, second))
        assert gauges(stack, names.M_PROVIDER_RATELIMIT_LIMIT) == {
            ("kimi", "requests"): 100,
            ("kimi", "tokens"): 50_000,
        }
        # GLM has not been called: it has no headroom series at all.
        assert gauges(stack, names.M_PROVIDER_RATELIMIT_REMAINING) == {
            ("kimi", "requests"): 98,
            ("kimi", "tokens"): 50_000 - spent,
        }
        # A 429 says the requests are spent.
        await stack.global_fault("rate_limit", "kimi")
        assert (await stack.chat("kimi")).status_code == 502
        assert gauges(stack, names.M_PROVIDER_RATELIMIT_REMAINING)[("kimi", "requests")] == 0


async def test_a_provider_without_rate_limit_headers_has_no_gauges(
    captured: CapturedTelemetry,
) -> None:
    no_headers = {"ratelimit_requests": 0, "ratelimit_tokens": 0}
    async with running_stack(captured, simulator=no_headers) as stack:
        assert (await stack.chat("kimi")).status_code == 200
        assert gauges(stack, names.M_PROVIDER_RATELIMIT_REMAINING) == {}
        assert gauges(stack, names.M_PROVIDER_RATELIMIT_LIMIT) == {}


async def test_the_time_spent_on_the_provider_is_reported(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, simulator={"latency_ms": LATENCY_MS}) as stack:
        response = await stack.chat("kimi")
        assert response.status_code == 200
        upstream_s = parse_upstream(response.headers[SERVER_TIMING_HEADER])
        assert upstream_s is not None
        assert LATENCY_MS / 1000 <= upstream_s < response.elapsed.total_seconds()

        stream_waits: list[float] = []
        async with (
            stack.client() as client,
            client.stream(
                "POST", "/v1/chat/completions", json=chat_body("kimi", stream=True)
            ) as streamed,
        ):
            lines = [line async for line in streamed.aiter_lines()]
            header_s = parse_upstream(streamed.headers[SERVER_TIMING_HEADER])
        for line in lines:
            value = parse_sse_comment(line)
            if value is not None:
                stream_waits.append(value)
        # The header has the wait for the stream's start; the comment before [DONE]
        # the whole wait, which includes it.
        assert header_s is not None and header_s >= LATENCY_MS / 1000
        (whole_s,) = stream_waits
        assert whole_s >= header_s
        comment = next(i for i, line in enumerate(lines) if parse_sse_comment(line) is not None)
        assert comment < lines.index("data: [DONE]")


async def test_a_fast_failure_reports_no_provider_time(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, circuit_failure_threshold=1, retry_max_attempts=1) as stack:
        await stack.global_fault("error_500", "kimi")
        assert (await stack.chat("kimi")).status_code == 502
        await stack.global_fault("none")
        refused = await stack.chat("kimi")  # circuit open: the provider is not called
    assert refused.status_code == 503
    upstream_s = parse_upstream(refused.headers[SERVER_TIMING_HEADER])
    assert upstream_s is not None and upstream_s < 0.05 * TIME_SCALE
