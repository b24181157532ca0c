"""Operator endpoints: faults and latency are readable, settable and validated."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.integration.llm_simulator.conftest import (
    API_KEY,
    AUTH,
    TIME_SCALE,
    Simulator,
    chat_body,
    running_simulator,
)
from tests.support.internal_auth import SimulatorAdminAuth
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "explode"}, "mode"),
        ({"rate": 0.5}, "mode"),
        ({"mode": "hang", "rate": 1.5}, "rate"),
        ({"mode": "hang", "rate": -0.1}, "rate"),
        ({"mode": "hang", "rate": "often"}, "rate"),
        ({"mode": "hang", "provider": "openai"}, "provider"),
        ({"mode": "hang", "retry_after_s": -1}, "retry_after_s"),
        ({"mode": "hang", "rat": 0.5}, "rat"),
    ],
)
async def test_bad_fault_config_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/admin/faults", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{field}: ")
    # Nothing changed.
    assert (await client.get("/admin/faults")).json()["mode"] == "none"


async def test_fault_config_that_is_not_json_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/admin/faults", content=b"mode=hang", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ms": -5}, "ms"),
        ({"tokens_per_s": -1}, "tokens_per_s"),
        ({"ms": "slow"}, "ms"),
        ({"delay": 5}, "delay"),
    ],
)
async def test_bad_latency_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/admin/latency", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{field}: ")


async def test_latency_defaults_from_settings_and_updates_partially(
    captured: CapturedTelemetry,
) -> None:
    async with (
        running_simulator(captured, latency_ms=5, tokens_per_s=50) as sim,
        httpx.AsyncClient(
            base_url=sim.url, auth=SimulatorAdminAuth(), timeout=10 * TIME_SCALE
        ) as client,
    ):
        assert (await client.get("/admin/latency")).json() == {"ms": 5, "tokens_per_s": 50}
        updated = await client.post("/admin/latency", json={"tokens_per_s": 0})
        assert updated.json() == {"ms": 5, "tokens_per_s": 0}
        assert (await client.get("/admin/latency")).json() == {"ms": 5, "tokens_per_s": 0}


async def test_latency_delays_every_answer(client: httpx.AsyncClient, sim: Simulator) -> None:
    await client.post("/admin/latency", json={"ms": 300})
    for stream in (False, True):
        started = time.monotonic()
        response = await client.post(sim.chat_url("kimi"), json=chat_body("kimi", stream=stream))
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.3 * 0.9


async def test_tokens_per_s_paces_the_stream(client: httpx.AsyncClient, sim: Simulator) -> None:
    await client.post("/admin/latency", json={"tokens_per_s": 100})
    body = chat_body("glm")
    tokens = (await client.post(sim.chat_url("glm"), json=body)).json()["usage"][
        "completion_tokens"
    ]
    started = time.monotonic()
    response = await client.post(sim.chat_url("glm"), json={**body, "stream": True})
    assert response.status_code == 200
    assert time.monotonic() - started >= tokens / 100 * 0.9


async def test_reset_restores_start_up_state_and_clears_counters(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    await client.post("/admin/faults", json={"mode": "malformed", "rate": 0.2})
    await client.post("/admin/latency", json={"ms": 40})
    await client.post(sim.chat_url("kimi"), json=chat_body("kimi"), headers=AUTH)
    response = await client.post("/admin/reset")
    assert response.json() == {
        "faults": {"mode": "none", "rate": 1.0, "provider": None, "retry_after_s": 1},
        "latency": {"ms": 0.0, "tokens_per_s": 200.0},
    }
    assert (await client.get("/admin/stats")).json()["requests"] == {}


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy"
    assert health["version"] == "0.1.0"
    assert health["components"]["fault_injection"]["mode"] == "none"
    await client.post("/admin/faults", json={"mode": "hang", "rate": 0.1})
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy"  # a fault is a feature here, not an outage
    assert health["components"]["fault_injection"]["mode"] == "hang"


async def test_last_request_shows_header_names_never_values(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    assert (await client.get("/admin/last-request")).json() == {}
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await client.post(
        sim.chat_url("glm"),
        json=chat_body("glm"),
        headers={"traceparent": traceparent, "baggage": "exai.correlation_id=c-1"},
    )
    assert response.status_code == 200
    seen = (await client.get("/admin/last-request")).json()
    assert seen["provider"] == "glm"
    assert {"authorization", "traceparent", "baggage"} <= set(seen["header_names"])
    dumped = json.dumps(seen)
    for value in (API_KEY, traceparent, "c-1", "Bearer"):
        assert value not in dumped
    await client.post("/admin/reset")
    assert (await client.get("/admin/last-request")).json() == {}
