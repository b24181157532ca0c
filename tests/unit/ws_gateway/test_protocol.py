"""The native protocol's sans-I/O core: every frame type and every error path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ws_gateway.errors import ErrorCode
from ws_gateway.protocol import (
    CallRequested,
    CancelRequested,
    Close,
    CloseCode,
    HelloAccepted,
    NativeProtocol,
    State,
)

TOKEN = "s3cret-token-for-tests"
SPECS = [
    {"name": "chat", "description": "d", "inputSchema": {"type": "object"}},
    {"name": "status", "description": "d", "inputSchema": {"type": "object"}},
]


def make(**kwargs: Any) -> NativeProtocol:
    options: dict[str, Any] = {
        "max_frame_bytes": 1024,
        "session_id_factory": lambda: "generated-session",
        "correlation_id_factory": lambda: "generated-corr",
    }
    options.update(kwargs)
    return NativeProtocol(TOKEN, SPECS, **options)


def frames(proto: NativeProtocol) -> list[dict[str, Any]]:
    return [json.loads(f) for f in proto.data_to_send()]


def send(proto: NativeProtocol, frame: Any) -> list[dict[str, Any]]:
    proto.receive_text(json.dumps(frame))
    return frames(proto)


def authenticated(**kwargs: Any) -> NativeProtocol:
    hello = kwargs.pop("hello", {})
    proto = make(**kwargs)
    send(proto, {"op": "hello", "token": TOKEN, **hello})
    proto.events_received()
    return proto


def error_of(frame: dict[str, Any]) -> tuple[Any, str]:
    assert frame["op"] == "error"
    assert set(frame) >= {"op", "request_id", "error"}
    assert set(frame["error"]) == {"code", "message"}
    return frame["request_id"], frame["error"]["code"]


# --- hello ----------------------------------------------------------------------------


def test_hello_with_the_right_token_is_acknowledged_with_a_session_id() -> None:
    proto = make()
    out = send(proto, {"op": "hello", "token": TOKEN})
    assert out == [{"op": "hello_ack", "ok": True, "session_id": "generated-session"}]
    assert proto.events_received() == [HelloAccepted("generated-session")]
    assert proto.authenticated and proto.close is None


@pytest.mark.parametrize("session_id", ["abc", "a" * 64, "Sess_01-x"])
def test_a_valid_client_session_id_is_kept(session_id: str) -> None:
    proto = make()
    out = send(proto, {"op": "hello", "token": TOKEN, "session_id": session_id})
    assert out[0]["session_id"] == session_id == proto.session_id


@pytest.mark.parametrize("session_id", ["ab", "a" * 65, "has space", "semi;colon", 42, None, ""])
def test_an_invalid_session_id_is_replaced_not_refused(session_id: object) -> None:
    proto = make()
    out = send(proto, {"op": "hello", "token": TOKEN, "session_id": session_id})
    assert out == [{"op": "hello_ack", "ok": True, "session_id": "generated-session"}]


@pytest.mark.parametrize("token", ["wrong", "", None, 123, ["list"], TOKEN + "x", "ünïcode"])
def test_a_bad_token_is_refused_then_closed_4003(token: object) -> None:
    proto = make()
    hello: dict[str, Any] = {"op": "hello"}
    if token is not None:
        hello["token"] = token
    out = send(proto, hello)
    assert out == [{"op": "hello_ack", "ok": False, "error": "unauthorized"}]
    assert proto.close == Close(CloseCode.UNAUTHORIZED, "unauthorized")
    assert proto.events_received() == []
    assert proto.state is State.CLOSED


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2", "\x00"])
def test_invalid_json_before_hello_closes_4000(text: str) -> None:
    proto = make()
    proto.receive_text(text)
    assert frames(proto) == [{"op": "hello_ack", "ok": False, "error": "invalid_hello"}]
    assert proto.close is not None and proto.close.code == CloseCode.INVALID_JSON_BEFORE_HELLO


@pytest.mark.parametrize("frame", [[1, 2], "hello", 42, None])
def test_json_that_is_not_an_object_before_hello_closes_4000(frame: object) -> None:
    proto = make()
    send(proto, frame)
    assert proto.close is not None and proto.close.code == 4000


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "call_tool", "request_id": "1", "name": "chat", "arguments": {}},
        {"op": "list_tools", "request_id": "1"},
        {"op": "ping"},
        {"token": TOKEN},
    ],
)
def test_calls_before_hello_are_refused_and_closed_4001(frame: dict[str, Any]) -> None:
    proto = make()
    out = send(proto, frame)
    assert out == [{"op": "hello_ack", "ok": False, "error": "missing_hello"}]
    assert proto.close is not None and proto.close.code == CloseCode.UNKNOWN_PROTOCOL
    assert proto.events_received() == []


def test_binary_before_hello_closes_4000() -> None:
    proto = make()
    proto.receive_bytes(b'{"op":"hello"}')
    assert proto.close is not None and proto.close.code == 4000


def test_hello_timeout_closes_4002_only_while_waiting_for_hello() -> None:
    proto = make()
    proto.hello_timed_out()
    assert proto.close == Close(CloseCode.HELLO_TIMEOUT, "hello timeout")
    assert frames(proto) == []

    open_proto = authenticated()
    open_proto.hello_timed_out()
    assert open_proto.close is None and open_proto.authenticated


def test_nothing_is_processed_after_close() -> None:
    proto = make()
    proto.hello_timed_out()
    send(proto, {"op": "hello", "token": TOKEN})
    proto.receive_bytes(b"x")
    assert frames(proto) == [] and proto.events_received() == []
    assert proto.close is not None and proto.close.code == 4002


def test_a_second_hello_is_an_error_not_a_close() -> None:
    proto = authenticated()
    (frame,) = send(proto, {"op": "hello", "token": TOKEN})
    assert error_of(frame) == (None, ErrorCode.INVALID_REQUEST)
    assert proto.close is None


# --- after hello: bad frames get error frames, never a close ---------------------------


@pytest.mark.parametrize("text", ["{oops", "", "nul\x00", '{"op": "ping"'])
def test_malformed_json_after_hello_is_an_error_frame(text: str) -> None:
    proto = authenticated()
    proto.receive_text(text)
    (frame,) = frames(proto)
    assert error_of(frame) == (None, ErrorCode.INVALID_REQUEST)
    assert proto.close is None
    assert send(proto, {"op": "ping"}) == [{"op": "pong"}]


@pytest.mark.parametrize("frame", [[1], "str", 3, None, True])
def test_a_frame_that_is_not_an_object_is_an_error_frame(frame: object) -> None:
    proto = authenticated()
    (out,) = send(proto, frame)
    assert error_of(out) == (None, ErrorCode.INVALID_REQUEST)
    assert proto.close is None


@pytest.mark.parametrize("op", [None, 5, ["call_tool"], {"x": 1}])
def test_missing_or_non_string_op_is_invalid_request(op: object) -> None:
    proto = authenticated()
    frame: dict[str, Any] = {"request_id": "r1"}
    if op is not None:
        frame["op"] = op
    (out,) = send(proto, frame)
    assert error_of(out)[1] == ErrorCode.INVALID_REQUEST


def test_unknown_op_is_invalid_request_and_echoes_the_request_id() -> None:
    proto = authenticated()
    (out,) = send(proto, {"op": "rotate_token", "request_id": "r9"})
    assert error_of(out) == ("r9", ErrorCode.INVALID_REQUEST)
    assert "rotate_token" in out["error"]["message"]


def test_binary_frame_after_hello_is_an_error_frame() -> None:
    proto = authenticated()
    proto.receive_bytes(b"\x00\x01")
    (out,) = frames(proto)
    assert error_of(out) == (None, ErrorCode.INVALID_REQUEST)
    assert "binary" in out["error"]["message"]
    assert proto.close is None


def test_oversized_frames_close_1009_before_and_after_hello() -> None:
    before = make(max_frame_bytes=64)
    before.receive_text(json.dumps({"op": "hello", "token": TOKEN, "pad": "x" * 100}))
    assert before.close is not None and before.close.code == CloseCode.FRAME_TOO_LARGE

    after = authenticated(max_frame_bytes=64)
    after.receive_bytes(b"x" * 65)
    assert after.close is not None and after.close.code == 1009


def test_ping_pong() -> None:
    proto = authenticated()
    assert send(proto, {"op": "ping"}) == [{"op": "pong"}]


# --- list_tools -----------------------------------------------------------------------


def test_list_tools_returns_every_tool_with_its_schema() -> None:
    proto = authenticated()
    (out,) = send(proto, {"op": "list_tools", "request_id": 7})
    assert out == {"op": "list_tools_res", "request_id": 7, "tools": SPECS}


def test_list_tools_without_request_id_is_answered_with_null() -> None:
    proto = authenticated()
    (out,) = send(proto, {"op": "list_tools"})
    assert out["op"] == "list_tools_res" and out["request_id"] is None


def test_list_tools_with_a_bad_request_id_is_invalid_request() -> None:
    proto = authenticated()
    (out,) = send(proto, {"op": "list_tools", "request_id": {"a": 1}})
    assert error_of(out) == (None, ErrorCode.INVALID_REQUEST)


# --- call_tool ------------------------------------------------------------------------


def call(request_id: Any = "r1", **extra: Any) -> dict[str, Any]:
    frame = {
        "op": "call_tool",
        "request_id": request_id,
        "name": "chat",
        "arguments": {"prompt": "hi"},
    }
    frame.update(extra)
    return frame


def test_call_tool_becomes_an_event_and_is_in_flight() -> None:
    proto = authenticated()
    assert send(proto, call()) == []
    assert proto.events_received() == [
        CallRequested("r1", "chat", {"prompt": "hi"}, "generated-corr", False)
    ]
    assert proto.in_flight == {"r1"}


@pytest.mark.parametrize("request_id", ["r-1", 0, 12345678901234, "x" * 128])
def test_string_and_integer_request_ids_are_accepted(request_id: Any) -> None:
    proto = authenticated()
    send(proto, call(request_id))
    (event,) = proto.events_received()
    assert isinstance(event, CallRequested) and event.request_id == request_id


@pytest.mark.parametrize("request_id", [None, "", "x" * 129, 1.5, True, [1], {"a": 1}])
def test_missing_or_bad_request_id_is_invalid_request(request_id: Any) -> None:
    proto = authenticated()
    frame = call(request_id)
    if request_id is None:
        del frame["request_id"]
    (out,) = send(proto, frame)
    assert error_of(out) == (None, ErrorCode.INVALID_REQUEST)
    assert proto.events_received() == [] and proto.in_flight == frozenset()


def test_a_duplicate_in_flight_request_id_is_rejected_never_merged() -> None:
    proto = authenticated()
    send(proto, call("dup"))
    proto.events_received()
    (out,) = send(proto, call("dup", arguments={"prompt": "other"}))
    # Not addressed to "dup": a client routing frames by request_id would read that as
    # the end of the original call. The rejected id travels inside the error.
    assert out == {
        "op": "error",
        "request_id": None,
        "error": {
            "code": "INVALID_REQUEST",
            "message": "request_id 'dup' is already in flight",
            "request_id": "dup",
        },
    }
    assert proto.events_received() == []
    assert proto.in_flight == frozenset({"dup"})
    # The original call is untouched and still completes normally.
    proto.complete_call("dup", [{"type": "text", "text": "ok"}], correlation_id="c", trace_id="t")
    assert frames(proto)[0]["op"] == "call_tool_res"
    # Once finished, the id may be used again.
    assert send(proto, call("dup")) == []
    assert len(proto.events_received()) == 1


def test_same_value_different_type_request_ids_are_distinct() -> None:
    proto = authenticated()
    send(proto, call("1"))
    send(proto, call(1))
    assert len(proto.events_received()) == 2


def test_unknown_tool_is_tool_not_found() -> None:
    proto = authenticated()
    (out,) = send(proto, call(name="nope"))
    assert error_of(out) == ("r1", ErrorCode.TOOL_NOT_FOUND)
    assert proto.in_flight == frozenset()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"arguments": [1]}, "arguments"),
        ({"arguments": "prompt=hi"}, "arguments"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_wrong_field_types_are_invalid_request(extra: dict[str, Any], fragment: str) -> None:
    proto = authenticated()
    (out,) = send(proto, call(**extra))
    assert error_of(out) == ("r1", ErrorCode.INVALID_REQUEST)
    assert fragment in out["error"]["message"]
    assert proto.close is None and proto.in_flight == frozenset()


def test_absent_or_null_arguments_mean_no_arguments() -> None:
    proto = authenticated()
    frame = call()
    del frame["arguments"]
    send(proto, frame)
    send(proto, call("r2", arguments=None))
    events = proto.events_received()
    assert [e.arguments for e in events if isinstance(e, CallRequested)] == [{}, {}]


def test_stream_from_the_frame_or_the_arguments() -> None:
    proto = authenticated()
    send(proto, call("a", stream=True))
    send(proto, call("b", arguments={"prompt": "hi", "stream": True}))
    send(proto, call("c"))
    streams = {
        e.request_id: e.stream for e in proto.events_received() if isinstance(e, CallRequested)
    }
    assert streams == {"a": True, "b": True, "c": False}


# --- correlation ID -------------------------------------------------------------------


def correlation_of(proto: NativeProtocol, frame: dict[str, Any]) -> str:
    send(proto, frame)
    (event,) = proto.events_received()
    assert isinstance(event, CallRequested)
    return event.correlation_id


def test_correlation_id_precedence_call_then_hello_then_header_then_new() -> None:
    proto = authenticated(
        header_correlation_id="from-header", hello={"correlation_id": "from-hello"}
    )
    assert correlation_of(proto, call("1", correlation_id="from-call")) == "from-call"
    assert correlation_of(proto, call("2")) == "from-hello"

    no_hello_id = authenticated(header_correlation_id="from-header")
    assert correlation_of(no_hello_id, call("1")) == "from-header"

    nothing = authenticated()
    assert correlation_of(nothing, call("1")) == "generated-corr"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 42, "new\nline", ""])
def test_an_invalid_correlation_id_is_replaced(bad: object) -> None:
    proto = authenticated(header_correlation_id="bad header!")
    assert correlation_of(proto, call(correlation_id=bad)) == "generated-corr"


def test_a_new_correlation_id_per_call_when_none_is_given() -> None:
    ids = iter(["c1", "c2"])
    proto = authenticated(correlation_id_factory=lambda: next(ids))
    assert correlation_of(proto, call("1")) == "c1"
    assert correlation_of(proto, call("2")) == "c2"


# --- how calls progress and end -------------------------------------------------------


def test_progress_chunks_and_result_frames() -> None:
    proto = authenticated()
    send(proto, call(stream=True))
    proto.send_progress("r1", "chat", "calling_provider", "asking kimi")
    proto.send_chunk("r1", "Hel")
    proto.send_chunk("r1", "lo")
    proto.send_stream_complete("r1")
    proto.complete_call(
        "r1",
        [{"type": "text", "text": "Hello"}],
        correlation_id="corr",
        trace_id="ab" * 16,
        metadata={"model": "kimi"},
    )
    assert frames(proto) == [
        {
            "op": "progress",
            "request_id": "r1",
            "name": "chat",
            "stage": "calling_provider",
            "message": "asking kimi",
        },
        {"op": "stream_chunk", "request_id": "r1", "chunk": "Hel"},
        {"op": "stream_chunk", "request_id": "r1", "chunk": "lo"},
        {"op": "stream_complete", "request_id": "r1"},
        {
            "op": "call_tool_res",
            "request_id": "r1",
            "outputs": [{"type": "text", "text": "Hello"}],
            "correlation_id": "corr",
            "trace_id": "ab" * 16,
            "metadata": {"model": "kimi"},
        },
    ]
    assert proto.in_flight == frozenset()


def test_chunks_are_not_sent_for_a_call_that_did_not_ask_to_stream() -> None:
    proto = authenticated()
    send(proto, call())
    proto.send_chunk("r1", "x")
    proto.send_stream_complete("r1")
    assert frames(proto) == []


def test_nothing_is_sent_for_calls_that_are_not_in_flight() -> None:
    proto = authenticated()
    proto.send_progress("ghost", "chat", "s", "m")
    proto.complete_call("ghost", [], correlation_id="c", trace_id="t")
    proto.fail_call("ghost", ErrorCode.TIMEOUT, "late")
    proto.cancel_call("ghost")
    assert frames(proto) == []


def test_a_call_ends_exactly_once() -> None:
    proto = authenticated()
    send(proto, call())
    proto.fail_call("r1", ErrorCode.TIMEOUT, "chat exceeded 1s", correlation_id="c", trace_id="t")
    proto.complete_call("r1", [], correlation_id="c", trace_id="t")
    proto.cancel_call("r1")
    assert frames(proto) == [
        {
            "op": "error",
            "request_id": "r1",
            "error": {"code": "TIMEOUT", "message": "chat exceeded 1s"},
            "correlation_id": "c",
            "trace_id": "t",
        }
    ]


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_maps_to_an_error_frame(code: ErrorCode) -> None:
    proto = authenticated()
    send(proto, call())
    proto.fail_call("r1", code, "why")
    (out,) = frames(proto)
    assert error_of(out) == ("r1", code.value)


# --- cancel ---------------------------------------------------------------------------


def test_cancel_of_an_in_flight_call_is_an_event_then_a_cancelled_frame() -> None:
    proto = authenticated()
    send(proto, call())
    proto.events_received()
    assert send(proto, {"op": "cancel", "request_id": "r1"}) == []
    assert proto.events_received() == [CancelRequested("r1")]
    proto.cancel_call("r1")
    assert frames(proto) == [{"op": "cancelled", "request_id": "r1"}]
    assert proto.in_flight == frozenset()


def test_cancel_of_an_unknown_call_is_invalid_request() -> None:
    proto = authenticated()
    (out,) = send(proto, {"op": "cancel", "request_id": "nope"})
    # Not addressed to "nope" either: the call may just have ended, and its id been
    # reused by a new call this error must not appear to end.
    assert out == {
        "op": "error",
        "request_id": None,
        "error": {
            "code": "INVALID_REQUEST",
            "message": "no call 'nope' in flight",
            "request_id": "nope",
        },
    }
    assert proto.events_received() == []


def test_a_duplicate_integer_request_id_is_reported_as_an_integer() -> None:
    proto = authenticated()
    send(proto, call(7))
    (out,) = send(proto, call(7))
    assert out["request_id"] is None
    assert out["error"]["request_id"] == 7
    assert out["error"]["message"] == "request_id 7 is already in flight"


def test_cancel_without_request_id_is_invalid_request() -> None:
    proto = authenticated()
    (out,) = send(proto, {"op": "cancel"})
    assert error_of(out) == (None, ErrorCode.INVALID_REQUEST)


def test_abandoned_calls_are_forgotten_silently() -> None:
    proto = authenticated()
    send(proto, call())
    proto.abandon_call("r1")
    assert proto.in_flight == frozenset() and frames(proto) == []
