"""A real provider-proxy in front of a real llm-simulator, both on 127.0.0.1:<free port>.

Both services' spans land in the `captured` exporter. Faults are injected the way an
operator would: `POST /admin/faults` on the simulator — or, for "the first n requests
fail", by adding the simulator's own `X-Simulator-Fault` header to those requests
(:class:`FaultFirst`), since a global fault cannot count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_simulator.app import create_app as create_simulator
from llm_simulator.settings import SimulatorSettings
from llm_simulator.state import SimulatorState
from provider_proxy.app import ProxyState, create_app
from provider_proxy.settings import ProxySettings
from tests.support.asgi import serve_app
from tests.support.internal_auth import (
    PROVIDER_TOKEN,
    SIMULATOR_ADMIN_TOKEN,
    SimulatorAdminAuth,
    bearer,
)
from tests.support.sse import chunks, sse_payloads, streamed_text  # noqa: F401 (re-exported)
from tests.support.telemetry import CapturedTelemetry

# Stretch every timing bound on a slow machine: EXAI_TEST_TIME_SCALE=3 pytest …
TIME_SCALE = float(os.environ.get("EXAI_TEST_TIME_SCALE", "1"))
API_KEY = "sk-proxy-test-KEY-do-not-leak-0123456789"
MODEL = {"kimi": "kimi-k2-turbo-preview", "glm": "glm-4.5"}
PROXY = "provider-proxy"
SIMULATOR = "llm-simulator"

# Quick retries and cool-downs so that resilience tests take a fraction of a second.
FAST: dict[str, Any] = {
    "retry_base_delay_s": 0.01,
    "retry_max_delay_s": 0.05,
    "circuit_cooldown_s": 60.0,
    "kimi_deadline_s": 10.0 * TIME_SCALE,
    "glm_deadline_s": 10.0 * TIME_SCALE,
}


class FaultFirst:
    """Wraps the simulator: its next `count` chat requests carry `X-Simulator-Fault`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.mode = "none"
        self.remaining = 0

    def arm(self, mode: str, count: int) -> None:
        self.mode, self.remaining = mode, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].endswith("/chat/completions")
            and self.remaining > 0
        ):
            self.remaining -= 1
            headers = [*scope["headers"], (b"x-simulator-fault", self.mode.encode())]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


@dataclass
class Stack:
    url: str  # the proxy
    sim_url: str
    sim: SimulatorState
    faults: FaultFirst
    proxy: ProxyState
    reader: InMemoryMetricReader
    captured: CapturedTelemetry

    async def global_fault(self, mode: str, provider: str | None = None, **extra: Any) -> None:
        async with httpx.AsyncClient(base_url=self.sim_url, auth=SimulatorAdminAuth()) as client:
            body = {"mode": mode, **extra}
            if provider is not None:
                body["provider"] = provider
            response = await client.post("/admin/faults", json=body)
            response.raise_for_status()

    def requests_seen(self, provider: str) -> int:
        return self.sim.stats.requests[provider]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A client of the proxy, sending its internal token as the gateway does."""
        kwargs["headers"] = {**bearer(PROVIDER_TOKEN), **kwargs.get("headers", {})}
        return httpx.AsyncClient(base_url=self.url, timeout=20 * TIME_SCALE, **kwargs)

    async def chat(self, provider: str = "kimi", **extra: Any) -> httpx.Response:
        async with self.client() as client:
            return await client.post("/v1/chat/completions", json=chat_body(provider, **extra))

    def proxy_spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.captured.spans_of(PROXY)
        return [s for s in spans if name is None or s.name == name]

    async def settled(self, count: int, name: str = "POST /v1/chat/completions") -> None:
        """Wait until `count` proxy spans called `name` have ended (a server span ends
        just after its response has been sent, so the client can be faster)."""
        await eventually(lambda: len(self.proxy_spans(name)) >= count)


@contextlib.asynccontextmanager
async def running_stack(
    captured: CapturedTelemetry,
    simulator: dict[str, Any] | None = None,
    *,
    keys: bool = True,
    **proxy: Any,
) -> AsyncIterator[Stack]:
    sim_settings = SimulatorSettings(
        **{"simulator_admin_token": SIMULATOR_ADMIN_TOKEN, **(simulator or {})}
    )
    sim_telemetry, _ = captured.build(SIMULATOR, sim_settings)
    sim_app = create_simulator(sim_settings, sim_telemetry)
    faults = FaultFirst(sim_app)
    async with serve_app(faults) as sim_url:
        options: dict[str, Any] = {"provider_token": PROVIDER_TOKEN, **FAST, **proxy}
        if keys:
            options.setdefault("kimi_api_key", SecretStr(API_KEY))
            options.setdefault("glm_api_key", SecretStr(API_KEY))
            options.setdefault("kimi_base_url", f"{sim_url}/v1")
            options.setdefault("glm_base_url", f"{sim_url}/api/paas/v4")
        else:
            options.setdefault("simulator_url", sim_url)
        settings = ProxySettings(**options)
        telemetry, reader = captured.build(PROXY, settings)
        app = create_app(settings, telemetry)
        async with serve_app(app) as url:
            yield Stack(
                url, sim_url, sim_app.state.simulator, faults, app.state.proxy, reader, captured
            )


@pytest.fixture
async def stack(captured: CapturedTelemetry) -> AsyncIterator[Stack]:
    async with running_stack(captured) as running:
        yield running


def chat_body(provider: str = "kimi", **extra: Any) -> dict[str, Any]:
    """Two messages, so that the simulator reports cached prompt tokens."""
    return {
        "model": MODEL[provider],
        "messages": [
            {"role": "system", "content": "You answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        **extra,
    }


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s * TIME_SCALE
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
