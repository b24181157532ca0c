"""Limits on sockets and frames (issue 8, point 7), over real WebSockets: the pre-hello
frame limit, the cap on unauthenticated sockets, websockets' receive queue, and the
per-connection token bucket in both protocols."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.ws_gateway.stack import (
    TIME_SCALE,
    TOKEN,
    NativeClient,
    Stack,
    eventually,
    native,
)
from tests.integration.ws_gateway.test_malformed import mcp

pytestmark = pytest.mark.integration


async def closed_with(ws: ClientConnection) -> int | None:
    await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
    return ws.close_code


# --- frames before hello ----------------------------------------------------------------


async def test_a_hello_bigger_than_the_pre_hello_limit_closes_1009(stack: Stack) -> None:
    # Default EXAI_MAX_HELLO_FRAME_BYTES: 8 KiB, while EXAI_MAX_FRAME_BYTES is 4 MiB.
    async with connect(stack.gateway.url, max_size=None) as ws:
        await ws.send(json.dumps({"op": "hello", "token": TOKEN, "pad": "x" * 16 * 1024}))
        assert await closed_with(ws) == 1009
    async with connect(stack.gateway.url) as ws:  # before hello, any kind of frame
        await ws.send(b"\x00" * 64 * 1024)
        assert await closed_with(ws) == 1009
    await eventually(lambda: _true(stack.gateway.connections.open == 0))


async def _true(value: bool) -> bool:
    return value


async def test_a_hello_under_the_limit_then_big_frames_after_hello(stack: Stack) -> None:
    async with native(stack.gateway, hello=False) as client:
        ack = await client.hello(pad="x" * 7 * 1024)
        assert ack["ok"] is True
        # Authenticated: EXAI_MAX_FRAME_BYTES applies from now on.
        prompt = "y" * 512 * 1024
        frames = await client.run("chat", {"prompt": prompt, "model": "nope-model"})
        assert frames[-1]["op"] == "error"  # the model is unknown: the frame got through
        assert frames[-1]["error"]["code"] == "VALIDATION_ERROR"
        await client.send({"op": "ping", "pad": "z" * 1024 * 1024})
        assert await client.recv() == {"op": "pong"}


async def test_the_pre_hello_limit_is_configurable(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_HELLO_FRAME_BYTES=512)
    async with connect(gateway.url) as ws:
        await ws.send(json.dumps({"op": "hello", "token": TOKEN, "pad": "x" * 1024}))
        assert await closed_with(ws) == 1009
    async with native(gateway) as client:
        await client.send({"op": "ping", "pad": "x" * 4096})
        assert await client.recv() == {"op": "pong"}


async def test_mcp_is_authenticated_at_the_upgrade_so_big_first_frames_pass(
    stack: Stack,
) -> None:
    async with mcp(stack.gateway) as client:
        reply = await client.request(1, "ping", {"pad": "x" * 256 * 1024})
        assert reply["result"] == {}


# --- unauthenticated sockets ------------------------------------------------------------


async def test_unauthenticated_sockets_have_their_own_cap(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_CONNECTIONS=5, EXAI_MAX_UNAUTHENTICATED=2)
    async with native(gateway) as authenticated:
        idle = [await connect(gateway.url), await connect(gateway.url)]
        await eventually(lambda: _true(gateway.connections.unauthenticated == 2))
        async with connect(gateway.url) as third:  # a third idle socket: no place for it
            assert await closed_with(third) == 1008
        # Places are left for those who authenticate: the idle ones cannot take them.
        await authenticated.send({"op": "ping"})
        assert await authenticated.recv() == {"op": "pong"}
        assert gateway.connections.open == 3
        # One idle socket authenticates: its unauthenticated place is free again.
        await idle[0].send(json.dumps({"op": "hello", "token": TOKEN}))
        assert json.loads(await idle[0].recv())["ok"] is True
        assert gateway.connections.unauthenticated == 1
        async with native(gateway) as another:
            await another.send({"op": "ping"})
            assert await another.recv() == {"op": "pong"}
        for ws in idle:
            await ws.close()
    await eventually(lambda: _true(gateway.connections.open == 0))
    assert gateway.connections.unauthenticated == 0


async def test_a_refused_hello_gives_its_unauthenticated_place_back(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_UNAUTHENTICATED=1)
    for _ in range(3):
        async with connect(gateway.url) as ws:
            await ws.send(json.dumps({"op": "hello", "token": "wrong-token-wrong-token"}))
            assert await closed_with(ws) == 4003
        await eventually(lambda: _true(gateway.connections.unauthenticated == 0))
    async with native(gateway) as client:
        await client.send({"op": "ping"})
        assert await client.recv() == {"op": "pong"}


async def test_mcp_sockets_never_count_as_unauthenticated(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_MAX_UNAUTHENTICATED=1)
    async with connect(gateway.url):  # holds the only unauthenticated place
        await eventually(lambda: _true(gateway.connections.unauthenticated == 1))
        async with mcp(gateway) as first, mcp(gateway) as second:
            assert (await first.request(1, "ping"))["result"] == {}
            assert (await second.request(1, "ping"))["result"] == {}


# --- the receive queue ------------------------------------------------------------------


async def test_websockets_buffers_at_most_ws_max_queue_frames(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_MAX_QUEUE=3)
    assert stack.gateway.settings.ws_max_queue == 4  # the default
    async with native(gateway):
        server = gateway._server
        assert server is not None
        (connection,) = server.connections
        assert connection.recv_messages.high == 3


# --- the token bucket -------------------------------------------------------------------


async def flood(client: NativeClient, frames: list[Any]) -> list[dict[str, Any]]:
    await client.send_together(*frames)
    return [await client.recv() for _ in frames]


async def test_native_frames_over_the_rate_get_over_capacity_and_the_connection_lives(
    stack: Stack,
) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_RATE_PER_S=2, EXAI_WS_RATE_BURST=3)
    async with native(gateway) as client:
        replies = await flood(client, [{"op": "ping"}] * 5)
        assert replies[:3] == [{"op": "pong"}] * 3
        for reply in replies[3:]:
            assert reply["op"] == "error" and reply["request_id"] is None
            assert reply["error"]["code"] == "OVER_CAPACITY"
            assert reply["error"]["message"].startswith("rate limited")
        await asyncio.sleep(0.6)  # one token back at 2/s
        await client.send({"op": "ping"})
        assert await client.recv() == {"op": "pong"}


async def test_a_call_over_the_rate_is_refused_by_its_request_id(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_RATE_PER_S=1, EXAI_WS_RATE_BURST=1)
    async with native(gateway) as client:
        call = {"op": "call_tool", "name": "status", "arguments": {}}
        await client.send_together({**call, "request_id": "a"}, {**call, "request_id": "b"})
        refused = await client.until_end("b")
        assert refused == [
            {
                "op": "error",
                "request_id": "b",
                "error": {"code": "OVER_CAPACITY", "message": refused[0]["error"]["message"]},
            }
        ]
        assert (await client.until_end("a"))[-1]["op"] == "call_tool_res"
    # Refused before it was a call: no span, no `rejected` outcome against the SLO.
    spans = [s for s in stack.captured.spans_of("ws-gateway") if s.name.startswith("ws call")]
    assert len(spans) == 1


async def test_a_cancel_is_never_refused_by_the_rate(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_RATE_PER_S=0.1, EXAI_WS_RATE_BURST=2)
    await stack.simulator("POST", "/admin/faults", {"mode": "hang", "rate": 1.0})
    try:
        async with native(gateway) as client:
            hanging = {"op": "call_tool", "request_id": "h", "name": "chat"}
            # The call and the ping take both tokens; the second ping is over the rate.
            await client.send_together(
                {**hanging, "arguments": {"prompt": "q"}}, {"op": "ping"}, {"op": "ping"}
            )
            await client.send({"op": "cancel", "request_id": "h"})
            replies = [await client.recv()]
            while replies[-1] != {"op": "cancelled", "request_id": "h"}:
                replies.append(await client.recv())
            if {"op": "pong"} not in replies:  # the cancel overtook the ping's answer
                replies.append(await client.recv())
            assert {"op": "pong"} in replies
            assert [f["error"]["code"] for f in replies if f["op"] == "error"] == ["OVER_CAPACITY"]
    finally:
        await stack.simulator("POST", "/admin/faults", {"mode": "none"})


async def test_mcp_requests_over_the_rate_get_a_json_rpc_error(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_RATE_PER_S=2, EXAI_WS_RATE_BURST=4)
    async with mcp(gateway) as client:  # initialize + initialized took two tokens
        for id_ in range(4):
            client.ws.protocol.send_text(
                json.dumps({"jsonrpc": "2.0", "id": id_, "method": "ping"}).encode()
            )
        client.ws.transport.write(b"".join(client.ws.protocol.data_to_send()))
        replies = {}
        for _ in range(4):
            reply = await client.recv()
            replies[reply["id"]] = reply
        assert [replies[i].get("result") for i in (0, 1)] == [{}, {}]
        for i in (2, 3):
            error = replies[i]["error"]
            assert error["code"] == -32000 and error["message"].startswith("rate limited")
            assert error["data"]["code"] == "OVER_CAPACITY"
            assert error["data"]["retry_after_s"] > 0
        await asyncio.sleep(1.1 * TIME_SCALE)
        assert (await client.request("again", "ping"))["result"] == {}


async def test_the_rate_applies_per_connection(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_RATE_PER_S=0.1, EXAI_WS_RATE_BURST=2)
    async with native(gateway) as first, native(gateway) as second:
        assert await flood(first, [{"op": "ping"}] * 2) == [{"op": "pong"}] * 2
        assert await flood(second, [{"op": "ping"}] * 2) == [{"op": "pong"}] * 2
        await first.send({"op": "ping"})
        assert (await first.recv())["error"]["code"] == "OVER_CAPACITY"
