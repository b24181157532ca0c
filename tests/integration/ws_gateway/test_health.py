"""Health on the public WS port: readiness needs only what calls need, probes are
shared and cached, and the public answer carries statuses, never details."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ws_gateway.stack import TIME_SCALE, Stack, final, native, running_stack
from tests.support.faulty_http import relay
from tests.support.servers import free_port
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

PUBLIC_COMPONENT_KEYS = {"status", "required"}


def http_base(stack: Stack) -> str:
    return stack.gateway.url.replace("ws://", "http://")


async def get_health(stack: Stack) -> tuple[httpx.Response, httpx.Response, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=http_base(stack), timeout=10) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        health = await client.get("/health")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert live.headers["content-type"] == "application/json"
    document: dict[str, Any] = health.json()
    return ready, health, document


def assert_statuses_only(document: dict[str, Any]) -> None:
    assert set(document) == {"status", "version", "timestamp_utc", "components"}
    for name, component in document["components"].items():
        assert set(component) == PUBLIC_COMPONENT_KEYS, (name, component)


async def test_health_endpoints_on_the_ws_port(stack: Stack) -> None:
    ready, health, document = await get_health(stack)
    assert ready.status_code == 200 and health.status_code == 200
    assert document["status"] == "healthy"
    assert document["components"] == {
        "provider-proxy": {"status": "up", "required": True},
        "storage-adapter": {"status": "up", "required": False},
        "ws-gateway": {"status": "up", "required": True},
    }
    assert_statuses_only(ready.json())
    assert_statuses_only(document)


async def test_storage_down_degrades_the_gateway_but_it_stays_ready(
    captured: CapturedTelemetry, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with running_stack(captured, tmp_path, EXAI_STORAGE_URL=dead) as stack:
        ready, _, document = await get_health(stack)
        async with native(stack.gateway) as client:
            status = json.loads(final(await client.run("status"))["outputs"][0]["text"])
    # Chat without memory works: no reason to take this gateway out of rotation.
    assert ready.status_code == 200
    assert ready.json()["status"] == document["status"] == "degraded"
    assert document["components"]["storage-adapter"] == {"status": "down", "required": False}
    assert document["components"]["provider-proxy"]["status"] == "up"
    # No error text, exception names or URLs on the public port...
    body = json.dumps(document) + ready.text
    for leak in ("ConnectError", "error", "127.0.0.1", "latency_ms", "http_status"):
        assert leak not in body
    # ... they are for authenticated callers (the `status` tool).
    assert status["status"] == "degraded"
    assert status["dependencies"]["storage-adapter"]["error"] == "ConnectError"


async def test_provider_proxy_down_makes_the_gateway_unready(
    captured: CapturedTelemetry, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with running_stack(captured, tmp_path, EXAI_PROVIDER_URL=dead) as stack:
        ready, _, document = await get_health(stack)
    assert ready.status_code == 503
    assert document["status"] == "unhealthy"
    assert document["components"]["provider-proxy"] == {"status": "down", "required": True}
    assert document["components"]["storage-adapter"]["status"] == "up"
    assert_statuses_only(document)


async def test_health_requests_share_one_probe_of_each_dependency(stack: Stack) -> None:
    async with relay(stack.storage_url) as storage, relay(stack.proxy_url) as proxy:
        gateway, _ = await stack.start_gateway(
            EXAI_STORAGE_URL=storage.url, EXAI_PROVIDER_URL=proxy.url
        )
        # The probe takes a while: everyone arriving meanwhile waits for the same one.
        storage.delay_s = 0.2
        base = gateway.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            paths = ["/health", "/health/ready"] * 10
            answers = await asyncio.gather(*(client.get(path) for path in paths))
            assert {a.status_code for a in answers} == {200}
            assert {a.json()["status"] for a in answers} == {"healthy"}
            assert storage.count("GET /health/ready") == proxy.count("GET /health/ready") == 1
            # Cached for about a second after it finished, then probed again.
            finished = time.monotonic()
            await client.get("/health")
            assert storage.count("GET /health/ready") == 1
            await asyncio.sleep(max(0.0, finished + 1.1 - time.monotonic()))
            await client.get("/health")
            assert storage.count("GET /health/ready") == 2
        assert time.monotonic() - finished < 5 * TIME_SCALE


async def test_health_cache_can_be_turned_off(stack: Stack) -> None:
    async with relay(stack.storage_url) as storage:
        gateway, _ = await stack.start_gateway(EXAI_STORAGE_URL=storage.url, EXAI_HEALTH_CACHE_S=0)
        base = gateway.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(3):
                assert (await client.get("/health")).status_code == 200
    assert storage.count("GET /health/ready") == 3
