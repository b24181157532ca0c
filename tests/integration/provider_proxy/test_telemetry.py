"""Spans and metrics of the proxy, as the collector, dashboards and alerts read them."""

from __future__ import annotations

import json

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from exai_telemetry import names
from provider_proxy.types import ProviderName
from tests.integration.provider_proxy.conftest import (
    API_KEY,
    MODEL,
    PROXY,
    Stack,
    chat_body,
    running_stack,
)
from tests.support.sse import sse_payloads
from tests.support.telemetry import CapturedTelemetry, metric_points, metric_unit

pytestmark = pytest.mark.integration

TTFC = "gen_ai.client.operation.time_to_first_chunk"
TPOC = "gen_ai.client.operation.time_per_output_chunk"
# The GenAI semconv's advice for the client latency histograms.
GEN_AI_LATENCY_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
)  # fmt: skip

# kimi-k2-turbo-preview's default price, USD per 1M tokens.
KIMI_TURBO = {"input": 1.15, "cached_input": 0.15, "output": 8.00}


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


async def test_span_tree_of_a_retried_call(stack: Stack) -> None:
    stack.faults.arm("rate_limit", 1)
    response = await stack.chat("kimi", max_tokens=300, temperature=0.3)
    assert response.status_code == 200
    await stack.settled(1)
    spans = list(stack.captured.spans())
    proxy = stack.proxy_spans()

    server = stack.proxy_spans("POST /v1/chat/completions")[0]
    assert server.kind is SpanKind.SERVER
    assert server.attributes[names.PROVIDER_RETRIES] == 1
    assert server.attributes[names.PROVIDER_FALLBACK] is False
    assert server.attributes[names.CIRCUIT_STATE] == "closed"

    call = stack.proxy_spans(f"chat {MODEL['kimi']}")[0]
    assert call.kind is SpanKind.CLIENT
    assert parent_of(call, proxy) is server
    attempts = sorted(
        (s for s in proxy if s.name.startswith("attempt ")), key=lambda s: s.start_time or 0
    )
    assert [a.name for a in attempts] == ["attempt 1", "attempt 2"]
    for attempt in attempts:
        assert attempt.kind is SpanKind.INTERNAL
        assert parent_of(attempt, proxy) is call
        # Each attempt wraps the httpx CLIENT span, which the simulator continues.
        (http,) = [s for s in proxy if s.parent and s.parent.span_id == attempt.context.span_id]
        assert http.kind is SpanKind.CLIENT and http.name == "POST"
        upstream = next(s for s in spans if s.parent and s.parent.span_id == http.context.span_id)
        assert upstream.resource.attributes["service.name"] == "llm-simulator"
    first, second = attempts
    assert first.attributes[names.ATTEMPT_OUTCOME] == "rate_limited"
    assert first.attributes["error.type"] == "rate_limited"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes[names.ATTEMPT_OUTCOME] == "ok"
    assert second.status.status_code is StatusCode.UNSET

    body = response.json()
    usage = body["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    attributes = call.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "kimi"
    assert attributes["gen_ai.request.model"] == MODEL["kimi"]
    assert attributes["gen_ai.response.model"] == MODEL["kimi"]
    assert attributes["gen_ai.response.id"] == body["id"]
    assert list(attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert attributes["gen_ai.request.max_tokens"] == 300
    assert attributes["gen_ai.request.temperature"] == 0.3
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes[names.CACHED_TOKENS] == cached > 0
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(stack.sim_url.rsplit(":", 1)[1])
    assert attributes[names.PROVIDER_RETRIES] == 1
    expected_cost = (
        (usage["prompt_tokens"] - cached) * KIMI_TURBO["input"]
        + cached * KIMI_TURBO["cached_input"]
        + usage["completion_tokens"] * KIMI_TURBO["output"]
    ) / 1e6
    assert attributes[names.COST_USD] == pytest.approx(expected_cost)
    # No prompt or completion text unless EXAI_CAPTURE_CONTENT=true.
    content = body["choices"][0]["message"]["content"]
    assert not any(content in str(v) for s in proxy for v in (s.attributes or {}).values())


async def test_failed_call_marks_its_spans_as_errors(stack: Stack) -> None:
    await stack.global_fault("error_500", "glm")
    assert (await stack.chat("glm")).status_code == 502
    await stack.settled(1)
    call = stack.proxy_spans("chat glm-4.5")[0]
    assert call.status.status_code is StatusCode.ERROR
    assert call.attributes["error.type"] == "server_error"
    server = stack.proxy_spans("POST /v1/chat/completions")[0]
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes[names.PROVIDER_RETRIES] == 2


async def test_no_api_key_anywhere_in_any_span(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, fallback_provider="glm") as stack:
        stack.faults.arm("error_500", 3)
        await stack.chat("kimi")
        await stack.chat("glm", stream=True)
        await stack.settled(2)
    spans = captured.spans()
    assert {s.resource.attributes["service.name"] for s in spans} == {PROXY, "llm-simulator"}
    for span in spans:
        dumped = json.dumps(
            {
                "attributes": dict(span.attributes or {}),
                "events": [dict(e.attributes or {}) for e in span.events],
                "resource": dict(span.resource.attributes),
                "status": span.status.description,
            },
            default=str,
        )
        assert API_KEY not in dumped, span.name
        assert "Bearer" not in dumped, span.name


async def test_metrics_for_tokens_cost_retries_outcomes_and_circuits(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(
        captured, circuit_failure_threshold=2, retry_max_attempts=2, spend_budget_usd_per_hour=12.5
    ) as stack:
        stack.faults.arm("rate_limit", 1)
        ok = (await stack.chat("kimi")).json()
        await stack.global_fault("error_500", "glm")
        assert (await stack.chat("glm")).status_code == 502
        assert (await stack.chat("kimi", model="kimi-no-such-model")).status_code == 404
        reader = stack.reader

        usage = ok["usage"]
        kimi = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "kimi",
            "gen_ai.request.model": MODEL["kimi"],
        }
        token_usage = {
            attrs["gen_ai.token.type"]: point.sum
            for attrs, point in metric_points(reader, "gen_ai.client.token.usage")
            if attrs.items() >= kimi.items()
        }
        assert token_usage == {
            "input": usage["prompt_tokens"],
            "output": usage["completion_tokens"],
        }
        tokens = {
            attrs[names.TOKEN_TYPE]: point.value
            for attrs, point in metric_points(reader, names.M_PROVIDER_TOKENS)
            if attrs.items() >= kimi.items()
        }
        assert tokens == {
            "input": usage["prompt_tokens"],
            "output": usage["completion_tokens"],
            "cached": usage["prompt_tokens_details"]["cached_tokens"],
        }
        # A direct caller (no gateway tool in baggage) is attributed as `direct`.
        direct = {**kimi, names.TOOL: "direct", names.CLIENT_ID: "unknown"}
        (cost,) = [p.value for a, p in metric_points(reader, names.M_PROVIDER_COST) if a == direct]
        assert cost > 0
        # An annotation unit: Prometheus names the counter exai_provider_cost_total.
        assert metric_unit(reader, names.M_PROVIDER_COST) == "{USD}"
        # The TokenSpendAboveBudget alert compares spend with the budget the proxy publishes.
        (budget,) = [p.value for _, p in metric_points(reader, names.M_PROVIDER_COST_BUDGET)]
        assert budget == 12.5

        retries = {
            (a["gen_ai.provider.name"], a[names.RETRY_REASON]): p.value
            for a, p in metric_points(reader, names.M_PROVIDER_RETRIES)
        }
        assert retries == {("kimi", "rate_limit"): 1, ("glm", "server_error"): 1}

        requests = {
            (
                a["gen_ai.provider.name"],
                a["gen_ai.request.model"],
                a[names.OUTCOME],
                a.get("error.type"),
            ): p.value
            for a, p in metric_points(reader, names.M_PROVIDER_REQUESTS)
            if p.value  # the series created at 0 at start-up
        }
        assert requests == {
            ("kimi", MODEL["kimi"], "ok", None): 1,
            ("glm", "glm-4.5", "error", "server_error"): 1,
            # Unlisted model names share one label value: label sets stay bounded. A
            # provider's 404 for the request is the client's mistake, not its failure.
            ("kimi", "other", "client_error", "rejected"): 1,
        }
        durations = {
            (a["gen_ai.provider.name"], a.get("error.type")): p.count
            for a, p in metric_points(reader, "gen_ai.client.operation.duration")
        }
        assert durations[("kimi", None)] == 1
        assert durations[("glm", "server_error")] == 1
        assert metric_unit(reader, "gen_ai.client.operation.duration") == "s"

        circuits = {
            a["gen_ai.provider.name"]: p.value
            for a, p in metric_points(reader, names.M_PROVIDER_CIRCUIT_STATE)
        }
        assert circuits == {"kimi": 0, "glm": 2}


async def test_stream_usage_is_accounted_like_json(stack: Stack) -> None:
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body("glm", stream=True)) as r,
    ):
        async for _ in r.aiter_lines():
            pass
    await stack.settled(1, name="chat glm-4.5")
    call = stack.proxy_spans("chat glm-4.5")[0]
    assert call.attributes["gen_ai.request.stream"] is True
    assert call.attributes["gen_ai.usage.output_tokens"] > 0
    assert call.attributes[names.CACHED_TOKENS] > 0
    assert list(call.attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert call.attributes[names.COST_USD] > 0
    (attempt,) = [s for s in stack.proxy_spans() if s.name == "attempt 1"]
    # The attempt lasts as long as the stream it carries.
    assert attempt.end_time is not None and call.end_time is not None
    assert attempt.attributes[names.ATTEMPT_OUTCOME] == "ok"
    assert attempt.end_time <= call.end_time


async def upstream_chunk_count(
    stack: Stack, provider: ProviderName, body: dict[str, object]
) -> int:
    """How many chunks the simulator streams for what the proxy sends it for `body`."""
    adapter = stack.proxy.adapters[provider]
    payload = adapter.prepare(body, str(body["model"]))
    base_url = adapter.endpoint.base_url
    async with (
        httpx.AsyncClient(base_url=base_url, headers=adapter.headers()) as client,
        client.stream("POST", "chat/completions", json=payload) as response,
    ):
        payloads = await sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    return len(payloads) - 1


async def test_streamed_call_records_time_to_first_chunk_and_per_chunk(
    captured: CapturedTelemetry,
) -> None:
    first_chunk_after_s = 0.15
    async with running_stack(captured, {"latency_ms": first_chunk_after_s * 1000}) as stack:
        body = chat_body("glm", stream=True, stream_options={"include_usage": True})
        async with (
            stack.client() as client,
            client.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            assert (await sse_payloads(r))[-1] == "[DONE]"
        # A JSON (non-streamed) call records neither streaming histogram.
        assert (await stack.chat("kimi")).status_code == 200
        await stack.settled(2)
        upstream_chunks = await upstream_chunk_count(stack, "glm", body)
        reader = stack.reader

        call = stack.proxy_spans("chat glm-4.5")[0]
        assert call.end_time is not None and call.start_time is not None
        ttfc_attr = call.attributes["gen_ai.response.time_to_first_chunk"]
        assert first_chunk_after_s <= ttfc_attr <= (call.end_time - call.start_time) / 1e9
        assert "gen_ai.response.time_to_first_chunk" not in (
            stack.proxy_spans(f"chat {MODEL['kimi']}")[0].attributes or {}
        )

        glm = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "glm",
            "gen_ai.request.model": "glm-4.5",
            "gen_ai.response.model": "glm-4.5",
        }
        ((attrs, ttfc),) = list(metric_points(reader, TTFC))
        assert attrs == glm
        assert ttfc.count == 1 and ttfc.sum == pytest.approx(ttfc_attr)
        assert tuple(ttfc.explicit_bounds) == GEN_AI_LATENCY_BUCKETS
        assert metric_unit(reader, TTFC) == "s"

        ((attrs, per_chunk),) = list(metric_points(reader, TPOC))
        assert attrs == glm
        # One value per chunk after the first.
        assert upstream_chunks > 2 and per_chunk.count == upstream_chunks - 1
        assert tuple(per_chunk.explicit_bounds) == GEN_AI_LATENCY_BUCKETS
        assert metric_unit(reader, TPOC) == "s"
        # The chunks came within the call: first chunk plus gaps never exceeds it.
        (duration,) = [
            p for a, p in metric_points(reader, "gen_ai.client.operation.duration") if a == glm
        ]
        assert ttfc.sum + per_chunk.sum <= duration.sum


async def test_stream_broken_after_its_first_chunk_records_error_type(stack: Stack) -> None:
    # Kimi's stream opens with a role chunk, then one content chunk, then a broken one.
    stack.faults.arm("malformed", 1)
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body("kimi", stream=True)) as r,
    ):
        payloads = await sse_payloads(r)
    assert "error" in json.loads(payloads[-1])
    name = f"chat {MODEL['kimi']}"
    await stack.settled(1, name=name)
    call = stack.proxy_spans(name)[0]
    assert call.attributes["error.type"] == "malformed_response"
    assert call.attributes["gen_ai.response.time_to_first_chunk"] > 0

    failed = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "kimi",
        "gen_ai.request.model": MODEL["kimi"],
        "error.type": "malformed_response",
    }
    ((attrs, ttfc),) = list(metric_points(stack.reader, TTFC))
    assert attrs == failed and ttfc.count == 1
    # The good chunk after the first was timed too, with the call's error.
    ((attrs, per_chunk),) = list(metric_points(stack.reader, TPOC))
    assert attrs == failed and per_chunk.count == 1
