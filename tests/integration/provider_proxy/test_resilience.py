"""Retries, Retry-After, circuit breakers, fallback, deadlines, malformed answers and
client disconnects — against the simulator's real faults."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from openai import AsyncOpenAI

from exai_telemetry import names
from tests.integration.provider_proxy.conftest import (
    MODEL,
    TIME_SCALE,
    Stack,
    chat_body,
    eventually,
    running_stack,
    sse_payloads,
)
from tests.support.internal_auth import PROVIDER_TOKEN
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration


def attempt_spans(stack: Stack) -> list[tuple[int, str]]:
    spans = sorted(
        (s for s in stack.proxy_spans() if s.name.startswith("attempt ")),
        key=lambda s: s.start_time or 0,
    )
    return [
        (s.attributes[names.PROVIDER_ATTEMPT], s.attributes[names.ATTEMPT_OUTCOME]) for s in spans
    ]


async def test_rate_limit_then_success_waits_for_retry_after(captured: CapturedTelemetry) -> None:
    # Retry-After: 1 s; the backoff alone would wait at most 50 ms.
    async with running_stack(captured, {"retry_after_s": 1}) as stack:
        stack.faults.arm("rate_limit", 1)
        response = await stack.chat("glm")
        assert response.status_code == 200
        assert stack.requests_seen("glm") == 2
        await stack.settled(1)
    assert attempt_spans(stack) == [(1, "rate_limited"), (2, "ok")]
    first, second = sorted(
        (s for s in stack.proxy_spans() if s.name.startswith("attempt ")),
        key=lambda s: s.start_time or 0,
    )
    assert first.end_time is not None and second.start_time is not None
    waited_s = (second.start_time - first.end_time) / 1e9
    assert 1.0 <= waited_s < 1.0 + 0.5 * TIME_SCALE


async def test_retry_after_beyond_the_deadline_is_not_waited_for(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(captured, {"retry_after_s": 30}, glm_deadline_s=2.0) as stack:
        stack.faults.arm("rate_limit", 1)
        started = time.monotonic()
        response = await stack.chat("glm")
        elapsed = time.monotonic() - started
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "rate_limited"
    assert elapsed < 1.0 * TIME_SCALE
    assert stack.requests_seen("glm") == 1


async def test_server_errors_are_retried_then_502(stack: Stack) -> None:
    await stack.global_fault("error_500", "kimi")
    response = await stack.chat("kimi")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error == {
        "message": error["message"],
        "type": "upstream_error",
        "code": "server_error",
        "param": None,
    }
    assert "kimi" in error["message"]
    assert stack.requests_seen("kimi") == 3  # EXAI_RETRY_MAX_ATTEMPTS
    await stack.settled(1)
    assert attempt_spans(stack) == [(1, "server_error"), (2, "server_error"), (3, "server_error")]


async def test_connection_refused_is_a_retried_connect_error(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, kimi_base_url="http://127.0.0.1:9/v1") as stack:
        response = await stack.chat("kimi")
        await stack.settled(1)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "connect_error"
    assert [outcome for _, outcome in attempt_spans(stack)] == ["connect_error"] * 3


async def test_circuit_opens_after_n_failures_then_a_probe_closes_it(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(
        captured, circuit_failure_threshold=2, circuit_cooldown_s=0.5, retry_max_attempts=1
    ) as stack:
        await stack.global_fault("error_500", "kimi")
        assert (await stack.chat("kimi")).status_code == 502
        assert (await stack.chat("kimi")).status_code == 502
        # Open: refused without calling Kimi; GLM is unaffected.
        refused = await stack.chat("kimi")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "circuit_open"
        assert stack.requests_seen("kimi") == 2
        assert (await stack.chat("glm")).status_code == 200
        async with stack.client() as client:
            health = (await client.get("/health")).json()
            ready = await client.get("/health/ready")
        assert health["status"] == "degraded"
        assert health["components"]["kimi"]["circuit"] == "open"
        assert ready.status_code == 200

        # After the cool-down one probe goes through; Kimi has recovered.
        await stack.global_fault("none")
        await asyncio.sleep(0.5)
        assert stack.proxy.breakers["kimi"].state == "half_open"
        assert (await stack.chat("kimi")).status_code == 200
        assert stack.proxy.breakers["kimi"].state == "closed"
        assert stack.requests_seen("kimi") == 3
        await stack.settled(5)
    states = [
        s.attributes[names.CIRCUIT_STATE]
        for s in stack.proxy_spans("POST /v1/chat/completions")
        if s.attributes.get("gen_ai.provider.name") is None
        and s.attributes.get(names.CIRCUIT_STATE) is not None
    ]
    assert states == ["closed", "closed", "open", "closed", "half_open"]


async def test_a_failed_probe_reopens_the_circuit(captured: CapturedTelemetry) -> None:
    async with running_stack(
        captured, circuit_failure_threshold=1, circuit_cooldown_s=0.3, retry_max_attempts=3
    ) as stack:
        await stack.global_fault("error_500", "glm")
        # The first failure opens the circuit: no more attempts are made.
        assert (await stack.chat("glm")).status_code == 502
        assert stack.requests_seen("glm") == 1
        await asyncio.sleep(0.3)
        assert (await stack.chat("glm")).status_code == 502
        assert stack.requests_seen("glm") == 2
        assert stack.proxy.breakers["glm"].state == "open"
        assert (await stack.chat("glm")).status_code == 503


async def test_fallback_to_the_other_provider_after_retries(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, fallback_provider="glm") as stack:
        await stack.global_fault("error_500", "kimi")
        response = await stack.chat("kimi")
        await stack.settled(1)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "glm-4.5"  # EXAI_FALLBACK_MODEL_MAP's default for kimi-*
    assert body["usage"]["prompt_tokens"] > 0
    assert (stack.requests_seen("kimi"), stack.requests_seen("glm")) == (3, 1)
    server = stack.proxy_spans("POST /v1/chat/completions")[0]
    assert server.attributes[names.PROVIDER_FALLBACK] is True
    assert server.attributes[names.PROVIDER_RETRIES] == 2
    kimi_call, glm_call = (stack.proxy_spans(f"chat {m}")[0] for m in (MODEL["kimi"], "glm-4.5"))
    assert kimi_call.status.is_ok is False
    assert kimi_call.attributes["error.type"] == "server_error"
    assert glm_call.attributes["gen_ai.provider.name"] == "glm"
    assert glm_call.status.is_ok


async def test_fallback_when_the_circuit_is_open(captured: CapturedTelemetry) -> None:
    async with running_stack(
        captured,
        fallback_map={"glm": "kimi"},
        fallback_model_map={"glm-*": "moonshot-v1-8k"},
        circuit_failure_threshold=1,
        retry_max_attempts=1,
    ) as stack:
        await stack.global_fault("error_500", "glm")
        first = await stack.chat("glm")
        second = await stack.chat("glm")
    assert first.status_code == second.status_code == 200
    assert second.json()["model"] == "moonshot-v1-8k"
    # The second request did not even try GLM.
    assert stack.requests_seen("glm") == 1
    assert stack.requests_seen("kimi") == 2


async def test_a_refused_request_does_not_fall_back(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, fallback_provider="glm") as stack:
        response = await stack.chat("kimi", model="kimi-unknown-model")
    assert response.status_code == 404
    assert stack.requests_seen("glm") == 0


async def test_hang_times_out_with_504_within_the_deadline(captured: CapturedTelemetry) -> None:
    deadline_s = 1.0 * TIME_SCALE
    async with running_stack(captured, kimi_deadline_s=deadline_s) as stack:
        await stack.global_fault("hang", "kimi")
        started = time.monotonic()
        response = await stack.chat("kimi")
        elapsed = time.monotonic() - started
        # The abandoned upstream request is closed, not left hanging.
        await eventually(lambda: stack.sim.stats.hanging == 0)
        await stack.settled(1)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert deadline_s <= elapsed < deadline_s + 0.5 * TIME_SCALE
    assert attempt_spans(stack) == [(1, "timeout")]


async def test_read_timeouts_are_not_retried(captured: CapturedTelemetry) -> None:
    # The request was sent: a second attempt could be billed a second time (issue 8.9c).
    async with running_stack(captured, glm_read_timeout_s=0.2, retry_max_attempts=2) as stack:
        await stack.global_fault("hang", "glm")
        response = await stack.chat("glm")
        await stack.settled(1)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert attempt_spans(stack) == [(1, "timeout")]
    assert stack.requests_seen("glm") == 1


async def test_malformed_body_is_502_and_not_retried(stack: Stack) -> None:
    await stack.global_fault("malformed", "glm")
    response = await stack.chat("glm")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "malformed_response"
    assert stack.requests_seen("glm") == 1
    # The proxy is still fine.
    await stack.global_fault("none")
    assert (await stack.chat("glm")).status_code == 200


async def test_malformed_stream_after_the_first_byte_ends_with_an_error_event(
    stack: Stack,
) -> None:
    await stack.global_fault("malformed", "kimi")
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r,
    ):
        assert r.status_code == 200
        payloads = await sse_payloads(r)
    assert "[DONE]" not in payloads
    assert '"code":"malformed_response"' in payloads[-1]
    assert len(payloads) >= 2
    async with AsyncOpenAI(
        base_url=f"{stack.url}/v1", api_key=PROVIDER_TOKEN, max_retries=0
    ) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL["kimi"], messages=chat_body()["messages"], stream=True
        )
        with pytest.raises(openai.APIError, match="not valid JSON"):
            async for _ in stream:
                pass


async def test_stream_errors_before_the_first_byte_are_retried(stack: Stack) -> None:
    stack.faults.arm("error_500", 2)
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body("glm", stream=True)) as r,
    ):
        assert r.status_code == 200
        payloads = await sse_payloads(r)
    assert payloads[-1] == "[DONE]"
    assert stack.requests_seen("glm") == 3


async def test_stream_that_fails_every_attempt_is_a_plain_error_response(stack: Stack) -> None:
    await stack.global_fault("error_500", "kimi")
    response = await stack.chat("kimi", stream=True)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "server_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_aborts_the_upstream_request(stack: Stack, stream: bool) -> None:
    # The gateway's cancel relies on this: closing the connection to the proxy must
    # close the proxy's connection to the provider, before any answer exists.
    await stack.global_fault("hang", "kimi")
    request = asyncio.create_task(stack.chat("kimi", stream=stream))
    await eventually(lambda: stack.sim.stats.hanging == 1)
    request.cancel()  # closes the client's connection to the proxy
    with pytest.raises(asyncio.CancelledError):
        await request
    started = time.monotonic()
    await eventually(lambda: stack.sim.stats.hanging == 0, timeout_s=2.0)
    assert time.monotonic() - started < 1.0 * TIME_SCALE
    assert stack.sim.stats.disconnects == 1
    await stack.settled(1, name=f"chat {MODEL['kimi']}")
    call = stack.proxy_spans(f"chat {MODEL['kimi']}")[0]
    assert call.attributes["error.type"] == "cancelled"
    assert attempt_spans(stack) == [(1, "cancelled")]
    # A cancelled call is no verdict on the provider.
    assert stack.proxy.breakers["kimi"].consecutive_failures == 0


async def test_client_disconnect_mid_stream_aborts_the_upstream_stream(stack: Stack) -> None:
    await stack.global_fault("slow_stream", "glm")
    async with (
        stack.client() as client,
        client.stream("POST", "/v1/chat/completions", json=chat_body("glm", stream=True)) as r,
    ):
        lines = r.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
        assert stack.sim.stats.streaming == 1
    # Leaving the block closed the connection mid-stream.
    await eventually(lambda: stack.sim.stats.streaming == 0, timeout_s=2.0)
    assert stack.sim.stats.disconnects == 1
    await stack.settled(1, name="chat glm-4.5")
    assert stack.proxy_spans("chat glm-4.5")[0].attributes["error.type"] == "cancelled"
    # The first chunk did arrive: its time is recorded, with how the call ended.
    ((attributes, point),) = list(
        metric_points(stack.reader, "gen_ai.client.operation.time_to_first_chunk")
    )
    assert attributes["error.type"] == "cancelled" and point.count == 1
