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
from opentelemetry.trace import SpanKind, StatusCode
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.ws_gateway.stack import TOKEN, Stack, eventually, native
from tests.support.telemetry import metric_points, metric_unit
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
    # The MCP semantic conventions' server span: `{mcp.method.name} {gen_ai.tool.name}`.
    (span,) = [s for s in stack.captured.spans() if s.name == "tools/call chat"]
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None and span.attributes["exai.protocol"] == "mcp"
    assert result.meta["correlation_id"] == span.attributes["exai.correlation_id"]
    assert result.meta["trace_id"] == format(span.context.trace_id, "032x")


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
                a["exai.outcome"]: p.value
                for a, p in metric_points(reader, "exai.gateway.calls")
                if p.value  # not the series created at 0 at start-up
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


MCP_OPERATION = "mcp.server.operation.duration"
MCP_SESSION = "mcp.server.session.duration"


async def test_official_client_calls_follow_the_mcp_semantic_conventions(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway()
    async with mcp_session(gateway) as session:
        init = await session.initialize()
        ok = await session.call_tool("chat", {"prompt": "Hello, conventions"})
        assert ok.isError is False
        failed = await session.call_tool("chat", {"temperature": 9})
        assert failed.isError is True
    version = str(init.protocolVersion)

    spans = [s for s in stack.captured.spans_of("ws-gateway") if s.name == "tools/call chat"]
    assert len(spans) == 2
    good, bad = sorted(spans, key=lambda s: s.start_time or 0)
    for span in (good, bad):
        assert span.kind is SpanKind.SERVER and span.attributes is not None
        attributes = span.attributes
        assert attributes["mcp.method.name"] == "tools/call"
        assert attributes["gen_ai.tool.name"] == "chat"
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["mcp.protocol.version"] == version
        assert attributes["network.transport"] == "tcp"
        assert attributes["network.protocol.name"] == "websocket"
        # Spans may carry the unbounded IDs (metrics never do).
        session_id = attributes["mcp.session.id"]
        assert isinstance(session_id, str) and len(session_id) == 32
        assert session_id == attributes["exai.session_id"]
        assert attributes["jsonrpc.request.id"] == attributes["exai.request_id"]
    assert good.attributes is not None and bad.attributes is not None
    assert good.attributes["mcp.session.id"] == bad.attributes["mcp.session.id"]
    assert good.attributes["jsonrpc.request.id"] != bad.attributes["jsonrpc.request.id"]
    assert "error.type" not in good.attributes and good.status.status_code is StatusCode.UNSET
    # A result with isError: `tool_error` (the conventions' value), our code alongside.
    assert bad.attributes["error.type"] == "tool_error"
    assert bad.attributes["exai.error.code"] == "VALIDATION_ERROR"
    # The caller's mistake is no server error (as the conventions say of invalid params).
    assert bad.status.status_code is StatusCode.UNSET

    bounded = {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "chat",
        "gen_ai.operation.name": "execute_tool",
        "mcp.protocol.version": version,
        "network.transport": "tcp",
        "network.protocol.name": "websocket",
    }
    operations = {a.get("error.type"): (a, p) for a, p in metric_points(reader, MCP_OPERATION)}
    assert set(operations) == {None, "tool_error"}
    assert operations[None][0] == bounded
    assert operations["tool_error"][0] == {**bounded, "error.type": "tool_error"}
    for _, point in operations.values():
        assert point.count == 1
    good_s = ((good.end_time or 0) - (good.start_time or 0)) / 1e9
    assert operations[None][1].sum == pytest.approx(good_s, abs=0.05)
    assert metric_unit(reader, MCP_OPERATION) == "s"

    # The session is recorded once the connection is closed (a normal close: no error).
    async def session_recorded() -> bool:
        return any(True for _ in metric_points(reader, MCP_SESSION))

    await eventually(session_recorded)
    ((attributes, point),) = list(metric_points(reader, MCP_SESSION))
    assert attributes == {
        "mcp.protocol.version": version,
        "network.transport": "tcp",
        "network.protocol.name": "websocket",
    }
    assert point.count == 1 and point.sum >= good_s
    assert metric_unit(reader, MCP_SESSION) == "s"
    # The gateway's own metrics are unchanged.
    calls = {
        (a["exai.tool"], a["exai.protocol"], a["exai.outcome"]): p.value
        for a, p in metric_points(reader, "exai.gateway.calls")
        if p.value
    }
    assert calls == {("chat", "mcp", "ok"): 1, ("chat", "mcp", "client_error"): 1}


async def test_a_session_that_ends_abruptly_records_its_error(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(gateway.url, subprotocols=["mcp"], additional_headers=headers) as ws:  # type: ignore[list-item]
        ws.transport.abort()  # no close frame: the server sees 1006

    async def session_recorded() -> bool:
        return any(True for _ in metric_points(reader, MCP_SESSION))

    await eventually(session_recorded)
    ((attributes, point),) = list(metric_points(reader, MCP_SESSION))
    # Never initialized: no protocol version to tell.
    assert attributes == {
        "network.transport": "tcp",
        "network.protocol.name": "websocket",
        "error.type": "1006",
    }
    assert point.count == 1
    # No tool call, no operation.
    assert list(metric_points(reader, MCP_OPERATION)) == []


async def test_a_cancelled_request_gets_no_operation_duration(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway()
    await stack.simulator("POST", "/admin/faults", {"mode": "hang", "rate": 1.0})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(gateway.url, subprotocols=["mcp"], additional_headers=headers) as ws:  # type: ignore[list-item]
        init = {"protocolVersion": "2025-06-18", "capabilities": {}}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        )
        await ws.recv()
        call = {"name": "chat", "arguments": {"prompt": "never answered"}}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": "c-1", "method": "tools/call", "params": call})
        )

        async def hanging() -> bool:
            return int((await stack.stats())["hanging"]) == 1

        await eventually(hanging)
        cancel = {"requestId": "c-1", "reason": "user gave up"}
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        )

        async def released() -> bool:
            return gateway.limiter.global_inflight == 0

        await eventually(released)
    (span,) = [s for s in stack.captured.spans_of("ws-gateway") if s.name == "tools/call chat"]
    assert span.attributes is not None
    assert span.attributes["jsonrpc.request.id"] == "c-1"
    assert span.attributes["mcp.protocol.version"] == "2025-06-18"
    assert span.attributes["exai.outcome"] == "cancelled" and "error.type" not in span.attributes
    # No answer was sent, so no operation was timed; the gateway's own metric has it.
    assert list(metric_points(reader, MCP_OPERATION)) == []
    outcomes = {
        a["exai.outcome"] for a, p in metric_points(reader, "exai.gateway.calls") if p.value
    }
    assert outcomes == {"cancelled"}
