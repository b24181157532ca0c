"""The OpenAI-compatible API: JSON and SSE for both providers, models, errors, headers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from tests.integration.provider_proxy.conftest import (
    MODEL,
    PROXY,
    Stack,
    chat_body,
    chunks,
    running_stack,
    sse_payloads,
    streamed_text,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

PROVIDERS = ["kimi", "glm"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_json_completion_in_openai_shape(stack: Stack, provider: str) -> None:
    response = await stack.chat(provider)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL[provider]
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert "What is the capital of France?" in body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Either provider's cached-token field arrives in OpenAI's place.
    assert 0 < usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]
    assert "cached_tokens" not in usage
    assert stack.requests_seen(provider) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_relays_chunks_with_usage_once_at_the_end(stack: Stack, provider: str) -> None:
    expected = (await stack.chat(provider)).json()
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body(provider, stream=True)) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        parsed = chunks(await sse_payloads(r))
    assert streamed_text(parsed) == expected["choices"][0]["message"]["content"]
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert all(c["choices"] for c in parsed), "no choice-less chunk unless asked for"
    with_usage = [c for c in parsed if c.get("usage")]
    assert with_usage == [parsed[-1]]
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
    assert parsed[-1]["usage"] == expected["usage"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_include_usage_gets_openais_trailing_usage_chunk(stack: Stack, provider: str) -> None:
    body = chat_body(provider, stream=True, stream_options={"include_usage": True})
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        parsed = chunks(await sse_payloads(r))
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert [c for c in parsed if c.get("usage")] == [parsed[-1]]


async def test_models_lists_what_the_proxy_routes(stack: Stack) -> None:
    async with stack.client() as client:
        listing = (await client.get("/v1/models")).json()
        one = await client.get("/v1/models/glm-4.5")
        missing = await client.get("/v1/models/gpt-4o")
    assert listing["object"] == "list"
    owners = {m["id"]: m["owned_by"] for m in listing["data"]}
    assert owners[MODEL["kimi"]] == "kimi"
    assert owners["moonshot-v1-8k"] == "kimi"
    assert owners[MODEL["glm"]] == "glm"
    assert all(m["object"] == "model" for m in listing["data"])
    assert one.json()["id"] == "glm-4.5"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "kimi-k2-turbo-preview"}, "messages"),
        ({"model": "kimi-k2-turbo-preview", "messages": []}, "messages"),
        (
            {"model": "glm-4.5", "messages": [{"role": "robot", "content": "hi"}]},
            "messages.0.role",
        ),
        (
            {"model": "glm-4.5", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
        ),
        (
            {"model": "glm-4.5", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
        ),
    ],
)
async def test_invalid_requests_get_400_in_openai_shape(
    stack: Stack, body: dict[str, object], fragment: str
) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert stack.requests_seen("kimi") + stack.requests_seen("glm") == 0


async def test_body_that_is_not_json_gets_400(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_gets_400_model_not_found(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "gpt-4o" in error["message"]


async def test_a_model_the_provider_does_not_know_passes_its_404_on(stack: Stack) -> None:
    # `kimi-*` routes to Kimi, which answers 404: the client's mistake, not retried.
    response = await stack.chat("kimi", model="kimi-does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "rejected"
    assert stack.requests_seen("kimi") == 1


async def test_correlation_id_and_traceparent_come_back(stack: Stack) -> None:
    async with stack.client() as client:
        given = await client.post(
            "/v1/chat/completions",
            json=chat_body(),
            headers={"X-Correlation-ID": "corr-proxy-42"},
        )
        generated = await client.post("/v1/chat/completions", json=chat_body())
    assert given.headers["x-correlation-id"] == "corr-proxy-42"
    assert len(generated.headers["x-correlation-id"]) == 36  # a fresh UUID4
    await stack.settled(2)
    for response in (given, generated):
        _, trace_id, span_id, _ = response.headers["traceparent"].split("-")
        server = next(
            s
            for s in stack.proxy_spans("POST /v1/chat/completions")
            if format(s.context.span_id, "016x") == span_id
        )
        assert format(server.context.trace_id, "032x") == trace_id
        correlation_id = response.headers["x-correlation-id"]
        trace_spans = [
            s for s in stack.captured.spans() if s.context.trace_id == server.context.trace_id
        ]
        # Every span of the request, in both services, carries the ID.
        assert {s.resource.attributes["service.name"] for s in trace_spans} == {
            PROXY,
            "llm-simulator",
        }
        assert all(s.attributes["exai.correlation_id"] == correlation_id for s in trace_spans)


async def test_without_keys_the_simulator_is_used_and_start_up_says_so_once(
    captured: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provider_proxy")
    async with running_stack(captured, keys=False) as stack:
        for provider in PROVIDERS:
            assert (await stack.chat(provider)).status_code == 200
    notes = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("provider_proxy") and "llm-simulator" in r.getMessage()
    ]
    assert len(notes) == 2
    assert any(
        n.startswith("kimi: no KIMI_API_KEY") and n.endswith("placeholder key") for n in notes
    )
    assert any(n.startswith("glm: no GLM_API_KEY") and "/api/paas/v4" in n for n in notes)


async def test_health_reports_each_provider(stack: Stack) -> None:
    async with stack.client() as client:
        ready = await client.get("/health/ready")
        health = (await client.get("/health")).json()
        live = await client.get("/health/live")
    assert ready.status_code == 200 and live.status_code == 200
    assert health["status"] == "healthy"
    assert health["components"]["kimi"]["circuit"] == "closed"
    assert health["components"]["glm"]["simulated"] is False
    assert "KEY" not in json.dumps(health)


async def test_oversized_bodies_get_413_declared_or_streamed(captured: CapturedTelemetry) -> None:
    big = json.dumps(chat_body(messages=[{"role": "user", "content": "x" * 4096}])).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    async with running_stack(captured, max_request_bytes=2048) as stack, stack.client() as client:
        declared = await client.post(
            "/v1/chat/completions", content=big, headers={"content-type": "application/json"}
        )
        streamed = await client.post(
            "/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}
        )
        small = await client.post("/v1/chat/completions", json=chat_body())
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    assert small.status_code == 200
    assert stack.requests_seen("kimi") == 1
