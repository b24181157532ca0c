"""Hello, auth, close codes, subprotocols, frame limits and health on the WS port."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.ws_gateway.stack import TIME_SCALE, TOKEN, Stack, native, running_stack
from tests.support.servers import free_port
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration


async def closed_with(ws: ClientConnection) -> int | None:
    await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
    return ws.close_code


async def test_hello_ack_with_the_clients_session_id(stack: Stack) -> None:
    async with native(stack.gateway, hello=False) as client:
        ack = await client.hello(session_id="my-session_1")
        assert ack == {"op": "hello_ack", "ok": True, "session_id": "my-session_1"}
        await client.send({"op": "ping"})
        assert await client.recv() == {"op": "pong"}


async def test_hello_ack_makes_a_session_id_when_none_is_valid(stack: Stack) -> None:
    async with native(stack.gateway, hello=False) as client:
        ack = await client.hello(session_id="x")
        assert ack["ok"] is True and len(ack["session_id"]) >= 3 and ack["session_id"] != "x"


async def test_bad_token_gets_unauthorized_then_close_4003(stack: Stack) -> None:
    async with connect(stack.gateway.url) as ws:
        await ws.send(json.dumps({"op": "hello", "token": "wrong-token"}))
        assert json.loads(await ws.recv()) == {
            "op": "hello_ack",
            "ok": False,
            "error": "unauthorized",
        }
        assert await closed_with(ws) == 4003


async def test_invalid_json_before_hello_closes_4000(stack: Stack) -> None:
    async with connect(stack.gateway.url) as ws:
        await ws.send("{this is not json")
        assert json.loads(await ws.recv())["ok"] is False
        assert await closed_with(ws) == 4000


async def test_a_call_before_hello_closes_4001(stack: Stack) -> None:
    async with connect(stack.gateway.url) as ws:
        await ws.send(json.dumps({"op": "call_tool", "request_id": "1", "name": "status"}))
        assert json.loads(await ws.recv()) == {
            "op": "hello_ack",
            "ok": False,
            "error": "missing_hello",
        }
        assert await closed_with(ws) == 4001


async def test_no_hello_in_time_closes_4002(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_HELLO_TIMEOUT_S=0.3 * TIME_SCALE)
    async with connect(gateway.url) as ws:
        assert await closed_with(ws) == 4002


async def test_unknown_subprotocol_closes_4001(stack: Stack) -> None:
    async with connect(stack.gateway.url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        assert await closed_with(ws) == 4001


async def test_exai_v1_subprotocol_is_the_native_protocol(stack: Stack) -> None:
    async with connect(stack.gateway.url, subprotocols=["exai.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "exai.v1"
        await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
        assert json.loads(await ws.recv())["ok"] is True


async def test_over_the_connection_limit_closes_1008(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_CONNECTIONS=2)
    async with native(gateway), native(gateway):
        async with connect(gateway.url) as third:
            assert await closed_with(third) == 1008
    # Places are given back when connections end.
    await asyncio.sleep(0.05)
    async with native(gateway) as again:
        await again.send({"op": "ping"})
        assert await again.recv() == {"op": "pong"}


async def test_an_oversized_frame_closes_1009(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_FRAME_BYTES=2048)
    async with native(gateway) as client:
        await client.send({"op": "ping", "pad": "x" * 4096})
        assert await closed_with(client.ws) == 1009
    assert gateway.connections.open == 0


async def test_a_frame_under_the_limit_is_fine(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_FRAME_BYTES=8192)
    async with native(gateway) as client:
        await client.send({"op": "ping", "pad": "x" * 4096})
        assert await client.recv() == {"op": "pong"}


@pytest.mark.parametrize(
    ("send", "expected_code", "expected_request_id"),
    [
        ("{broken json", "INVALID_REQUEST", None),
        (b"\x00\x01binary", "INVALID_REQUEST", None),
        ('["not", "an", "object"]', "INVALID_REQUEST", None),
        ('{"request_id": "a"}', "INVALID_REQUEST", None),
        ('{"op": "teleport", "request_id": "t1"}', "INVALID_REQUEST", "t1"),
        ('{"op": "call_tool", "name": "status"}', "INVALID_REQUEST", None),
        ('{"op": "call_tool", "request_id": 1.5, "name": "status"}', "INVALID_REQUEST", None),
        ('{"op": "call_tool", "request_id": "n", "name": "nope"}', "TOOL_NOT_FOUND", "n"),
        (
            '{"op": "call_tool", "request_id": "w", "name": "chat", "arguments": [1]}',
            "INVALID_REQUEST",
            "w",
        ),
        (
            '{"op": "call_tool", "request_id": "v", "name": "chat", "arguments": {}}',
            "VALIDATION_ERROR",
            "v",
        ),
        # About "ghost", not addressed to it: such an id may belong to a newer call.
        ('{"op": "cancel", "request_id": "ghost"}', "INVALID_REQUEST", None),
    ],
)
async def test_bad_frames_get_error_frames_and_the_connection_keeps_working(
    stack: Stack, send: str | bytes, expected_code: str, expected_request_id: Any
) -> None:
    async with native(stack.gateway) as client:
        await client.ws.send(send)
        frame = await client.recv()
        while frame["op"] == "progress":
            frame = await client.recv()
        assert frame["op"] == "error"
        assert frame["request_id"] == expected_request_id
        assert frame["error"]["code"] == expected_code and frame["error"]["message"]
        if "cancel" in str(send):
            assert frame["error"]["request_id"] == "ghost"
        await client.send({"op": "ping"})
        assert await client.recv() == {"op": "pong"}
        frames = await client.run("status", request_id="after")
        assert frames[-1]["op"] == "call_tool_res"


async def test_list_tools(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        await client.send({"op": "list_tools", "request_id": "lt"})
        frame = await client.recv()
        assert frame["op"] == "list_tools_res" and frame["request_id"] == "lt"
        tools = {t["name"]: t for t in frame["tools"]}
        assert set(tools) == {"chat", "consensus", "listmodels", "status"}
        assert tools["chat"]["inputSchema"]["required"] == ["prompt"]
        assert all(t["description"] for t in tools.values())


# --- health on the WS port ----------------------------------------------------------


async def test_health_endpoints_on_the_ws_port(stack: Stack) -> None:
    base = stack.gateway.url.replace("ws://", "http://")
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        live = await client.get("/health/live")
        assert (live.status_code, live.json()) == (200, {"status": "alive"})
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        health = (await client.get("/health")).json()
    assert health["status"] == "healthy"
    assert {"version", "timestamp_utc"} <= set(health)
    assert health["components"]["provider-proxy"]["status"] == "up"
    assert health["components"]["storage-adapter"]["status"] == "up"
    # A public port: statuses only (details are in the `status` tool; see test_health).
    assert health["components"]["ws-gateway"] == {"status": "up", "required": True}
    assert live.headers["content-type"] == "application/json"


async def test_not_ready_when_a_required_dependency_is_down(
    captured: CapturedTelemetry, tmp_path: Path
) -> None:
    # provider-proxy is required; storage-adapter is not (see test_health).
    dead = f"http://127.0.0.1:{free_port()}"
    async with running_stack(captured, tmp_path, EXAI_PROVIDER_URL=dead) as stack:
        base = stack.gateway.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert (await client.get("/health/live")).status_code == 200
            ready = await client.get("/health/ready")
            health = (await client.get("/health")).json()
    assert ready.status_code == 503
    assert health["status"] == "unhealthy"
    assert health["components"]["provider-proxy"]["status"] == "down"
    assert health["components"]["storage-adapter"]["status"] == "up"


async def test_a_plain_http_request_elsewhere_is_not_upgraded(stack: Stack) -> None:
    base = stack.gateway.url.replace("ws://", "http://")
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        response = await client.get("/")
    assert response.status_code == 426


async def test_a_dropped_connection_leaves_nothing_behind(stack: Stack) -> None:
    ws = await connect(stack.gateway.url)
    await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
    await ws.recv()
    assert stack.gateway.connections.open == 1
    ws.transport.abort()  # no close frame: the client just vanishes
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    for _ in range(100):
        if stack.gateway.connections.open == 0:
            break
        await asyncio.sleep(0.02)
    assert stack.gateway.connections.open == 0
