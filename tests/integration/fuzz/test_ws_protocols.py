"""Property-based fuzzing of both gateway protocols over a real WebSocket (issue 8).

Generated frames — arbitrary JSON, deep nesting, lone surrogates, wrong types in every
field, binary frames, protocol-shaped frames with fuzzed fields — go down one
authenticated connection per protocol. The properties a client relies on:
- every reply is a documented frame (native: a known `op`; MCP: a JSON-RPC 2.0 response);
- no reply is an internal error (0 crashes);
- the connection stays open (0 closed authenticated connections): after every batch a
  ping is answered;
- when the fuzzer stops, no call is left in flight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.integration.fuzz.conftest import FUZZ_FRAMES, FuzzStack
from tests.integration.ws_gateway.stack import TOKEN

BATCH_MAX = 8
NATIVE_OPS = {
    "hello_ack",
    "list_tools_res",
    "progress",
    "stream_chunk",
    "stream_complete",
    "call_tool_res",
    "cancelled",
    "pong",
    "error",
}
NATIVE_CODES = {
    "INVALID_REQUEST",
    "UNAUTHORIZED",
    "TOOL_NOT_FOUND",
    "VALIDATION_ERROR",
    "OVER_CAPACITY",
    "TIMEOUT",
    "PROVIDER_ERROR",
    "STORAGE_ERROR",
}
JSONRPC_INTERNAL_ERROR = -32603
TOOLS = ["chat", "consensus", "listmodels", "status", "nope", ""]
MODELS = ["kimi-k2-0905-preview", "glm-4.5", "moonshot-v1-8k", "unknown-model"]

# --- strategies -----------------------------------------------------------------------

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3)
texts = st.one_of(st.text(max_size=40), surrogates, st.sampled_from(["", "..", "a/b?c", "\x00"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
request_ids = st.one_of(st.text(max_size=12), st.integers(), json_values)


def dumps(value: Any) -> str:
    # ensure_ascii keeps lone surrogates as \ud800 escapes: valid UTF-8 text on the wire
    # that decodes to an unpaired surrogate on the server.
    return json.dumps(value, ensure_ascii=True)


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=1, max_value=5000))
    if draw(st.booleans()):
        inner = "[" * depth + "]" * depth
    else:
        inner = '{"a":' * depth + "1" + "}" * depth
    where = draw(st.sampled_from(["frame", "arguments", "prompt", "request_id"]))
    if where == "frame":
        return inner
    if where == "request_id":
        return '{"op":"call_tool","name":"chat","arguments":{},"request_id":' + inner + "}"
    if where == "prompt":
        return (
            '{"op":"call_tool","request_id":"d","name":"chat","arguments":{"prompt":' + inner + "}}"
        )
    return '{"op":"call_tool","request_id":"d","name":"chat","arguments":' + inner + "}"


def chat_arguments() -> st.SearchStrategy[Any]:
    fixed = st.fixed_dictionaries(
        {"prompt": st.one_of(texts, json_values)},
        optional={
            "model": st.one_of(st.sampled_from(MODELS), json_values),
            "continuation_id": st.one_of(
                st.sampled_from(["ab", "v1.2", "p:1", "..", "fuzz-c1"]), texts
            ),
            "temperature": st.one_of(st.floats(), json_values),
            "stream": st.one_of(st.booleans(), json_values),
            "models": st.lists(st.one_of(st.sampled_from(MODELS), texts), max_size=10),
        },
    )
    return st.one_of(fixed, json_values)


# Raw text frames: any text a client can encode (a lone surrogate only gets through as
# a JSON \uXXXX escape, which `dumps` produces).
raw_texts = st.one_of(st.text(max_size=40), st.sampled_from(["", "..", "a/b?c", "\x00"]))

native_frames = st.one_of(
    json_values.map(dumps),
    raw_texts,
    deep_nesting(),
    st.binary(max_size=64),
    st.fixed_dictionaries(
        {
            "op": st.one_of(
                st.sampled_from(["call_tool", "list_tools", "cancel", "ping", "hello", "x"]),
                json_values,
            )
        },
        optional={
            "request_id": request_ids,
            "name": st.one_of(st.sampled_from(TOOLS), json_values),
            "arguments": chat_arguments(),
            "stream": json_values,
            "correlation_id": st.one_of(texts, json_values),
            "token": st.one_of(st.just(TOKEN), texts),
        },
    ).map(dumps),
)

mcp_methods = st.sampled_from(
    [
        "tools/call",
        "tools/list",
        "ping",
        "initialize",
        "notifications/initialized",
        "resources/list",
        "",
    ]
)
mcp_frames = st.one_of(
    json_values.map(dumps),
    raw_texts,
    deep_nesting(),
    st.binary(max_size=64),
    st.fixed_dictionaries(
        {
            "jsonrpc": st.one_of(st.just("2.0"), json_values),
            "method": st.one_of(mcp_methods, json_values),
        },
        optional={
            "id": st.one_of(st.integers(), st.text(max_size=12), json_values),
            "params": st.one_of(
                st.fixed_dictionaries(
                    {"name": st.one_of(st.sampled_from(TOOLS), json_values)},
                    optional={"arguments": chat_arguments(), "_meta": json_values},
                ),
                json_values,
            ),
        },
    ).map(dumps),
    st.lists(json_values, min_size=1, max_size=3).map(dumps),  # JSON-RPC batches
)

# --- one protocol's fuzz loop ---------------------------------------------------------


class Fuzzer:
    """Sends batches down one connection; after each, a marker frame whose answer proves
    the connection is alive; checks every frame received on the way."""

    def __init__(
        self,
        ws: ClientConnection,
        check: Callable[[Any], None],
        marker: Callable[[int], tuple[str, Callable[[Any], bool]]],
    ) -> None:
        self.ws = ws
        self.check = check
        self.marker = marker
        self.sent = 0
        self.received = 0
        self._markers = 0

    def batch(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            self.ws.send(frame)
        self.sent += len(frames)
        self._markers += 1
        marker, is_answer = self.marker(self._markers)
        self.ws.send(marker)
        self.drain(is_answer)

    def drain(self, is_answer: Callable[[Any], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the connection stopped answering"
            raw = self.ws.recv(timeout=remaining)  # raises ConnectionClosed if it closed
            frame = json.loads(raw)
            self.received += 1
            self.check(frame)
            if is_answer(frame):
                return


def check_native(frame: Any) -> None:
    assert isinstance(frame, dict), frame
    assert frame.get("op") in NATIVE_OPS, frame
    if frame["op"] == "error":
        assert frame["error"]["code"] in NATIVE_CODES, frame
        assert isinstance(frame["error"]["message"], str)


def check_mcp(frame: Any) -> None:
    responses = frame if isinstance(frame, list) else [frame]
    for response in responses:
        assert isinstance(response, dict) and response.get("jsonrpc") == "2.0", frame
        if "method" in response:  # a server notification (progress, log message)
            assert "id" not in response or "result" not in response, frame
            continue
        assert "id" in response, frame
        assert ("result" in response) != ("error" in response), frame
        if "error" in response:
            assert isinstance(response["error"]["code"], int), frame
            assert response["error"]["code"] != JSONRPC_INTERNAL_ERROR, frame
        elif isinstance(response["result"], dict) and response["result"].get("isError"):
            # A tool error is reported in the result; it must not be an internal error.
            text = json.dumps(response["result"])
            assert "INTERNAL_ERROR" not in text, frame


def native_marker(n: int) -> tuple[str, Callable[[Any], bool]]:
    return dumps(
        {"op": "list_tools", "request_id": f"fuzz-marker-{n}"}
    ), lambda f: f.get("op") == "list_tools_res" and f.get("request_id") == f"fuzz-marker-{n}"


def mcp_marker(n: int) -> tuple[str, Callable[[Any], bool]]:
    return dumps(
        {"jsonrpc": "2.0", "id": f"fuzz-marker-{n}", "method": "ping"}
    ), lambda f: isinstance(f, dict) and f.get("id") == f"fuzz-marker-{n}"


def run_fuzz(fuzzer: Fuzzer, frames: st.SearchStrategy[str | bytes]) -> None:
    examples = max(1, FUZZ_FRAMES * 2 // (BATCH_MAX + 1))

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(frames, min_size=1, max_size=BATCH_MAX))
    def send(batch: list[str | bytes]) -> None:
        fuzzer.batch(batch)

    while fuzzer.sent < FUZZ_FRAMES:
        send()


def wait_idle(fuzz_stack: FuzzStack, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not fuzz_stack.idle():
        assert time.monotonic() < deadline, "calls still in flight after the fuzzer stopped"
        time.sleep(0.1)


# --- the tests ------------------------------------------------------------------------


# The services run in this process, and their retry jitter uses the `random` module on
# the server's own thread while Hypothesis generates; that is not the strategies' doing.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


def test_native_protocol_survives_generated_frames(fuzz_stack: FuzzStack) -> None:
    with connect(fuzz_stack.gateway_url, max_size=None, open_timeout=10) as ws:
        ws.send(dumps({"op": "hello", "token": TOKEN, "session_id": "fuzz-native"}))
        assert json.loads(ws.recv(timeout=10))["ok"] is True
        fuzzer = Fuzzer(ws, check_native, native_marker)
        run_fuzz(fuzzer, native_frames)
        assert fuzzer.sent >= FUZZ_FRAMES
        assert fuzzer.received >= fuzzer.sent // BATCH_MAX  # at least every marker answered
    wait_idle(fuzz_stack)


def test_mcp_protocol_survives_generated_frames(fuzz_stack: FuzzStack) -> None:
    with connect(
        fuzz_stack.gateway_url,
        subprotocols=["mcp"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
        max_size=None,
        open_timeout=10,
    ) as ws:
        ws.send(
            dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "fuzz", "version": "1"},
                    },
                }
            )
        )
        assert "result" in json.loads(ws.recv(timeout=10))
        ws.send(dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        fuzzer = Fuzzer(ws, check_mcp, mcp_marker)
        run_fuzz(fuzzer, mcp_frames)
        assert fuzzer.sent >= FUZZ_FRAMES
    wait_idle(fuzz_stack)
