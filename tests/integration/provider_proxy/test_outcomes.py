"""Truthful outcomes: only the provider's own failures count against it.

`exai.provider.requests{exai.outcome}` feeds ProviderErrorRatioHigh (`error` only) and
the circuit breaker decides whether to stop calling a provider. A request the provider
refused as asked (`client_error`), a key it does not accept (`config_error`), a bug in
the proxy or its own full connection pool (`proxy_error`) and the request's total
deadline running out (`deadline_exceeded`) are none of the provider's doing. A read
timeout is the provider's failure, but it is not retried: the request was sent, and may
have been processed and billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from exai_telemetry import names
from provider_proxy import completions, upstream
from tests.integration.provider_proxy.conftest import (
    TIME_SCALE,
    Stack,
    chat_body,
    eventually,
    running_stack,
    sse_payloads,
)
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration


def request_outcomes(stack: Stack) -> dict[tuple[str, str, str | None], int]:
    return {
        (a["gen_ai.provider.name"], a[names.OUTCOME], a.get("error.type")): p.value
        for a, p in metric_points(stack.reader, names.M_PROVIDER_REQUESTS)
        if p.value  # the series created at 0 at start-up
    }


def retries(stack: Stack) -> int:
    return sum(p.value for _, p in metric_points(stack.reader, names.M_PROVIDER_RETRIES))


def attempts(stack: Stack) -> list[tuple[int, str]]:
    spans = sorted(
        (s for s in stack.proxy_spans() if s.name.startswith("attempt ")),
        key=lambda s: s.start_time or 0,
    )
    return [
        (s.attributes[names.PROVIDER_ATTEMPT], s.attributes[names.ATTEMPT_OUTCOME]) for s in spans
    ]


def breaker_untouched(stack: Stack, provider: str) -> bool:
    breaker = stack.proxy.breakers[provider]  # type: ignore[index]
    return breaker.state == "closed" and breaker.consecutive_failures == 0


# --- (b) the provider refused the request -------------------------------------------------


async def test_provider_4xx_for_the_request_is_a_client_error(captured: CapturedTelemetry) -> None:
    async with running_stack(captured, circuit_failure_threshold=1) as stack:
        # Kimi: 404 for a model it does not know; GLM: 400 for a field it refuses.
        for _ in range(3):
            assert (await stack.chat("kimi", model="kimi-no-such-model")).status_code == 404
            assert (await stack.chat("glm", request_id=5)).status_code == 400
        assert breaker_untouched(stack, "kimi") and breaker_untouched(stack, "glm")
        assert (await stack.chat("kimi")).status_code == 200
        await stack.settled(7)
    assert request_outcomes(stack) == {
        ("kimi", "client_error", "rejected"): 3,
        ("glm", "client_error", "rejected"): 3,
        ("kimi", "ok", None): 1,
    }
    assert retries(stack) == 0


async def test_a_provider_401_is_a_config_error_not_a_provider_failure(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(captured, circuit_failure_threshold=1) as stack:
        await stack.global_fault("unauthorized", "glm")
        for _ in range(2):
            response = await stack.chat("glm")
            # Our key is wrong: the client did nothing wrong, so it is no 401 of theirs.
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "rejected"
        assert stack.requests_seen("glm") == 2  # not retried, circuit still closed
        assert breaker_untouched(stack, "glm")
        await stack.settled(2)
    assert request_outcomes(stack) == {("glm", "config_error", "rejected"): 2}


# --- (b) a bug in the proxy ---------------------------------------------------------------


def _explode(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("a bug in the proxy")


async def test_a_proxy_bug_is_a_proxy_error_and_no_verdict_on_the_provider(
    captured: CapturedTelemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No input triggers a known bug any more, so one is planted: parsing the provider's
    # (perfectly good) answer fails with an exception the proxy never raises on purpose.
    async with running_stack(captured, circuit_failure_threshold=1) as stack:
        monkeypatch.setattr(upstream, "parse_completion", _explode)
        for _ in range(2):
            response = await stack.chat("kimi")
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "internal_error"
        assert stack.requests_seen("kimi") == 2  # not retried
        assert breaker_untouched(stack, "kimi")
        monkeypatch.undo()
        assert (await stack.chat("kimi")).status_code == 200
        await stack.settled(3)
    assert request_outcomes(stack) == {
        ("kimi", "proxy_error", "internal_error"): 2,
        ("kimi", "ok", None): 1,
    }


async def test_a_proxy_bug_mid_stream_ends_with_an_error_event(
    captured: CapturedTelemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    absorb = completions.StreamAccumulator.absorb
    seen = [0]

    def absorb_then_explode(self: completions.StreamAccumulator, chunk: Any) -> Any:
        seen[0] += 1
        if seen[0] == 3:
            raise KeyError("a bug in the proxy")
        return absorb(self, chunk)

    async with running_stack(captured, circuit_failure_threshold=1) as stack:
        monkeypatch.setattr(completions.StreamAccumulator, "absorb", absorb_then_explode)
        async with (
            stack.client() as client,
            client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r,
        ):
            payloads = await sse_payloads(r)
        await stack.settled(1)
        await eventually(lambda: stack.sim.stats.streaming == 0)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["error"]["code"] == "internal_error"
    assert breaker_untouched(stack, "kimi")
    assert request_outcomes(stack) == {("kimi", "proxy_error", "internal_error"): 1}


# --- (c) read timeouts are not retried ----------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_read_timeout_is_not_retried(captured: CapturedTelemetry, stream: bool) -> None:
    async with running_stack(
        captured, glm_read_timeout_s=0.2 * TIME_SCALE, retry_max_attempts=3
    ) as stack:
        await stack.global_fault("hang", "glm")
        response = await stack.chat("glm", stream=stream)
        await eventually(lambda: stack.sim.stats.hanging == 0)
        await stack.settled(1)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    # Sent once: a second attempt could have been billed a second time.
    assert stack.requests_seen("glm") == 1
    assert attempts(stack) == [(1, "timeout")]
    assert retries(stack) == 0
    # A provider that does not answer is failing, though.
    assert stack.proxy.breakers["glm"].consecutive_failures == 1
    assert request_outcomes(stack) == {("glm", "error", "timeout"): 1}


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A TCP port whose listen queue is full: new connections neither complete nor fail,
    they time out (what a provider behind a saturated load balancer looks like)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        # Linux queues backlog + 1 connections; after that, SYNs are dropped.
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_connect_timeouts_are_still_retried(captured: CapturedTelemetry) -> None:
    with unanswered_port() as port:
        async with running_stack(
            captured,
            kimi_base_url=f"http://127.0.0.1:{port}/v1",
            kimi_connect_timeout_s=0.2 * TIME_SCALE,
            retry_max_attempts=2,
        ) as stack:
            response = await stack.chat("kimi")
            await stack.settled(1)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert attempts(stack) == [(1, "timeout"), (2, "timeout")]
    assert retries(stack) == 1


# --- (d) local pool exhaustion and deadline overruns ----------------------------------------


async def test_a_full_connection_pool_is_the_proxys_problem_not_the_providers(
    captured: CapturedTelemetry,
) -> None:
    async with running_stack(
        captured,
        upstream_max_connections=1,
        kimi_connect_timeout_s=0.2 * TIME_SCALE,
        circuit_failure_threshold=1,
    ) as stack:
        stack.faults.arm("hang", 1)
        holder = asyncio.create_task(stack.chat("kimi"))
        await eventually(lambda: stack.sim.stats.hanging == 1)
        refused = await stack.chat("kimi")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "pool_exhausted"
        assert stack.requests_seen("kimi") == 1  # never reached Kimi, not retried
        assert breaker_untouched(stack, "kimi")
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
        await eventually(lambda: stack.sim.stats.hanging == 0)
        assert (await stack.chat("kimi")).status_code == 200
        await stack.settled(3)
    outcomes = request_outcomes(stack)
    assert outcomes[("kimi", "proxy_error", "pool_exhausted")] == 1
    assert outcomes[("kimi", "ok", None)] == 1
    assert not [key for key in outcomes if key[1] == "error"]


async def test_a_deadline_overrun_does_not_open_the_circuit(captured: CapturedTelemetry) -> None:
    async with running_stack(
        captured, kimi_deadline_s=0.5 * TIME_SCALE, circuit_failure_threshold=1
    ) as stack:
        await stack.global_fault("hang", "kimi")
        for _ in range(2):
            response = await stack.chat("kimi")
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "deadline_exceeded"
        assert stack.requests_seen("kimi") == 2  # the circuit never opened
        assert breaker_untouched(stack, "kimi")
        await stack.settled(2)
    assert request_outcomes(stack) == {("kimi", "deadline_exceeded", "deadline_exceeded"): 2}


async def test_a_deadline_overrun_mid_stream_does_not_open_the_circuit(
    captured: CapturedTelemetry,
) -> None:
    # Kimi's stream opens with a role chunk at once; the slow content runs into the deadline.
    async with running_stack(
        captured, kimi_deadline_s=0.5 * TIME_SCALE, circuit_failure_threshold=1
    ) as stack:
        await stack.global_fault("slow_stream", "kimi")
        async with (
            stack.client() as client,
            client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r,
        ):
            assert r.status_code == 200
            payloads = await sse_payloads(r)
        await stack.settled(1)
        await eventually(lambda: stack.sim.stats.streaming == 0)
    assert json.loads(payloads[-1])["error"]["code"] == "deadline_exceeded"
    assert breaker_untouched(stack, "kimi")
    assert request_outcomes(stack) == {("kimi", "deadline_exceeded", "deadline_exceeded"): 1}
