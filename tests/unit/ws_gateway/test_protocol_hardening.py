"""Both protocol cores against malformed input and floods, sans-I/O (issue 8, points
6, 7 and 12): strict JSON, lone surrogates, client tokens, the token bucket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ws_gateway.auth import ClientTokens
from ws_gateway.limits import TokenBucket
from ws_gateway.mcp_protocol import JsonRpcCode, McpProtocol, ToolCallRequested
from ws_gateway.protocol import (
    CallRequested,
    CancelRequested,
    CloseCode,
    HelloAccepted,
    NativeProtocol,
)

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"
TOKENS = ClientTokens({"alice": [ALICE], "bob": [BOB]})
SPECS = [{"name": "chat", "description": "d", "inputSchema": {"type": "object"}}]
DEEP = "[" * 1000 + "]" * 1000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def native(**kwargs: Any) -> NativeProtocol:
    return NativeProtocol(
        TOKENS, SPECS, max_frame_bytes=1 << 20, session_id_factory=lambda: "sess", **kwargs
    )


def out(proto: NativeProtocol | McpProtocol) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in proto.data_to_send()]


def hello(proto: NativeProtocol, token: str = ALICE) -> None:
    proto.receive_text(json.dumps({"op": "hello", "token": token}))
    assert out(proto)[0]["ok"] is True
    proto.events_received()


def call(request_id: Any = "r1", **arguments: Any) -> str:
    frame = {"op": "call_tool", "request_id": request_id, "name": "chat", "arguments": arguments}
    return json.dumps(frame)


# --- native: strict JSON and lone surrogates ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [DEEP, '{"op":"ping","x":' + DEEP + "}", call(prompt="q").replace('"q"', DEEP), '{"x":NaN}'],
)
def test_malformed_json_after_hello_is_invalid_request_and_the_connection_lives(
    text: str,
) -> None:
    proto = native()
    hello(proto)
    proto.receive_text(text)
    (frame,) = out(proto)
    assert (frame["op"], frame["request_id"], frame["error"]["code"]) == (
        "error",
        None,
        "INVALID_REQUEST",
    )
    assert frame["error"]["message"].startswith("invalid JSON")
    assert proto.close is None and proto.events_received() == []
    proto.receive_text('{"op":"ping"}')
    assert out(proto) == [{"op": "pong"}]


def test_deep_nesting_before_hello_closes_4000() -> None:
    proto = native()
    proto.receive_text(DEEP)
    assert out(proto) == [{"op": "hello_ack", "ok": False, "error": "invalid_hello"}]
    assert proto.close is not None and proto.close.code is CloseCode.INVALID_JSON_BEFORE_HELLO


@pytest.mark.parametrize("token", ["\ud800", ALICE + "\udfff", "é" * 30, ALICE[:-1]])
def test_tokens_that_match_nothing_close_4003_without_raising(token: str) -> None:
    proto = native()
    proto.receive_text(json.dumps({"op": "hello", "token": token}))
    assert out(proto) == [{"op": "hello_ack", "ok": False, "error": "unauthorized"}]
    assert proto.close is not None and proto.close.code is CloseCode.UNAUTHORIZED
    assert TOKENS.client_for(token) is None


@pytest.mark.parametrize(
    "arguments",
    [{"prompt": "a\ud800b"}, {"prompt": "q", "models": ["\udc00"]}, {"\ud801": 1}],
)
def test_a_lone_surrogate_in_arguments_is_a_validation_error_for_that_call(
    arguments: dict[str, Any],
) -> None:
    proto = native()
    hello(proto)
    proto.events_received()
    proto.receive_text(call("s", **arguments))
    (frame,) = out(proto)
    assert frame["request_id"] == "s" and frame["error"]["code"] == "VALIDATION_ERROR"
    assert "surrogate" in frame["error"]["message"]
    assert proto.events_received() == [] and proto.in_flight == frozenset()


def test_a_lone_surrogate_request_id_is_invalid_request_unaddressed() -> None:
    proto = native()
    hello(proto)
    proto.receive_text(call("\ud800", prompt="q"))
    (frame,) = out(proto)
    assert frame["request_id"] is None and frame["error"]["code"] == "INVALID_REQUEST"


def test_a_surrogate_pair_is_ordinary_text() -> None:
    proto = native()
    hello(proto)
    proto.events_received()
    proto.receive_text(call("p", prompt="party \ud83c\udf89"))
    (event,) = proto.events_received()
    assert isinstance(event, CallRequested) and event.arguments == {"prompt": "party 🎉"}


# --- native: client ids -------------------------------------------------------------------


@pytest.mark.parametrize(("token", "client_id"), [(ALICE, "alice"), (BOB, "bob")])
def test_hello_names_the_tokens_client(token: str, client_id: str) -> None:
    proto = native()
    proto.receive_text(json.dumps({"op": "hello", "token": token}))
    assert proto.client_id == client_id
    assert proto.events_received() == [HelloAccepted("sess", client_id)]


def test_a_single_token_string_is_client_default() -> None:
    proto = NativeProtocol(ALICE, SPECS, max_frame_bytes=1024)
    proto.receive_text(json.dumps({"op": "hello", "token": ALICE}))
    assert proto.client_id == "default"


# --- native: the token bucket -------------------------------------------------------------


def paced(rate: float = 1.0, burst: int = 2) -> tuple[NativeProtocol, Clock]:
    clock = Clock()
    proto = native(rate_limit=TokenBucket(rate, burst, clock=clock))
    hello(proto)  # the hello itself is not paced
    proto.events_received()
    return proto, clock


def test_frames_over_the_rate_get_over_capacity_then_pass_again_later() -> None:
    proto, clock = paced()
    for _ in range(3):
        proto.receive_text('{"op":"ping"}')
    pong, pong2, limited = out(proto)
    assert pong == pong2 == {"op": "pong"}
    assert limited["request_id"] is None and limited["error"]["code"] == "OVER_CAPACITY"
    assert (
        limited["error"]["message"].startswith("rate limited")
        and "1.00s" in limited["error"]["message"]
    )
    assert proto.close is None
    clock.now += 1.0
    proto.receive_text('{"op":"ping"}')
    assert out(proto) == [{"op": "pong"}]


def test_malformed_and_binary_frames_count_too() -> None:
    proto, _ = paced(burst=1)
    proto.receive_bytes(b"\x00")
    proto.receive_text("{")
    first, second = out(proto)
    assert first["error"]["code"] == "INVALID_REQUEST"
    assert second["error"]["code"] == "OVER_CAPACITY"


def test_a_call_over_the_rate_is_refused_by_its_id_and_never_starts() -> None:
    proto, _ = paced(burst=1)
    proto.receive_text('{"op":"ping"}')
    proto.receive_text(call("c", prompt="q"))
    proto.receive_text('{"op":"list_tools","request_id":"l"}')
    _, refused, listed = out(proto)
    assert (refused["request_id"], refused["error"]["code"]) == ("c", "OVER_CAPACITY")
    assert (listed["request_id"], listed["error"]["code"]) == ("l", "OVER_CAPACITY")
    assert proto.events_received() == [] and proto.in_flight == frozenset()


def test_a_duplicate_id_over_the_rate_is_not_addressed_to_the_running_call() -> None:
    proto, _ = paced(burst=1)
    proto.receive_text(call("c", prompt="q"))
    proto.receive_text(call("c", prompt="again"))
    (refused,) = out(proto)
    assert refused["request_id"] is None and refused["error"]["request_id"] == "c"
    assert proto.in_flight == {"c"}


def test_a_cancel_of_a_call_in_flight_is_never_refused() -> None:
    proto, _ = paced(burst=1)
    proto.receive_text(call("c", prompt="q"))
    proto.receive_text('{"op":"cancel","request_id":"c"}')
    assert proto.events_received()[-1] == CancelRequested("c")
    proto.receive_text('{"op":"cancel","request_id":"ghost"}')  # not in flight: paced
    (refused,) = out(proto)
    assert refused["error"]["code"] == "OVER_CAPACITY"


# --- MCP ----------------------------------------------------------------------------------


def mcp(**kwargs: Any) -> McpProtocol:
    proto = McpProtocol(SPECS, server_version="1", **kwargs)
    proto.receive_text(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18"},
            }
        )
    )
    proto.data_to_send()
    return proto


def rpc(id_: Any, method: str, params: Any = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


@pytest.mark.parametrize(
    "text",
    [DEEP, '{"a":' * 999 + "1" + "}" * 999, rpc(1, "ping", {"x": 1}).replace("1}", "NaN}")],
)
def test_mcp_malformed_json_is_a_parse_error(text: str) -> None:
    proto = mcp()
    proto.receive_text(text)
    (reply,) = out(proto)
    assert reply["id"] is None and reply["error"]["code"] == JsonRpcCode.PARSE_ERROR
    proto.receive_text(rpc(2, "ping"))
    assert out(proto) == [{"jsonrpc": "2.0", "id": 2, "result": {}}]


def test_mcp_lone_surrogates() -> None:
    proto = mcp()
    proto.receive_text(rpc("\ud800", "ping"))
    proto.receive_text(rpc(3, "tools/call", {"name": "chat", "arguments": {"prompt": "\udfff"}}))
    bad_id, bad_args = out(proto)
    assert bad_id["id"] is None and bad_id["error"]["code"] == JsonRpcCode.INVALID_REQUEST
    assert bad_args["id"] == 3 and bad_args["error"]["code"] == JsonRpcCode.INVALID_PARAMS
    assert proto.events_received() == []


def test_mcp_requests_over_the_rate_get_an_error_notifications_are_dropped() -> None:
    clock = Clock()
    proto = mcp(rate_limit=TokenBucket(1, 3, clock=clock))  # initialize took one
    proto.receive_text(rpc(1, "tools/call", {"name": "chat", "arguments": {"prompt": "q"}}))
    proto.receive_text(rpc(2, "ping"))
    proto.receive_text(rpc(3, "ping"))
    proto.receive_text(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    pong, limited = out(proto)
    assert pong == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert limited["id"] == 3 and limited["error"]["code"] == JsonRpcCode.RATE_LIMITED == -32000
    assert limited["error"]["data"] == {"code": "OVER_CAPACITY", "retry_after_s": 1.0}
    assert limited["error"]["message"] == (
        "rate limited: over 1 messages/s (burst 3) on this connection"
    )
    assert [type(e) for e in proto.events_received()] == [ToolCallRequested]
    # A cancel of the call in flight goes through all the same.
    cancel = {"method": "notifications/cancelled", "params": {"requestId": 1}}
    proto.receive_text(json.dumps({"jsonrpc": "2.0", **cancel}))
    assert len(proto.events_received()) == 1
    clock.now += 1
    proto.receive_text(rpc(4, "ping"))
    assert out(proto) == [{"jsonrpc": "2.0", "id": 4, "result": {}}]
