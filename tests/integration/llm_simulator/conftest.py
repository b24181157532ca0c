"""A real llm-simulator on 127.0.0.1:<free port>, its spans in the `captured` exporter."""

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

from llm_simulator.app import create_app
from llm_simulator.settings import SimulatorSettings
from llm_simulator.state import SimulatorState
from tests.support.asgi import serve_app
from tests.support.internal_auth import SIMULATOR_ADMIN_TOKEN, SimulatorAdminAuth
from tests.support.sse import chunks, sse_payloads, streamed_text  # noqa: F401 (re-exported)
from tests.support.telemetry import CapturedTelemetry

# Stretch every timing bound on a slow machine: EXAI_TEST_TIME_SCALE=3 pytest …
TIME_SCALE = float(os.environ.get("EXAI_TEST_TIME_SCALE", "1"))
API_KEY = "sk-simulator-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PREFIX = {"kimi": "/v1", "glm": "/api/paas/v4"}
MODEL = {"kimi": "kimi-k2-turbo-preview", "glm": "glm-4.5"}


@dataclass
class Simulator:
    url: str
    state: SimulatorState

    def chat_url(self, provider: str) -> str:
        return f"{self.url}{PREFIX[provider]}/chat/completions"


@contextlib.asynccontextmanager
async def running_simulator(
    captured: CapturedTelemetry, **overrides: Any
) -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(**{"simulator_admin_token": SIMULATOR_ADMIN_TOKEN, **overrides})
    telemetry, _ = captured.build("llm-simulator", settings)
    app = create_app(settings, telemetry)
    async with serve_app(app) as url:
        yield Simulator(url, app.state.simulator)


@pytest.fixture
async def sim(captured: CapturedTelemetry) -> AsyncIterator[Simulator]:
    async with running_simulator(captured) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    # The fake API key on chat requests, the admin token on /admin/*.
    async with httpx.AsyncClient(
        base_url=sim.url, headers=AUTH, auth=SimulatorAdminAuth(), timeout=10 * TIME_SCALE
    ) as c:
        yield c


def chat_body(
    provider: str, prompt: str = "What is the capital of France?", **extra: Any
) -> dict[str, Any]:
    return {"model": MODEL[provider], "messages": [{"role": "user", "content": prompt}], **extra}


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s * TIME_SCALE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
