"""The EXAI native protocol (DESIGN §3a), sans-I/O.

:class:`NativeProtocol` is fed what arrived on the socket (:meth:`~NativeProtocol.receive_text`,
:meth:`~NativeProtocol.receive_bytes`, :meth:`~NativeProtocol.hello_timed_out`) and told
how calls end (:meth:`~NativeProtocol.complete_call` and friends). It answers with
events for the application (:meth:`~NativeProtocol.events_received`), JSON text frames
to send (:meth:`~NativeProtocol.data_to_send`) and, when the connection must end, a
close code (:attr:`~NativeProtocol.close`). It never touches a socket or an event loop,
so every frame type and error path is testable with plain function calls.

State machine::

    AWAITING_HELLO ──hello, good token──▶ OPEN ──(any close)──▶ CLOSED
          │ invalid JSON         → close 4000
          │ first frame no hello → close 4001
          │ hello timeout        → close 4002
          └ bad token            → close 4003

Once OPEN, a bad frame never closes the connection: it gets an error frame. Text is
parsed by :func:`~ws_gateway.sansio.parse_json` (no nesting past 32 levels, no NaN), and
strings that hold lone surrogates (``"\\ud800"``: no UTF-8 encoder takes them) are refused
where they would travel on: a call's arguments (VALIDATION_ERROR) and request ids
(INVALID_REQUEST). The token in ``hello`` is looked up in
:class:`~ws_gateway.auth.ClientTokens`, which names the client.

Once OPEN, frames are paced by a :class:`~ws_gateway.limits.TokenBucket`: a frame over the
rate gets OVER_CAPACITY ("rate limited"), addressed to its call when it asked for one,
and the connection goes on. A cancel of a call in flight is never refused (it only frees
work).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from exai_telemetry.correlation import new_correlation_id, normalize_correlation_id
from ws_gateway.auth import DEFAULT_CLIENT_ID, ClientTokens
from ws_gateway.errors import ErrorCode
from ws_gateway.limits import TokenBucket
from ws_gateway.sansio import (
    MalformedJSON,
    SansIOBuffers,
    client_correlation_id,
    lone_surrogate,
    parse_json,
)
from ws_gateway.types import JSONObject, RequestId

SUBPROTOCOL = "exai.v1"
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
MAX_REQUEST_ID_LENGTH = 128


class CloseCode(IntEnum):
    GOING_AWAY = 1001
    OVER_CONNECTION_LIMIT = 1008
    FRAME_TOO_LARGE = 1009
    INVALID_JSON_BEFORE_HELLO = 4000
    UNKNOWN_PROTOCOL = 4001
    HELLO_TIMEOUT = 4002
    UNAUTHORIZED = 4003


@dataclass(frozen=True)
class Close:
    code: CloseCode
    reason: str


class State(Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


# --- events for the application ---------------------------------------------------


@dataclass(frozen=True)
class HelloAccepted:
    session_id: str
    client_id: str = DEFAULT_CLIENT_ID


@dataclass(frozen=True)
class CallRequested:
    request_id: RequestId
    tool: str
    arguments: JSONObject
    correlation_id: str
    stream: bool


@dataclass(frozen=True)
class CancelRequested:
    request_id: RequestId


Event = HelloAccepted | CallRequested | CancelRequested


class FrameError(Exception):
    """A frame the protocol rejects; becomes an error frame, never a close.

    ``request_id`` addresses the error frame, which then *ends* that request. An error
    about an id that must not look ended (a duplicate of a call in flight, a cancel of
    a call not in flight, whose id may already belong to a newer call) goes out with
    ``"request_id": null`` and the id in ``error.request_id`` (``about``).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        request_id: RequestId | None = None,
        *,
        about: RequestId | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.about = about


def error_frame(
    request_id: RequestId | None,
    code: ErrorCode,
    message: str,
    *,
    about: RequestId | None = None,
) -> JSONObject:
    error: JSONObject = {"code": code, "message": message}
    if about is not None:
        error["request_id"] = about
    return {"op": "error", "request_id": request_id, "error": error}


def new_session_id() -> str:
    return uuid.uuid4().hex


