"""MCP over WebSocket with the official MCP Python SDK client, unchanged."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from mcp import ClientSession
from mcp.client.websocket import websocket_client
from mcp.types import TextContent
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.ws_gateway.stack import TOKEN, Stack, eventually, native
from tests.support.telemetry import metric_points
from ws_gateway.server import Gateway

pytestmark = [
    pytest.mark.integration,
    # The SDK marks its WebSocket transport deprecated; it is still the client DESIGN §3b names.
    pytest.mark.filterwarnings(
        "ignore:The WebSocket client transport is deprecated:DeprecationWarning"
    ),
]


@asynccontextmanager
async def mcp_session(gateway: Gateway, token: str = TOKEN) -> AsyncIterator[ClientSession]:
    async with websocket_client(f"{gateway.url}/mcp?token={token}") as (read, write):
        async with ClientSession(read, write) as session:
            yield session


async def test_official_client_initializes_lists_and_calls_chat(stack: Stack) -> None:
    async with mcp_session(stack.gateway) as session:
        init = await session.initialize()
        assert init.serverInfo.name == "exai-ws-gateway"
        assert init.capabilities.tools is not None
        tools = await session.list_tools()
        names = {tool.name for tool in tools.tools}
        assert names == {"chat", "consensus", "listmodels", "status"}
        chat = next(t for t in tools.tools if t.name == "chat")
        assert chat.inputSchema["required"] == ["prompt"]

        result = await session.call_tool("chat", {"prompt": "Hello from MCP"})
        assert result.isError is False
        (content,) = result.content
        assert isinstance(content, TextContent) and "Hello from MCP" in content.text
        assert result.meta is not None and len(result.meta["trace_id"]) == 32
        assert result.meta["model"] == "kimi-k2-0905-preview"

        await session.send_ping()
    (span,) = [s for s in stack.captured.spans() if s.name == "ws call_tool chat"]
    assert span.attributes is not None and span.attributes["exai.protocol"] == "mcp"
    assert result.meta["correlation_id"] == span.attributes["exai.correlation_id"]


async def test_tool_failures_are_results_with_is_error(stack: Stack) -> None:
    async with mcp_session(stack.gateway) as session:
        await session.initialize()
        invalid = await session.call_tool("chat", {"temperature": 9})
        assert invalid.isError is True
        text = invalid.content[0]
        assert isinstance(text, TextContent) and text.text.startswith("VALIDATION_ERROR: ")
        assert "prompt" in text.text

        all_fail = await session.call_tool("consensus", {"prompt": "q", "models": ["nope-1"]})
        assert all_fail.isError is True
        # An unknown model is the caller's mistake, told with the proxy's message.
        assert all_fail.meta is not None and all_fail.meta["error_code"] == "VALIDATION_ERROR"
        text = all_fail.content[0]
        assert isinstance(text, TextContent) and "not served by this proxy" in text.text

        listed = await session.call_tool("listmodels", {})
        assert listed.isError is False


async def test_other_tools_over_mcp(stack: Stack) -> None:
    async with mcp_session(stack.gateway) as session:
        await session.initialize()
        consensus = await session.call_tool("consensus", {"prompt": "Tabs or spaces?"})
        assert consensus.isError is False and len(consensus.content) == 2
        status = await session.call_tool("status", {})
        text = status.content[0]
        assert isinstance(text, TextContent)
        assert json.loads(text.text)["dependencies"]["provider-proxy"]["status"] == "up"


async def test_bad_or_missing_token_is_refused_with_http_401(stack: Stack) -> None:
    # Exactly the handshake `mcp.client.websocket.websocket_client` makes (websockets'
    # connect with the `mcp` subprotocol); the SDK lets this InvalidStatus through to the
    # caller. (Not driven through the SDK itself: mcp 1.30 leaks its memory streams
    # when the handshake fails, which `filterwarnings = error` turns into a failure.)
    for url in (f"{stack.gateway.url}/mcp?token=wrong-token", f"{stack.gateway.url}/mcp"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, subprotocols=["mcp"]):  # type: ignore[list-item]
                pass
        assert str(info.value) == "server rejected WebSocket connection: HTTP 401"
        assert info.value.response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_bearer_header_authenticates_raw_json_rpc(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(stack.gateway.url, subprotocols=["mcp"], additional_headers=headers) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "mcp"
        await ws.send("{not json")
        assert json.loads(await ws.recv())["error"]["code"] == -32700
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "nope"}))
        assert json.loads(await ws.recv())["error"]["code"] == -32601
        await ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {}},
                }
            )
        )
        assert json.loads(await ws.recv())["result"]["protocolVersion"] == "2025-06-18"
        await ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nope"}}
            )
        )
        assert json.loads(await ws.recv())["error"]["code"] == -32602


async def test_the_upgrade_token_never_reaches_spans_or_logs(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "query-secret-" + TOKEN[::-1]
    # A wrong token in the query string of a refused MCP upgrade…
    with pytest.raises(InvalidStatus):
        async with connect(f"{stack.gateway.url}/mcp?token={secret}", subprotocols=["mcp"]):  # type: ignore[list-item]
            pass
    # …the right one on an accepted MCP connection, and on a native one.
    async with mcp_session(stack.gateway) as session:
        await session.initialize()
        await session.call_tool("chat", {"prompt": "hello"})
    async with native(stack.gateway, hello=True) as client:
        await client.run("status")
    async with connect(f"{stack.gateway.url}/ws?token={secret}") as ws:
        await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
        await ws.recv()

    # Everything the services logged; the test's own clients log their requests.
    client_side = ("websockets.client", "mcp.")
    logged = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith(client_side)
    )
    assert "ws_gateway" in {record.name.split(".")[0] for record in caplog.records}
    assert "mcp connection open (/mcp?token=[REDACTED])" in logged
    for value in (secret, TOKEN):
        assert value not in logged
        for span in stack.captured.spans():
            assert value not in span.name
            for attribute in (span.attributes or {}).values():
                assert value not in str(attribute)
            for event in span.events:
                assert value not in str(dict(event.attributes or {}))
    gateway_spans = stack.captured.spans_of("ws-gateway")
    assert {
        s.attributes["url.path"]
        for s in gateway_spans
        if s.attributes and "url.path" in s.attributes
    } == {
        "/mcp",
        "/",
    }


async def test_progress_notifications_reach_the_sdk_callback(stack: Stack) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with mcp_session(stack.gateway) as session:
        await session.initialize()
        result = await session.call_tool("chat", {"prompt": "hi"}, progress_callback=on_progress)
    assert result.isError is False
    assert [p for p, _ in seen] == sorted(p for p, _ in seen) and len(seen) >= 2
    assert any(m and "asking" in m for _, m in seen)


async def test_cancelled_notification_aborts_the_upstream_call(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/faults", {"mode": "hang", "rate": 1.0})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(stack.gateway.url, subprotocols=["mcp"], additional_headers=headers) as ws:  # type: ignore[list-item]
        init = {"protocolVersion": "2025-11-25", "capabilities": {}}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        )
        await ws.recv()
        call = {"name": "chat", "arguments": {"prompt": "never answered"}}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        )

        async def hanging() -> bool:
            return int((await stack.stats())["hanging"]) == 1

        await eventually(hanging)
        cancel = {"requestId": 2, "reason": "user gave up"}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        )

        async def released() -> bool:
            return (
                int((await stack.stats())["hanging"]) == 0
                and stack.gateway.limiter.global_inflight == 0
            )

        await eventually(released)
        # No response for a cancelled request (the spec); the connection still answers.
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        assert json.loads(await ws.recv()) == {"jsonrpc": "2.0", "id": 3, "result": {}}


async def test_a_cancelled_notification_in_the_same_write_as_its_call_ends_it(
    stack: Stack,
) -> None:
    gateway, reader = await stack.start_gateway()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(gateway.url, subprotocols=["mcp"], additional_headers=headers) as ws:  # type: ignore[list-item]
        init = {"protocolVersion": "2025-11-25", "capabilities": {}}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        )
        await ws.recv()
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "status"}}
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 2, "reason": "changed my mind"},
        }
        # One write: the gateway reads the cancel before the call's task took a step.
        for message in (call, cancel):
            ws.protocol.send_text(json.dumps(message).encode())
        ws.transport.write(b"".join(ws.protocol.data_to_send()))

        async def ended() -> bool:
            counts = {
                a["exai.outcome"]: p.value for a, p in metric_points(reader, "exai.gateway.calls")
            }
            return counts == {"cancelled": 1}

        await eventually(ended)
        assert gateway.limiter.global_inflight == 0
        # No response for the cancelled request, and its id is free again.
        await ws.send(json.dumps(call))
        answer = json.loads(await ws.recv())
        assert answer["id"] == 2 and answer["result"]["isError"] is False
    assert gateway.limiter.global_inflight == 0
    assert sum(int(p.value) for _, p in metric_points(reader, "exai.gateway.inflight")) == 0
