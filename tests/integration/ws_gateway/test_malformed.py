"""Malformed input over a real WebSocket: every bad frame gets its documented error and
an authenticated connection lives on (issue 8, point 6), in both protocols."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.integration.ws_gateway.stack import (
    RECV_TIMEOUT_S,
    TIME_SCALE,
    TOKEN,
    NativeClient,
    Stack,
    native,
)
from tests.support.telemetry import metric_points
from ws_gateway.server import Gateway

pytestmark = pytest.mark.integration

DEEP = 1000  # ~2 KB of brackets: past the interpreter's recursion limit
SURROGATE = "\ud800"  # json.dumps sends it as the escape \ud800: valid UTF-8 on the wire


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def closed_with(ws: ClientConnection) -> int | None:
    await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
    return ws.close_code


async def still_works(client: NativeClient) -> None:
    await client.send({"op": "ping"})
    assert await client.recv() == {"op": "pong"}
    frames = await client.run("status", request_id="after")
    assert frames[-1]["op"] == "call_tool_res"


def error(frame: dict[str, Any]) -> tuple[Any, str, str]:
    assert frame["op"] == "error", frame
    return frame["request_id"], frame["error"]["code"], frame["error"]["message"]


def no_call_failed_internally(stack: Stack) -> None:
    """Nothing counted as a server failure (the SLO's bad events)."""
    outcomes = {
        a["exai.outcome"] for a, p in metric_points(stack.reader, "exai.gateway.calls") if p.value
    }
    assert outcomes <= {"ok", "client_error"}, outcomes


# --- native protocol --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        nested_list(DEEP),
        nested_object(DEEP),
        nested_list(100),  # parses, but deeper than any frame has reason to be
        '{"op":"ping","x":' + nested_list(DEEP) + "}",
        '{"op":"call_tool","request_id":"d","name":"chat","arguments":' + nested_object(DEEP) + "}",
        '{"op":"call_tool","request_id":"d","name":"chat","arguments":{"prompt":'
        + nested_list(DEEP)
        + "}}",
    ],
    ids=["list", "object", "depth-100", "in-a-field", "arguments", "prompt"],
)
async def test_deep_nesting_is_invalid_request_and_the_connection_lives(
    stack: Stack, text: str
) -> None:
    async with native(stack.gateway) as client:
        await client.ws.send(text)
        request_id, code, message = error(await client.recv())
        assert (request_id, code) == (None, "INVALID_REQUEST")
        assert "nest" in message
        await still_works(client)
    no_call_failed_internally(stack)


async def test_deep_nesting_before_hello_closes_4000_not_1011(stack: Stack) -> None:
    async with connect(stack.gateway.url) as ws:
        await ws.send(nested_list(DEEP))
        assert json.loads(await ws.recv())["ok"] is False
        assert await closed_with(ws) == 4000


@pytest.mark.parametrize("token", [SURROGATE, TOKEN + SURROGATE, "é" * 20, "\udcff\ud800x"])
async def test_a_non_ascii_or_lone_surrogate_token_is_unauthorized_4003(
    stack: Stack, token: str
) -> None:
    async with connect(stack.gateway.url) as ws:
        await ws.send(json.dumps({"op": "hello", "token": token}))
        assert json.loads(await ws.recv()) == {
            "op": "hello_ack",
            "ok": False,
            "error": "unauthorized",
        }
        assert await closed_with(ws) == 4003


@pytest.mark.parametrize(
    "arguments",
    [
        {"prompt": f"hello {SURROGATE} world"},
        {"prompt": "fine", "model": SURROGATE},
        {"prompt": "fine", "continuation_id": f"abc{SURROGATE}"},
        {"prompt": "fine", f"key{SURROGATE}": 1},
    ],
    ids=["prompt", "model", "continuation_id", "key"],
)
async def test_a_lone_surrogate_in_the_arguments_is_a_validation_error(
    stack: Stack, arguments: dict[str, Any]
) -> None:
    async with native(stack.gateway) as client:
        frames = await client.run("chat", arguments, request_id="s1")
        request_id, code, message = error(frames[-1])
        assert (request_id, code) == ("s1", "VALIDATION_ERROR")
        assert "surrogate" in message
        await still_works(client)
    no_call_failed_internally(stack)
    assert (await stack.stats())["requests"] == {}  # nothing reached the provider


