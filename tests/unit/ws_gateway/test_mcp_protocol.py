"""MCP JSON-RPC core, sans-I/O: initialisation, tools, errors, cancellation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS as SDK_VERSIONS
from mcp.types import LATEST_PROTOCOL_VERSION as SDK_LATEST

from ws_gateway.errors import ErrorCode
from ws_gateway.mcp_protocol import (
    SUPPORTED_PROTOCOL_VERSIONS,
    CancelRequested,
    JsonRpcCode,
    McpProtocol,
    ToolCallRequested,
)

SPECS = [{"name": "chat", "description": "d", "inputSchema": {"type": "object"}}]


def make(**kwargs: Any) -> McpProtocol:
    return McpProtocol(
        SPECS, server_version="9.9", correlation_id_factory=lambda: "new-corr", **kwargs
    )


def send(proto: McpProtocol, message: Any) -> list[dict[str, Any]]:
    proto.receive_text(json.dumps(message))
    return [json.loads(m) for m in proto.data_to_send()]


def request(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialized(**kwargs: Any) -> McpProtocol:
    proto = make(**kwargs)
    send(proto, request("initialize", {"protocolVersion": SDK_LATEST, "capabilities": {}}))
    send(proto, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return proto


def error_code(message: dict[str, Any]) -> int:
    assert message["jsonrpc"] == "2.0" and "result" not in message
    return int(message["error"]["code"])


def test_we_accept_every_version_the_official_sdk_accepts() -> None:
    assert set(SDK_VERSIONS) <= set(SUPPORTED_PROTOCOL_VERSIONS)


@pytest.mark.parametrize("version", SUPPORTED_PROTOCOL_VERSIONS)
def test_initialize_answers_with_the_clients_version_when_supported(version: str) -> None:
    proto = make()
    (out,) = send(proto, request("initialize", {"protocolVersion": version, "capabilities": {}}))
    assert out["id"] == 1
    assert out["result"]["protocolVersion"] == version
    assert out["result"]["capabilities"] == {"tools": {"listChanged": False}}
    assert out["result"]["serverInfo"] == {"name": "exai-ws-gateway", "version": "9.9"}


def test_initialize_with_an_unknown_version_offers_our_latest() -> None:
    proto = make()
    (out,) = send(proto, request("initialize", {"protocolVersion": "1999-01-01"}))
    assert out["result"]["protocolVersion"] == SUPPORTED_PROTOCOL_VERSIONS[-1]


def test_initialize_without_a_version_is_invalid_params() -> None:
    (out,) = send(make(), request("initialize", {}))
    assert error_code(out) == JsonRpcCode.INVALID_PARAMS


def test_initialize_twice_is_invalid_request() -> None:
    proto = initialized()
    (out,) = send(proto, request("initialize", {"protocolVersion": SDK_LATEST}, id_=2))
    assert error_code(out) == JsonRpcCode.INVALID_REQUEST


def test_tools_before_initialize_are_refused_but_ping_works() -> None:
    proto = make()
    (out,) = send(proto, request("tools/list"))
    assert error_code(out) == JsonRpcCode.INVALID_REQUEST
    assert send(proto, request("ping", id_="p")) == [{"jsonrpc": "2.0", "id": "p", "result": {}}]


def test_tools_list() -> None:
    (out,) = send(initialized(), request("tools/list", id_=3))
    assert out == {"jsonrpc": "2.0", "id": 3, "result": {"tools": SPECS}}


def test_tools_call_becomes_an_event() -> None:
    proto = initialized(header_correlation_id="hdr-corr")
    params = {"name": "chat", "arguments": {"prompt": "hi"}, "_meta": {"progressToken": "tok"}}
    assert send(proto, request("tools/call", params, id_=5)) == []
    assert proto.events_received() == [ToolCallRequested(5, "chat", {"prompt": "hi"}, "hdr-corr")]
    assert proto.in_flight == {5}


def test_tools_call_correlation_id_from_meta_else_new() -> None:
    proto = initialized()
    meta = {"correlation_id": "from-meta"}
    send(proto, request("tools/call", {"name": "chat", "_meta": meta}, id_=1))
    send(proto, request("tools/call", {"name": "chat"}, id_=2))
    ids = [e.correlation_id for e in proto.events_received() if isinstance(e, ToolCallRequested)]
    assert ids == ["from-meta", "new-corr"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"name": 5},
        {"name": "nope"},
        {"name": "chat", "arguments": [1]},
        {"name": "chat", "arguments": "x"},
    ],
)
def test_tools_call_with_bad_params_is_invalid_params(params: dict[str, Any]) -> None:
    proto = initialized()
    (out,) = send(proto, request("tools/call", params, id_=9))
    assert out["id"] == 9 and error_code(out) == JsonRpcCode.INVALID_PARAMS
    assert proto.events_received() == []


def test_a_duplicate_in_flight_id_is_rejected() -> None:
    proto = initialized()
    send(proto, request("tools/call", {"name": "chat"}, id_=1))
    (out,) = send(proto, request("tools/call", {"name": "chat"}, id_=1))
    assert error_code(out) == JsonRpcCode.INVALID_REQUEST
    assert len(proto.events_received()) == 1


def test_results_errors_and_progress() -> None:
    proto = initialized()
    send(proto, request("tools/call", {"name": "chat", "_meta": {"progressToken": 7}}, id_=1))
    send(proto, request("tools/call", {"name": "chat"}, id_=2))
    proto.send_progress(1, 1, "started")
    proto.send_progress(2, 1, "started")  # no token: no notification
    proto.complete_call(1, [{"type": "text", "text": "hello"}], meta={"trace_id": "t"})
    proto.fail_call(2, ErrorCode.PROVIDER_ERROR, "upstream 500", meta={"trace_id": "u"})
    out = [json.loads(m) for m in proto.data_to_send()]
    assert out == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": 7, "progress": 1, "message": "started"},
        },
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {
                "content": [{"type": "text", "text": "hello"}],
                "isError": False,
                "_meta": {"trace_id": "t"},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 2,
            "result": {
                "content": [{"type": "text", "text": "PROVIDER_ERROR: upstream 500"}],
                "isError": True,
                "_meta": {"trace_id": "u", "error_code": "PROVIDER_ERROR"},
            },
        },
    ]
    assert proto.in_flight == frozenset()


def test_cancelled_notification_cancels_an_in_flight_call_with_no_response() -> None:
    proto = initialized()
    send(proto, request("tools/call", {"name": "chat"}, id_="c1"))
    proto.events_received()
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c1"}}
    assert send(proto, cancel) == []
    assert proto.events_received() == [CancelRequested("c1")]
    proto.cancel_call("c1")
    assert proto.data_to_send() == [] and proto.in_flight == frozenset()
    # Cancelling something unknown is ignored, as the spec asks.
    assert send(proto, cancel) == [] and proto.events_received() == []


def test_parse_error() -> None:
    proto = initialized()
    proto.receive_text("{nope")
    (out,) = [json.loads(m) for m in proto.data_to_send()]
    assert out["id"] is None and error_code(out) == JsonRpcCode.PARSE_ERROR


def test_binary_frames_are_parse_errors() -> None:
    proto = initialized()
    proto.receive_bytes(b"{}")
    (out,) = [json.loads(m) for m in proto.data_to_send()]
    assert error_code(out) == JsonRpcCode.PARSE_ERROR


@pytest.mark.parametrize(
    "message",
    [
        [request("ping")],  # batch
        "just a string",
        {"id": 1, "method": "ping"},  # no jsonrpc
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1, "method": 5},
        {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
        {"jsonrpc": "2.0", "id": True, "method": "ping"},
    ],
)
def test_invalid_requests(message: Any) -> None:
    (out,) = send(initialized(), message)
    assert error_code(out) == JsonRpcCode.INVALID_REQUEST


def test_params_that_are_not_an_object_are_invalid_params() -> None:
    (out,) = send(initialized(), {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]})
    assert error_code(out) == JsonRpcCode.INVALID_PARAMS


def test_unknown_method_is_method_not_found() -> None:
    (out,) = send(initialized(), request("resources/list", id_=4))
    assert out["id"] == 4 and error_code(out) == JsonRpcCode.METHOD_NOT_FOUND


def test_unknown_notifications_and_client_responses_are_ignored() -> None:
    proto = initialized()
    assert send(proto, {"jsonrpc": "2.0", "method": "notifications/whatever"}) == []
    assert send(proto, {"jsonrpc": "2.0", "id": 1, "result": {}}) == []
