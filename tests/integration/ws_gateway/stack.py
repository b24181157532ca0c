"""The whole application on loopback for gateway tests: llm-simulator, provider-proxy,
storage-adapter (SQLite + in-memory cache) and ws-gateway, every one real, every one
exporting into the same `captured` span exporter under its own service name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from websockets.asyncio.client import ClientConnection, connect

from llm_simulator.app import create_app as create_simulator
from llm_simulator.settings import SimulatorSettings
from provider_proxy.app import create_app as create_proxy
from provider_proxy.settings import ProxySettings
from storage_adapter.app import create_app as create_storage
from storage_adapter.settings import StorageSettings
from tests.support.asgi import serve_app
from tests.support.internal_auth import (
    PROVIDER_TOKEN,
    SIMULATOR_ADMIN_TOKEN,
    STORAGE_TOKEN,
    SimulatorAdminAuth,
    bearer,
)
from tests.support.telemetry import CapturedTelemetry
from ws_gateway.server import Gateway, create_gateway
from ws_gateway.settings import GatewaySettings

# Stretch every timing bound on a slow machine: EXAI_TEST_TIME_SCALE=3 pytest …
TIME_SCALE = float(os.environ.get("EXAI_TEST_TIME_SCALE", "1"))
TOKEN = "ws-token-for-tests-0123456789"
KIMI_KEY = "sk-kimi-test-key-abcdef0123456789"
GLM_KEY = "glm-test-key-abcdef0123456789.zz"
RECV_TIMEOUT_S = 10 * TIME_SCALE


@dataclass
class Stack:
    captured: CapturedTelemetry
    simulator_url: str
    proxy_url: str
    storage_url: str
    _exit: contextlib.AsyncExitStack = field(repr=False)
    # The default gateway, started with the stack.
    gateway: Gateway = field(init=False)
    reader: InMemoryMetricReader = field(init=False)
    proxy_reader: InMemoryMetricReader = field(init=False)

    async def start_gateway(self, **env: Any) -> tuple[Gateway, InMemoryMetricReader]:
        """Another gateway on the same dependencies, with settings overridden by env name."""
        values = {
            "EXAI_WS_TOKEN": TOKEN,
            "EXAI_WS_PORT": 0,
            "EXAI_PROVIDER_URL": self.proxy_url,
            "EXAI_STORAGE_URL": self.storage_url,
            "EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN,
            "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
            "EXAI_SHUTDOWN_GRACE_S": 1,
            **env,
        }
        settings = GatewaySettings.model_validate(values)
        telemetry, reader = self.captured.build("ws-gateway", settings)
        gateway = create_gateway(settings, telemetry)
        await self._exit.enter_async_context(gateway)
        return gateway, reader

    async def simulator(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(
            base_url=self.simulator_url, auth=SimulatorAdminAuth(), timeout=5
        ) as client:
            response = await client.request(method, path, json=body)
            response.raise_for_status()
            return response.json()

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.simulator("GET", "/admin/stats")
        return result

    async def history(self, continuation_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(
            base_url=self.storage_url, headers=bearer(STORAGE_TOKEN), timeout=5
        ) as client:
            response = await client.get(f"/v1/conversations/{continuation_id}")
            response.raise_for_status()
            messages: list[dict[str, Any]] = response.json()["messages"]
            return messages


@contextlib.asynccontextmanager
async def running_stack(
    captured: CapturedTelemetry, tmp_path: Path, **gateway_env: Any
) -> AsyncIterator[Stack]:
    async with contextlib.AsyncExitStack() as exit_stack:
        sim_settings = SimulatorSettings.model_validate(
            {"SIM_HANG_S": 60, "EXAI_SIMULATOR_ADMIN_TOKEN": SIMULATOR_ADMIN_TOKEN}
        )
        sim_telemetry, _ = captured.build("llm-simulator", sim_settings)
        simulator_url = await exit_stack.enter_async_context(
            serve_app(create_simulator(sim_settings, sim_telemetry))
        )
        proxy_settings = ProxySettings.model_validate(
            {
                "KIMI_API_KEY": KIMI_KEY,
                "KIMI_BASE_URL": f"{simulator_url}/v1",
                "GLM_API_KEY": GLM_KEY,
                "GLM_BASE_URL": f"{simulator_url}/api/paas/v4",
                "EXAI_RETRY_BASE_DELAY_S": 0.01,
                "EXAI_RETRY_MAX_DELAY_S": 0.05,
                "EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN,
            }
        )
        proxy_telemetry, proxy_reader = captured.build("provider-proxy", proxy_settings)
        proxy_url = await exit_stack.enter_async_context(
            serve_app(create_proxy(proxy_settings, proxy_telemetry))
        )
        storage_settings = StorageSettings.model_validate(
            {"EXAI_SQLITE_PATH": str(tmp_path / "exai.db"), "EXAI_STORAGE_TOKEN": STORAGE_TOKEN}
        )
        storage_telemetry, _ = captured.build("storage-adapter", storage_settings)
        storage_url = await exit_stack.enter_async_context(
            serve_app(create_storage(storage_settings, storage_telemetry))
        )
        stack = Stack(captured, simulator_url, proxy_url, storage_url, exit_stack)
        stack.gateway, stack.reader = await stack.start_gateway(**gateway_env)
        stack.proxy_reader = proxy_reader
        yield stack


# --- a native-protocol client ---------------------------------------------------------


class NativeClient:
    """Thin helper over a websockets client: JSON frames in and out, with timeouts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._stash: list[dict[str, Any]] = []

    async def send(self, frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_together(self, *frames: Any) -> None:
        """Several frames in ONE write: the gateway finds them all buffered at once, so
        it reads the later ones before any task it started for the earlier ones ran."""
        for frame in frames:
            self.ws.protocol.send_text(json.dumps(frame).encode())
        self.ws.transport.write(b"".join(self.ws.protocol.data_to_send()))

    async def recv(self, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.recv(), timeout_s)
        frame: dict[str, Any] = json.loads(message)
        return frame

    async def hello(self, token: str = TOKEN, **extra: Any) -> dict[str, Any]:
        await self.send({"op": "hello", "token": token, **extra})
        return await self.recv()

    async def call(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        request_id: Any = "r1",
        **extra: Any,
    ) -> None:
        await self.send(
            {
                "op": "call_tool",
                "request_id": request_id,
                "name": name,
                "arguments": arguments or {},
                **extra,
            }
        )

    async def until_end(self, request_id: Any) -> list[dict[str, Any]]:
        """Every frame for `request_id` up to and including its final one; frames of
        other calls are kept for their own `until_end`."""
        frames: list[dict[str, Any]] = []
        while True:
            frame = self._stashed(request_id) or await self.recv()
            if frame.get("request_id") != request_id:
                self._stash.append(frame)
                continue
            frames.append(frame)
            if frame["op"] in ("call_tool_res", "error", "cancelled"):
                return frames

    def _stashed(self, request_id: Any) -> dict[str, Any] | None:
        for index, frame in enumerate(self._stash):
            if frame.get("request_id") == request_id:
                return self._stash.pop(index)
        return None

    async def run(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        request_id: Any = "r1",
        **extra: Any,
    ) -> list[dict[str, Any]]:
        await self.call(name, arguments, request_id, **extra)
        return await self.until_end(request_id)


@contextlib.asynccontextmanager
async def native(
    gateway: Gateway, *, hello: bool = True, headers: dict[str, str] | None = None, **extra: Any
) -> AsyncIterator[NativeClient]:
    async with connect(gateway.url, additional_headers=headers, open_timeout=5) as ws:
        client = NativeClient(ws)
        if hello:
            ack = await client.hello(**extra)
            assert ack["ok"] is True, ack
        yield client


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s * TIME_SCALE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def final(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return frames[-1]
