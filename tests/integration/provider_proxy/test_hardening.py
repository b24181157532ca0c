"""Hostile or broken input on both sides of the proxy: deeply nested request bodies,
provider streams that stop without `[DONE]`, over-long SSE lines and endless streams.

Each case gets its documented error (an OpenAI error body, or an SSE error event once
the stream has started), is counted as what it is, and leaves the proxy working.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from exai_telemetry import names
from tests.integration.provider_proxy.conftest import (
    API_KEY,
    MODEL,
    PROXY,
    Stack,
    chat_body,
    chunks,
    eventually,
    running_stack,
    sse_payloads,
)
from tests.support.internal_auth import PROVIDER_TOKEN, bearer
from tests.support.telemetry import CapturedTelemetry, metric_points
from ws_gateway.clients import ProviderClient
from ws_gateway.errors import ProviderError

pytestmark = pytest.mark.integration


NEST = "<nested arrays>"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_body(where: str, depth: int) -> bytes:
    """A chat request with `depth` nested arrays in one place a client controls (built
    as text: `json.dumps` itself would refuse the depth)."""
    message: dict[str, Any] = {"role": "user", "content": "hi"}
    body: dict[str, Any] = {"model": MODEL["kimi"], "messages": [message]}
    if where == "extra_field":
        body["x"] = NEST
    elif where == "content_part":
        message["content"] = [{"type": "text", "text": "hi", "x": NEST}]
    else:
        message["x"] = NEST
    return json.dumps(body).replace(json.dumps(NEST), nested(depth)).encode()


def request_outcomes(stack: Stack) -> dict[tuple[str, str, str | None], int]:
    return {
        (a["gen_ai.provider.name"], a[names.OUTCOME], a.get("error.type")): p.value
        for a, p in metric_points(stack.reader, names.M_PROVIDER_REQUESTS)
        if p.value  # the series created at 0 at start-up
    }


async def stream_payloads(stack: Stack, provider: str = "kimi") -> tuple[int, list[str]]:
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body(provider, stream=True)) as r,
    ):
        return r.status_code, await sse_payloads(r)


# --- nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["extra_field", "content_part", "message_field"])
@pytest.mark.parametrize(
    ("depth", "fragment"),
    [
        (600, "nested more than 64 levels deep"),  # parses, then refused before any work
        (5000, "error parsing the body"),  # over the JSON parser's own recursion limit
    ],
)
async def test_deeply_nested_bodies_get_400_and_never_reach_the_provider(
    stack: Stack, where: str, depth: int, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            content=deep_body(where, depth),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert fragment in error["message"]
        assert stack.requests_seen("kimi") == 0
        # No call was made, so none failed; and the proxy is fine.
        assert request_outcomes(stack) == {}
        assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_nesting_within_the_limit_passes_through(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            content=deep_body("extra_field", 60),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200
    assert stack.requests_seen("kimi") == 1


# --- streams that stop without [DONE] ---------------------------------------------------


@pytest.mark.parametrize("provider", ["kimi", "glm"])
async def test_a_stream_that_ends_without_done_is_an_error_not_a_success(
    stack: Stack, provider: str
) -> None:
    stack.faults.arm("truncated_stream", 1)
    status, payloads = await stream_payloads(stack, provider)
    assert status == 200  # the first chunk had been relayed already
    assert "[DONE]" not in payloads
    error = json.loads(payloads[-1])["error"]
    assert error["code"] == "stream_truncated"
    assert "[DONE]" in error["message"]
    name = f"chat {MODEL[provider]}"
    await stack.settled(1, name=name)
    call = stack.proxy_spans(name)[0]
    assert call.attributes["error.type"] == "stream_truncated"
    assert not call.status.is_ok
    assert request_outcomes(stack) == {(provider, "error", "stream_truncated"): 1}
    # A provider that drops streams is failing: its breaker counts it.
    assert stack.proxy.breakers[provider].consecutive_failures == 1


async def test_the_openai_sdk_sees_a_truncated_stream_as_an_error(stack: Stack) -> None:
    stack.faults.arm("truncated_stream", 1)
    async with AsyncOpenAI(
        base_url=f"{stack.url}/v1", api_key=PROVIDER_TOKEN, max_retries=0
    ) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL["kimi"], messages=chat_body()["messages"], stream=True
        )
        with pytest.raises(openai.APIError, match=r"\[DONE\]"):
            async for _ in stream:
                pass


@pytest.mark.parametrize("through", ["simulator", "proxy"])
async def test_the_gateway_client_fails_a_stream_without_done(stack: Stack, through: str) -> None:
    # The gateway's ProviderClient reads OpenAI SSE; the simulator's Kimi API speaks it
    # too, and is the one server that ends a stream cleanly without `[DONE]`.
    base_url = stack.sim_url if through == "simulator" else stack.url
    headers = bearer(API_KEY if through == "simulator" else PROVIDER_TOKEN)
    stack.faults.arm("truncated_stream", 1)
    chunks_seen: list[str] = []

    async def on_chunk(text: str) -> None:
        chunks_seen.append(text)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as http:
        client = ProviderClient(http)
        with pytest.raises(ProviderError, match=r"\[DONE\]|truncated"):
            await client.stream(MODEL["kimi"], [{"role": "user", "content": "hi"}], on_chunk)
        # A whole stream still works.
        completion = await client.stream(
            MODEL["kimi"], [{"role": "user", "content": "hi"}], on_chunk
        )
    assert completion.text
    assert chunks_seen  # the truncated stream's first chunk had been handed on


# --- size limits -----------------------------------------------------------------------


async def test_an_sse_line_over_the_limit_ends_the_stream_with_an_error(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(
        captured, {"long_line_bytes": 64 * 1024}, max_sse_line_bytes=16 * 1024
    ) as stack:
        stack.faults.arm("long_line", 1)
        status, payloads = await stream_payloads(stack)
        assert status == 200
        assert "[DONE]" not in payloads
        error = json.loads(payloads[-1])["error"]
        assert error["code"] == "response_too_large"
        assert "EXAI_MAX_SSE_LINE_BYTES" in error["message"]
        # The upstream stream was closed, and the next request is fine.
        await eventually(lambda: stack.sim.stats.streaming == 0)
        assert (await stream_payloads(stack))[1][-1] == "[DONE]"
        await stack.settled(2)
    assert request_outcomes(stack) == {
        ("kimi", "error", "response_too_large"): 1,
        ("kimi", "ok", None): 1,
    }


async def test_a_long_line_under_the_limit_is_relayed_whole(captured: CapturedTelemetry) -> None:
    async with running_stack(
        captured, {"long_line_bytes": 12 * 1024}, max_sse_line_bytes=16 * 1024
    ) as stack:
        stack.faults.arm("long_line", 1)
        status, payloads = await stream_payloads(stack)
    assert status == 200
    parsed = chunks(payloads)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"])
    assert len(text) >= 12 * 1024


async def test_a_stream_over_the_total_size_limit_ends_with_an_error(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(captured, max_stream_bytes=1024) as stack:
        status, payloads = await stream_payloads(stack, "glm")
        await eventually(lambda: stack.sim.stats.streaming == 0)
        await stack.settled(1)
    assert status == 200
    assert "[DONE]" not in payloads
    error = json.loads(payloads[-1])["error"]
    assert error["code"] == "response_too_large"
    assert "EXAI_MAX_STREAM_BYTES" in error["message"]
    # What was relayed before the limit is less than the limit.
    relayed: list[Any] = [json.loads(p) for p in payloads[:-1]]
    assert sum(len(json.dumps(c)) for c in relayed) < 1024
    assert request_outcomes(stack) == {("glm", "error", "response_too_large"): 1}
    spans = [s.name for s in stack.captured.spans_of(PROXY)]
    assert "chat glm-4.5" in spans
