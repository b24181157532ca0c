"""Every fault, per request (header) and global (admin), in both provider shapes."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.integration.llm_simulator.conftest import (
    AUTH,
    TIME_SCALE,
    Simulator,
    chat_body,
    eventually,
    running_simulator,
    sse_payloads,
)
from tests.support.internal_auth import SimulatorAdminAuth
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

PROVIDERS = ["kimi", "glm"]
FAULT = "X-Simulator-Fault"


async def stats(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/admin/stats")
    assert response.status_code == 200
    result: dict[str, object] = response.json()
    return result


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rate_limit_is_a_429_with_retry_after(
    client: httpx.AsyncClient, sim: Simulator, provider: str
) -> None:
    response = await client.post(
        sim.chat_url(provider), json=chat_body(provider), headers={FAULT: "rate_limit"}
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert error.get("type") == "rate_limit_reached_error" or error.get("code") == "1302"
    # One request only: the next one goes through.
    assert (await client.post(sim.chat_url(provider), json=chat_body(provider))).status_code == 200


async def test_retry_after_is_configurable(client: httpx.AsyncClient, sim: Simulator) -> None:
    await client.post("/admin/faults", json={"mode": "rate_limit", "retry_after_s": 3})
    response = await client.post(sim.chat_url("glm"), json=chat_body("glm"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_500(
    client: httpx.AsyncClient, sim: Simulator, provider: str, stream: bool
) -> None:
    response = await client.post(
        sim.chat_url(provider),
        json=chat_body(provider, stream=stream),
        headers={FAULT: "error_500"},
    )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error.get("type") == "server_error" or error.get("code") == "500"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_json_body(
    client: httpx.AsyncClient, sim: Simulator, provider: str
) -> None:
    response = await client.post(
        sim.chat_url(provider), json=chat_body(provider), headers={FAULT: "malformed"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_stream_breaks_off_without_done(
    client: httpx.AsyncClient, sim: Simulator, provider: str
) -> None:
    async with client.stream(
        "POST",
        sim.chat_url(provider),
        json=chat_body(provider, stream=True),
        headers={FAULT: "malformed"},
    ) as response:
        assert response.status_code == 200
        payloads = await sse_payloads(response)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[0])  # starts out fine …
    with pytest.raises(json.JSONDecodeError):
        json.loads(payloads[-1])  # … then breaks


async def test_slow_stream_trickles_and_stops_when_the_client_leaves(
    captured: CapturedTelemetry,
) -> None:
    async with (
        running_simulator(captured, slow_tokens_per_s=10, tokens_per_s=0) as sim,
        httpx.AsyncClient(
            base_url=sim.url, headers=AUTH, auth=SimulatorAdminAuth(), timeout=10 * TIME_SCALE
        ) as client,
    ):
        started = time.monotonic()
        async with client.stream(
            "POST",
            sim.chat_url("kimi"),
            json=chat_body("kimi", stream=True),
            headers={FAULT: "slow_stream"},
        ) as response:
            lines = response.aiter_lines()
            contents = 0
            async for line in lines:
                if not line:
                    continue
                delta = json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
                if delta.get("content"):
                    contents += 1
                if contents == 4:
                    break
            assert (await stats(client))["streaming"] == 1
        # Each content chunk is paced at 10 tokens/s: 4 chunks of ≥1 token take ≥0.4 s.
        assert time.monotonic() - started >= 0.4 * 0.9

        async def stream_closed() -> bool:
            current = await stats(client)
            return current["streaming"] == 0 and current["disconnects"] == 1

        await eventually(stream_closed)


async def test_slow_stream_delays_a_json_answer_too(captured: CapturedTelemetry) -> None:
    async with (
        running_simulator(captured, slow_tokens_per_s=100) as sim,
        httpx.AsyncClient(headers=AUTH, timeout=10 * TIME_SCALE) as client,
    ):
        started = time.monotonic()
        response = await client.post(
            sim.chat_url("glm"), json=chat_body("glm"), headers={FAULT: "slow_stream"}
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= response.json()["usage"]["completion_tokens"] / 100 * 0.9


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_until_the_client_gives_up_then_let_go(
    client: httpx.AsyncClient, sim: Simulator, stream: bool
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            sim.chat_url("kimi"),
            json=chat_body("kimi", stream=stream),
            headers={FAULT: "hang"},
            timeout=0.3 * TIME_SCALE,
        )

    async def released() -> bool:
        current = await stats(client)
        return current["hanging"] == 0 and current["disconnects"] == 1

    await eventually(released)
    assert (await stats(client))["faults"] == {"hang": 1}


async def test_a_hang_shorter_than_the_client_timeout_is_just_slow(
    captured: CapturedTelemetry,
) -> None:
    async with (
        running_simulator(captured, hang_s=0.3) as sim,
        httpx.AsyncClient(headers=AUTH, timeout=10 * TIME_SCALE) as client,
    ):
        started = time.monotonic()
        response = await client.post(
            sim.chat_url("glm"), json=chat_body("glm"), headers={FAULT: "hang"}
        )
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3 * 0.9


async def test_unknown_fault_header_is_a_bad_request(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    response = await client.post(
        sim.chat_url("kimi"), json=chat_body("kimi"), headers={FAULT: "boom"}
    )
    assert response.status_code == 400
    assert "rate_limit" in response.json()["error"]["message"]


async def test_global_fault_for_one_provider_until_cleared(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    set_response = await client.post("/admin/faults", json={"mode": "error_500", "provider": "glm"})
    assert set_response.status_code == 200
    shown = (await client.get("/admin/faults")).json()
    assert shown == {"mode": "error_500", "rate": 1.0, "provider": "glm", "retry_after_s": 1}
    assert set_response.json() == shown

    assert (await client.post(sim.chat_url("glm"), json=chat_body("glm"))).status_code == 500
    assert (await client.post(sim.chat_url("kimi"), json=chat_body("kimi"))).status_code == 200
    # The header still decides for its own request.
    bypass = await client.post(sim.chat_url("glm"), json=chat_body("glm"), headers={FAULT: "none"})
    assert bypass.status_code == 200

    assert (await client.post("/admin/faults", json={"mode": "none"})).json()["mode"] == "none"
    assert (await client.post(sim.chat_url("glm"), json=chat_body("glm"))).status_code == 200


async def test_global_fault_rate_is_reproducible_with_a_seed(captured: CapturedTelemetry) -> None:
    async with (
        running_simulator(captured, fault_seed=11) as sim,
        httpx.AsyncClient(
            base_url=sim.url, headers=AUTH, auth=SimulatorAdminAuth(), timeout=10 * TIME_SCALE
        ) as client,
    ):

        async def run() -> list[int]:
            await client.post("/admin/faults", json={"mode": "rate_limit", "rate": 0.5})
            return [
                (await client.post(sim.chat_url("kimi"), json=chat_body("kimi"))).status_code
                for _ in range(16)
            ]

        first = await run()
        assert set(first) == {200, 429}
        assert await run() == first


async def test_start_up_fault_from_settings(captured: CapturedTelemetry) -> None:
    async with (
        running_simulator(captured, fault_mode="rate_limit", retry_after_s=2) as sim,
        httpx.AsyncClient(headers=AUTH, timeout=10 * TIME_SCALE) as client,
    ):
        response = await client.post(sim.chat_url("glm"), json=chat_body("glm"))
        health = (await client.get(f"{sim.url}/health")).json()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert health["components"]["fault_injection"]["mode"] == "rate_limit"


async def test_stats_count_requests_and_injected_faults(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    await client.post(sim.chat_url("kimi"), json=chat_body("kimi"))
    await client.post(sim.chat_url("kimi"), json=chat_body("kimi"), headers={FAULT: "error_500"})
    await client.post(sim.chat_url("glm"), json=chat_body("glm"), headers={FAULT: "rate_limit"})
    current = await stats(client)
    assert current["requests"] == {"kimi": 2, "glm": 1}
    assert current["faults"] == {"error_500": 1, "rate_limit": 1}
    assert (current["hanging"], current["streaming"], current["disconnects"]) == (0, 0, 0)


async def test_slow_first_token_holds_the_first_chunk_then_streams_at_the_normal_pace(
    captured: CapturedTelemetry,
) -> None:
    async with (
        running_simulator(captured, slow_first_token_s=0.6, tokens_per_s=0) as sim,
        httpx.AsyncClient(headers=AUTH, timeout=10 * TIME_SCALE) as client,
    ):
        started = time.monotonic()
        async with client.stream(
            "POST",
            sim.chat_url("glm"),
            json=chat_body("glm", stream=True),
            headers={FAULT: "slow_first_token"},
        ) as response:
            assert response.status_code == 200
            arrivals = [time.monotonic() - started async for line in response.aiter_lines() if line]
    assert arrivals[0] >= 0.6 * 0.9
    # Once it starts, the answer is not paced (tokens_per_s=0): the rest follows at once.
    assert arrivals[-1] - arrivals[0] < 0.5