def rate_limited_message(bucket: TokenBucket) -> str:
    return (
        f"rate limited: over {bucket.rate:g} frames/s (burst {bucket.burst}) on this "
        f"connection; retry in {bucket.retry_after_s():.2f}s"
    )


def parse_request_id(frame: Mapping[str, Any], *, required: bool) -> RequestId | None:
    """The frame's `request_id`, or FrameError; strings and integers only."""
    if "request_id" not in frame or frame["request_id"] is None:
        if required:
            raise FrameError(ErrorCode.INVALID_REQUEST, "request_id is required")
        return None
    value = frame["request_id"]
    # bool is an int subclass, but `true` is never a sensible request id.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FrameError(ErrorCode.INVALID_REQUEST, "request_id must be a string or an integer")
    if isinstance(value, str) and not 0 < len(value) <= MAX_REQUEST_ID_LENGTH:
        raise FrameError(
            ErrorCode.INVALID_REQUEST,
            f"request_id must be 1-{MAX_REQUEST_ID_LENGTH} characters",
        )
    if lone_surrogate(value):
        raise FrameError(
            ErrorCode.INVALID_REQUEST, "request_id holds a lone surrogate (not valid Unicode)"
        )
    return value


def _valid_request_id(frame: Mapping[str, Any]) -> RequestId | None:
    try:
        return parse_request_id(frame, required=False)
    except FrameError:
        return None