async def test_a_lone_surrogate_in_consensus_models_is_a_validation_error(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        frames = await client.run("consensus", {"prompt": "q", "models": [SURROGATE]})
        assert error(frames[-1])[:2] == ("r1", "VALIDATION_ERROR")
        await still_works(client)
    no_call_failed_internally(stack)


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "call_tool", "request_id": SURROGATE, "name": "status"},
        {"op": "list_tools", "request_id": f"x{SURROGATE}"},
        {"op": "cancel", "request_id": SURROGATE},
    ],
)
async def test_a_lone_surrogate_request_id_is_invalid_request(
    stack: Stack, frame: dict[str, Any]
) -> None:
    async with native(stack.gateway) as client:
        await client.send(frame)
        assert error(await client.recv())[:2] == (None, "INVALID_REQUEST")
        await still_works(client)


@pytest.mark.parametrize(
    "frame",
    [
        {"op": SURROGATE},
        {"op": "call_tool", "request_id": "n", "name": SURROGATE},
        {"op": "ping", "correlation_id": SURROGATE},
        {"op": "call_tool", "request_id": "c", "name": "status", "correlation_id": SURROGATE},
    ],
)
async def test_lone_surrogates_elsewhere_never_break_the_connection(
    stack: Stack, frame: dict[str, Any]
) -> None:
    async with native(stack.gateway) as client:
        await client.send(frame)
        reply = await client.recv()
        while reply["op"] == "progress":
            reply = await client.recv()
        assert reply["op"] in ("error", "pong", "call_tool_res"), reply
        if reply["op"] == "error":
            assert reply["error"]["code"] in ("INVALID_REQUEST", "TOOL_NOT_FOUND")
        await still_works(client)
    no_call_failed_internally(stack)


@pytest.mark.parametrize(
    "text",
    [
        '{"op":"call_tool","request_id":"f","name":"chat","arguments":{"prompt":"q",'
        '"temperature":NaN}}',
        '{"op":"call_tool","request_id":"f","name":"chat","arguments":{"prompt":"q",'
        '"temperature":-Infinity}}',
        '{"op":"ping","n":1' + "0" * 5000 + "}",  # past int()'s digit limit
    ],
    ids=["nan", "infinity", "huge-int"],
)
async def test_non_standard_json_is_invalid_request(stack: Stack, text: str) -> None:
    async with native(stack.gateway) as client:
        await client.ws.send(text)
        assert error(await client.recv())[:2] == (None, "INVALID_REQUEST")
        await still_works(client)


async def test_huge_numbers_in_arguments_are_validation_errors(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        for value in (10**400, -(10**400), 1e308):
            frames = await client.run(
                "chat", {"prompt": "q", "temperature": value}, request_id="big"
            )
            assert error(frames[-1])[:2] == ("big", "VALIDATION_ERROR")
        await still_works(client)
    no_call_failed_internally(stack)


# --- MCP ----------------------------------------------------------------------------------


class RawMcp:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), RECV_TIMEOUT_S))
        return reply

    async def request(self, id_: Any, method: str, params: Any = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            reply = await self.recv()
            if reply.get("id") == id_:
                return reply

    async def still_works(self) -> None:
        assert (await self.request("alive", "ping"))["result"] == {}
        result = await self.request("alive-call", "tools/call", {"name": "status"})
        assert result["result"]["isError"] is False


@asynccontextmanager
async def mcp(gateway: Gateway, token: str = TOKEN) -> AsyncIterator[RawMcp]:
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(
        f"{gateway.url}/mcp",
        subprotocols=["mcp"],  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=5,
    ) as ws:
        client = RawMcp(ws)
        init = await client.request(
            0,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
        )
        assert "result" in init
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield client


@pytest.mark.parametrize(
    "text",
    [
        nested_list(DEEP),
        nested_object(DEEP),
        '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"chat",'
        '"arguments":{"prompt":' + nested_list(DEEP) + "}}}",
        '{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x":NaN}}',
    ],
    ids=["list", "object", "prompt", "nan"],
)
async def test_mcp_malformed_json_is_a_parse_error_and_the_connection_lives(
    stack: Stack, text: str
) -> None:
    async with mcp(stack.gateway) as client:
        await client.ws.send(text)
        reply = await client.recv()
        assert reply["id"] is None and reply["error"]["code"] == -32700
        await client.still_works()
    no_call_failed_internally(stack)


async def test_mcp_lone_surrogate_in_arguments_is_invalid_params(stack: Stack) -> None:
    async with mcp(stack.gateway) as client:
        reply = await client.request(
            5, "tools/call", {"name": "chat", "arguments": {"prompt": f"a{SURROGATE}b"}}
        )
        assert reply["error"]["code"] == -32602 and "surrogate" in reply["error"]["message"]
        await client.still_works()
    no_call_failed_internally(stack)
    assert (await stack.stats())["requests"] == {}


async def test_mcp_lone_surrogate_id_is_invalid_request(stack: Stack) -> None:
    async with mcp(stack.gateway) as client:
        await client.send({"jsonrpc": "2.0", "id": SURROGATE, "method": "ping"})
        reply = await client.recv()
        assert reply["id"] is None and reply["error"]["code"] == -32600
        await client.still_works()


@pytest.mark.parametrize("query", ["%ED%A0%80", "%C3%A9" * 20, "%FF%FE"])
async def test_mcp_undecodable_or_non_ascii_token_is_401(stack: Stack, query: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            f"{stack.gateway.url}/mcp?token={query}",
            subprotocols=["mcp"],  # type: ignore[list-item]
            open_timeout=5,
        ):
            pass
    assert info.value.response.status_code == 401


async def raw_upgrade(gateway: Gateway, target: bytes, *headers: bytes) -> bytes:
    """An upgrade request written byte for byte (clients percent-encode; attackers need
    not); the status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        request = [
            b"GET " + target + b" HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            b"Sec-WebSocket-Version: 13",
            *headers,
        ]
        writer.write(b"\r\n".join(request) + b"\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), RECV_TIMEOUT_S)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("target", "header"),
    [
        (b"/mcp?token=\xff\xfe", b"X-Nothing: 1"),
        (b"/mcp", b"Authorization: Bearer " + "é".encode() * 20),
        (b"/caf\xc3\xa9?token=" + TOKEN.encode() + b"\xed\xa0\x80", b"X-Nothing: 1"),
    ],
    ids=["raw-query", "raw-header", "raw-path"],
)
async def test_mcp_raw_non_ascii_bytes_in_the_upgrade_are_401(
    stack: Stack, target: bytes, header: bytes
) -> None:
    status = await raw_upgrade(stack.gateway, target, header, b"Sec-WebSocket-Protocol: mcp")
    assert status.startswith(b"HTTP/1.1 401"), status
    await still_works_native(stack)


async def still_works_native(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        await still_works(client)


async def test_a_raw_non_ascii_path_is_logged_as_valid_text(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws_gateway")
    status = await raw_upgrade(stack.gateway, b"/caf\xc3\xa9\xff?token=abc")
    assert status.startswith(b"HTTP/1.1 101"), status
    await still_works_native(stack)
    opened = [r.getMessage() for r in caplog.records if "connection open" in r.getMessage()]
    assert any("/café\ufffd" in message for message in opened), opened
    for record in caplog.records:
        record.getMessage().encode("utf-8")  # a lone surrogate here breaks log export


@pytest.mark.parametrize("correlation_id", ["abc\n", "abc\r\n", "a\x00b", "x" * 129])
async def test_an_unusable_correlation_id_is_replaced_not_sent_on(
    stack: Stack, correlation_id: str
) -> None:
    async with native(stack.gateway) as client:
        frames = await client.run("chat", {"prompt": "q"}, correlation_id=correlation_id)
        result = frames[-1]
        assert result["op"] == "call_tool_res", result
        assert result["correlation_id"] != correlation_id
    no_call_failed_internally(stack)