class NativeProtocol(SansIOBuffers[Event]):
    """One connection's native-protocol state: hello, in-flight calls, frames out."""

    def __init__(
        self,
        tokens: ClientTokens | str,
        tool_specs: Sequence[Mapping[str, Any]],
        *,
        max_frame_bytes: int,
        rate_limit: TokenBucket | None = None,
        header_correlation_id: str | None = None,
        session_id_factory: Callable[[], str] = new_session_id,
        correlation_id_factory: Callable[[], str] = new_correlation_id,
    ) -> None:
        super().__init__()
        self._tokens = ClientTokens.single(tokens) if isinstance(tokens, str) else tokens
        self._bucket = rate_limit
        self._tool_specs = [dict(spec) for spec in tool_specs]
        self._tool_names = frozenset(str(spec["name"]) for spec in tool_specs)
        self._max_frame_bytes = max_frame_bytes
        self._header_correlation_id = normalize_correlation_id(header_correlation_id)
        self._new_session_id = session_id_factory
        self._new_correlation_id = correlation_id_factory
        self.state = State.AWAITING_HELLO
        self.session_id: str | None = None
        self.client_id: str | None = None  # whose token the hello carried
        self.hello_correlation_id: str | None = None
        self.close: Close | None = None
        self._in_flight: dict[RequestId, bool] = {}  # request_id → streaming

    # --- inputs -------------------------------------------------------------------

    def receive_text(self, text: str) -> None:
        if self.state is State.CLOSED:
            return
        if len(text.encode()) > self._max_frame_bytes:
            self._close(CloseCode.FRAME_TOO_LARGE, "frame too large")
            return
        frame: object
        try:
            frame = parse_json(text)
        except MalformedJSON as exc:
            if self.state is State.AWAITING_HELLO:
                self._receive_hello(None)
            elif not self._over_rate(None):
                self._send(error_frame(None, ErrorCode.INVALID_REQUEST, f"invalid JSON: {exc}"))
            return
        if self.state is State.AWAITING_HELLO:
            self._receive_hello(frame)
        elif not self._over_rate(frame):
            self._receive_frame(frame)

    def receive_bytes(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        if len(data) > self._max_frame_bytes:
            self._close(CloseCode.FRAME_TOO_LARGE, "frame too large")
        elif self.state is State.AWAITING_HELLO:
            self._reject_hello("invalid_hello", CloseCode.INVALID_JSON_BEFORE_HELLO, "binary hello")
        elif not self._over_rate(None):
            message = "binary frames are not supported; send JSON text frames"
            self._send(error_frame(None, ErrorCode.INVALID_REQUEST, message))

    def hello_timed_out(self) -> None:
        if self.state is State.AWAITING_HELLO:
            self._close(CloseCode.HELLO_TIMEOUT, "hello timeout")

    # --- state (events_received() and data_to_send() come from SansIOBuffers) ----

    @property
    def authenticated(self) -> bool:
        return self.state is State.OPEN

    @property
    def in_flight(self) -> frozenset[RequestId]:
        return frozenset(self._in_flight)

    # --- how calls progress and end (called by the application) -------------------

    def send_progress(self, request_id: RequestId, tool: str, stage: str, message: str) -> None:
        if request_id in self._in_flight:
            self._send(
                {
                    "op": "progress",
                    "request_id": request_id,
                    "name": tool,
                    "stage": stage,
                    "message": message,
                }
            )

    def send_chunk(self, request_id: RequestId, chunk: str) -> None:
        if self._in_flight.get(request_id):
            self._send({"op": "stream_chunk", "request_id": request_id, "chunk": chunk})

    def send_stream_complete(self, request_id: RequestId) -> None:
        if self._in_flight.get(request_id):
            self._send({"op": "stream_complete", "request_id": request_id})

    def complete_call(
        self,
        request_id: RequestId,
        outputs: Sequence[JSONObject],
        *,
        correlation_id: str,
        trace_id: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if self._in_flight.pop(request_id, None) is None:
            return
        frame: JSONObject = {
            "op": "call_tool_res",
            "request_id": request_id,
            "outputs": list(outputs),
            "correlation_id": correlation_id,
            "trace_id": trace_id,
        }
        if metadata:
            frame["metadata"] = dict(metadata)
        self._send(frame)

    def fail_call(
        self,
        request_id: RequestId,
        code: ErrorCode,
        message: str,
        *,
        correlation_id: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        if self._in_flight.pop(request_id, None) is None:
            return
        frame = error_frame(request_id, code, message)
        # Not in the minimal error shape, but what an operator needs to find the trace.
        if correlation_id is not None:
            frame["correlation_id"] = correlation_id
        if trace_id is not None:
            frame["trace_id"] = trace_id
        self._send(frame)

    def cancel_call(self, request_id: RequestId) -> None:
        if self._in_flight.pop(request_id, None) is not None:
            self._send({"op": "cancelled", "request_id": request_id})

    def abandon_call(self, request_id: RequestId) -> None:
        """Forget a call without telling the client (the connection is gone)."""
        self._in_flight.pop(request_id, None)

    # --- internals ----------------------------------------------------------------

    def _send(self, frame: JSONObject) -> None:
        if self.state is not State.CLOSED:
            self._outgoing.append(json.dumps(frame, separators=(",", ":")))

    def _close(self, code: CloseCode, reason: str) -> None:
        self.state = State.CLOSED
        self.close = Close(code, reason)

    def _reject_hello(self, error: str, code: CloseCode, reason: str) -> None:
        self._send({"op": "hello_ack", "ok": False, "error": error})
        self._close(code, reason)

    def _receive_hello(self, frame: object) -> None:
        if not isinstance(frame, dict):
            self._reject_hello(
                "invalid_hello", CloseCode.INVALID_JSON_BEFORE_HELLO, "invalid JSON before hello"
            )
            return
        if frame.get("op") != "hello":
            self._reject_hello("missing_hello", CloseCode.UNKNOWN_PROTOCOL, "hello required first")
            return
        client_id = self._tokens.client_for(frame.get("token"))
        if client_id is None:
            self._reject_hello("unauthorized", CloseCode.UNAUTHORIZED, "unauthorized")
            return
        self.client_id = client_id
        session_id = frame.get("session_id")
        if not (isinstance(session_id, str) and SESSION_ID_PATTERN.match(session_id)):
            session_id = self._new_session_id()
        self.session_id = session_id
        self.hello_correlation_id = client_correlation_id(frame.get("correlation_id"))
        self.state = State.OPEN
        self._send({"op": "hello_ack", "ok": True, "session_id": session_id})
        self._events.append(HelloAccepted(session_id, client_id))

    def _over_rate(self, frame: object) -> bool:
        """Whether the frame is over this connection's rate (then it is answered here)."""
        if self._bucket is None:
            return False
        frame = frame if isinstance(frame, dict) else {}
        op = frame.get("op")
        request_id = _valid_request_id(frame)
        if op == "cancel" and request_id is not None and request_id in self._in_flight:
            self._bucket.take()  # counts, but a cancel only ever frees work
            return False
        if self._bucket.take():
            return False
        message = rate_limited_message(self._bucket)
        addressed = request_id is not None and (
            op == "list_tools" or (op == "call_tool" and request_id not in self._in_flight)
        )
        if addressed:
            self._send(error_frame(request_id, ErrorCode.OVER_CAPACITY, message))
        else:
            self._send(error_frame(None, ErrorCode.OVER_CAPACITY, message, about=request_id))
        return True

    def _receive_frame(self, frame: object) -> None:
        if not isinstance(frame, dict):
            self._send(
                error_frame(None, ErrorCode.INVALID_REQUEST, "a frame must be a JSON object")
            )
            return
        try:
            self._dispatch(frame)
        except FrameError as exc:
            self._send(error_frame(exc.request_id, exc.code, exc.message, about=exc.about))

    def _dispatch(self, frame: Mapping[str, Any]) -> None:
        op = frame.get("op")
        if not isinstance(op, str):
            raise FrameError(ErrorCode.INVALID_REQUEST, "op is required and must be a string")
        if op == "ping":
            self._send({"op": "pong"})
        elif op == "list_tools":
            request_id = parse_request_id(frame, required=False)
            self._send(
                {"op": "list_tools_res", "request_id": request_id, "tools": self._tool_specs}
            )
        elif op == "call_tool":
            self._call_tool(frame)
        elif op == "cancel":
            self._cancel(frame)
        elif op == "hello":
            request_id = parse_request_id(frame, required=False)
            raise FrameError(ErrorCode.INVALID_REQUEST, "already authenticated", request_id)
        else:
            request_id = parse_request_id(frame, required=False)
            raise FrameError(ErrorCode.INVALID_REQUEST, f"unknown op {op[:64]!r}", request_id)

    def _call_tool(self, frame: Mapping[str, Any]) -> None:
        request_id = parse_request_id(frame, required=True)
        assert request_id is not None  # required=True
        if request_id in self._in_flight:
            # Not addressed to the id: a client routing by request_id would take the
            # error for the end of the call that is still running.
            raise FrameError(
                ErrorCode.INVALID_REQUEST,
                f"request_id {request_id!r} is already in flight",
                about=request_id,
            )
        name = frame.get("name")
        if not isinstance(name, str) or not name:
            raise FrameError(ErrorCode.INVALID_REQUEST, "name must be a tool name", request_id)
        if name not in self._tool_names:
            raise FrameError(ErrorCode.TOOL_NOT_FOUND, f"unknown tool {name[:64]!r}", request_id)
        arguments = frame.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise FrameError(ErrorCode.INVALID_REQUEST, "arguments must be an object", request_id)
        if lone_surrogate(arguments):
            raise FrameError(
                ErrorCode.VALIDATION_ERROR,
                "arguments hold a lone surrogate (e.g. \\ud800): not valid Unicode text",
                request_id,
            )
        stream = frame.get("stream", False)
        if not isinstance(stream, bool):
            raise FrameError(ErrorCode.INVALID_REQUEST, "stream must be a boolean", request_id)
        # Clients also pass it as a tool argument (the chat schema lists it).
        stream = stream or arguments.get("stream") is True
        self._in_flight[request_id] = stream
        self._events.append(
            CallRequested(request_id, name, arguments, self._correlation_id(frame), stream)
        )

    def _cancel(self, frame: Mapping[str, Any]) -> None:
        request_id = parse_request_id(frame, required=True)
        assert request_id is not None
        if request_id not in self._in_flight:
            # The call may have ended as the cancel crossed its result, and the id been
            # reused already: an error addressed to it would end the newer call.
            raise FrameError(
                ErrorCode.INVALID_REQUEST, f"no call {request_id!r} in flight", about=request_id
            )
        self._events.append(CancelRequested(request_id))

    def _correlation_id(self, frame: Mapping[str, Any]) -> str:
        """The call's ID, else the hello's, else the upgrade header's, else a new one."""
        return (
            client_correlation_id(frame.get("correlation_id"))
            or self.hello_correlation_id
            or self._header_correlation_id
            or self._new_correlation_id()
        )
