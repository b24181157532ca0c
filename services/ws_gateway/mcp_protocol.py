"""MCP over WebSocket (DESIGN §3b): JSON-RPC 2.0, sans-I/O.

Same shape as :mod:`ws_gateway.protocol`: text in, events and text out. Authentication
happens before the upgrade (HTTP 401), so a connection reaching this class is already
authorised. Supported: ``initialize``, ``notifications/initialized``, ``ping``,
``tools/list``, ``tools/call`` (with ``_meta.progressToken`` progress notifications)
and ``notifications/cancelled``.

Tool failures are results with ``isError: true`` (the model can read them and react);
protocol mistakes are JSON-RPC errors: text that is not JSON this gateway accepts
(:func:`~ws_gateway.sansio.parse_json`: too deeply nested, NaN, …) is a parse error, an
``id`` holding a lone surrogate an invalid request, ``arguments`` holding one invalid
params (no UTF-8 encoder takes it, so it cannot travel on).

Messages are paced by a :class:`~ws_gateway.limits.TokenBucket`: a request over the rate
gets error :attr:`JsonRpcCode.RATE_LIMITED` (``data.code`` ``OVER_CAPACITY``,
``data.retry_after_s``); a notification over the rate is dropped, except a
``notifications/cancelled`` of a call in flight, which is never refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from exai_telemetry.correlation import new_correlation_id, normalize_correlation_id
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

SUBPROTOCOL = "mcp"
# What the official Python SDK (mcp 1.30) accepts; it sends the newest one.
SUPPORTED_PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[-1]
SERVER_NAME = "exai-ws-gateway"


class JsonRpcCode(IntEnum):
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Implementation-defined server error (JSON-RPC reserves -32000..-32099 for them).
    RATE_LIMITED = -32000


@dataclass(frozen=True)
class ToolCallRequested:
    request_id: RequestId
    tool: str
    arguments: JSONObject
    correlation_id: str


@dataclass(frozen=True)
class CancelRequested:
    request_id: RequestId


McpEvent = ToolCallRequested | CancelRequested


class RpcError(Exception):
    def __init__(self, code: JsonRpcCode, message: str, request_id: RequestId | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def _valid_id(value: object) -> bool:
    if isinstance(value, str):
        return not lone_surrogate(value)
    return isinstance(value, int) and not isinstance(value, bool)


class McpProtocol(SansIOBuffers[McpEvent]):
    """One MCP connection: initialisation state, in-flight calls, messages out."""

    def __init__(
        self,
        tool_specs: Sequence[Mapping[str, Any]],
        *,
        server_version: str,
        header_correlation_id: str | None = None,
        correlation_id_factory: Callable[[], str] = new_correlation_id,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        super().__init__()
        self._bucket = rate_limit
        self._tool_specs = [dict(spec) for spec in tool_specs]
        self._tool_names = frozenset(str(spec["name"]) for spec in tool_specs)
        self._server_version = server_version
        self._header_correlation_id = normalize_correlation_id(header_correlation_id)
        self._new_correlation_id = correlation_id_factory
        self.initialized = False
        self.protocol_version: str | None = None
        self._in_flight: dict[RequestId, str | int | None] = {}  # id → progress token

    # --- inputs -------------------------------------------------------------------

    def receive_text(self, text: str) -> None:
        message: object
        try:
            message = parse_json(text)
        except MalformedJSON as exc:
            if not self._over_rate(None):
                self._error(None, JsonRpcCode.PARSE_ERROR, f"parse error: {exc}")
            return
        if self._over_rate(message):
            return
        try:
            self._receive(message)
        except RpcError as exc:
            self._error(exc.request_id, exc.code, exc.message)

    def receive_bytes(self, data: bytes) -> None:
        if not self._over_rate(None):
            message = "parse error: binary frames are not JSON-RPC"
            self._error(None, JsonRpcCode.PARSE_ERROR, message)

    # --- state (events_received() and data_to_send() come from SansIOBuffers) ----

    @property
    def in_flight(self) -> frozenset[RequestId]:
        return frozenset(self._in_flight)

    # --- how calls progress and end -----------------------------------------------

    def send_progress(self, request_id: RequestId, progress: float, message: str) -> None:
        token = self._in_flight.get(request_id)
        if token is not None:
            params = {"progressToken": token, "progress": progress, "message": message}
            self._send({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    def complete_call(
        self,
        request_id: RequestId,
        outputs: Sequence[JSONObject],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if request_id in self._in_flight:
            del self._in_flight[request_id]
            self._result(request_id, self._call_result(outputs, False, meta))

    def fail_call(
        self,
        request_id: RequestId,
        code: ErrorCode,
        message: str,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if request_id in self._in_flight:
            del self._in_flight[request_id]
            text = {"type": "text", "text": f"{code}: {message}"}
            result = self._call_result([text], True, {**(meta or {}), "error_code": str(code)})
            self._result(request_id, result)

    def cancel_call(self, request_id: RequestId) -> None:
        # The spec: a cancelled request gets no response.
        self._in_flight.pop(request_id, None)

    abandon_call = cancel_call

    # --- internals ----------------------------------------------------------------

    @staticmethod
    def _call_result(
        outputs: Sequence[JSONObject], is_error: bool, meta: Mapping[str, Any] | None
    ) -> JSONObject:
        result: JSONObject = {"content": list(outputs), "isError": is_error}
        if meta:
            result["_meta"] = dict(meta)
        return result

    def _send(self, message: JSONObject) -> None:
        self._outgoing.append(json.dumps(message, separators=(",", ":")))

    def _result(self, request_id: RequestId, result: JSONObject) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _error(
        self,
        request_id: RequestId | None,
        code: JsonRpcCode,
        message: str,
        data: JSONObject | None = None,
    ) -> None:
        error: JSONObject = {"code": int(code), "message": message}
        if data is not None:
            error["data"] = data
        self._send({"jsonrpc": "2.0", "id": request_id, "error": error})

    def _over_rate(self, message: object) -> bool:
        """Whether the message is over this connection's rate (then it is answered here)."""
        if self._bucket is None:
            return False
        message = message if isinstance(message, dict) else {}
        request_id = message.get("id")
        params = message.get("params")
        if request_id is None and message.get("method") == "notifications/cancelled":
            cancelled = params.get("requestId") if isinstance(params, dict) else None
            if _valid_id(cancelled) and cancelled in self._in_flight:
                self._bucket.take()  # counts, but a cancel only ever frees work
                return False
        if self._bucket.take():
            return False
        if request_id is None and "method" in message:
            return True  # a notification: nothing to answer
        bucket = self._bucket
        text = (
            f"rate limited: over {bucket.rate:g} messages/s (burst {bucket.burst}) on this "
            "connection"
        )
        retry_after_s = round(bucket.retry_after_s(), 3)
        data: JSONObject = {"code": str(ErrorCode.OVER_CAPACITY), "retry_after_s": retry_after_s}
        self._error(
            request_id if _valid_id(request_id) else None, JsonRpcCode.RATE_LIMITED, text, data
        )
        return True

    def _receive(self, message: object) -> None:
        if isinstance(message, list):
            # JSON-RPC batches were removed from MCP in 2025-06-18.
            raise RpcError(JsonRpcCode.INVALID_REQUEST, "batches are not supported", None)
        if not isinstance(message, dict):
            raise RpcError(JsonRpcCode.INVALID_REQUEST, "a message must be a JSON object", None)
        request_id = message.get("id")
        if request_id is not None and not _valid_id(request_id):
            raise RpcError(JsonRpcCode.INVALID_REQUEST, "id must be a string or integer", None)
        if message.get("jsonrpc") != "2.0":
            raise RpcError(JsonRpcCode.INVALID_REQUEST, 'jsonrpc must be "2.0"', request_id)
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return  # a response to a request we never send; nothing to do
        if not isinstance(method, str):
            raise RpcError(JsonRpcCode.INVALID_REQUEST, "method must be a string", request_id)
        params = message.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RpcError(JsonRpcCode.INVALID_PARAMS, "params must be an object", request_id)
        if request_id is None:
            self._notification(method, params)
        else:
            self._request(request_id, method, params)

    def _notification(self, method: str, params: Mapping[str, Any]) -> None:
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            if _valid_id(request_id) and request_id in self._in_flight:
                self._events.append(CancelRequested(request_id))
        # notifications/initialized and anything unknown: nothing to answer, by spec.

    def _request(self, request_id: RequestId, method: str, params: Mapping[str, Any]) -> None:
        if method == "ping":
            self._result(request_id, {})
        elif method == "initialize":
            self._initialize(request_id, params)
        elif method in ("tools/list", "tools/call"):
            if not self.initialized:
                raise RpcError(JsonRpcCode.INVALID_REQUEST, "initialize first", request_id)
            if method == "tools/list":
                self._result(request_id, {"tools": self._tool_specs})
            else:
                self._call_tool(request_id, params)
        else:
            raise RpcError(
                JsonRpcCode.METHOD_NOT_FOUND, f"method not found: {method[:64]}", request_id
            )

    def _initialize(self, request_id: RequestId, params: Mapping[str, Any]) -> None:
        if self.initialized:
            raise RpcError(JsonRpcCode.INVALID_REQUEST, "already initialized", request_id)
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(JsonRpcCode.INVALID_PARAMS, "protocolVersion is required", request_id)
        # The spec: answer with the client's version if supported, else our latest.
        version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        self.protocol_version = version
        self.initialized = True
        self._result(
            request_id,
            {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": SERVER_NAME, "version": self._server_version},
            },
        )

    def _call_tool(self, request_id: RequestId, params: Mapping[str, Any]) -> None:
        if request_id in self._in_flight:
            raise RpcError(
                JsonRpcCode.INVALID_REQUEST, f"id {request_id!r} is already in flight", request_id
            )
        name = params.get("name")
        if not isinstance(name, str):
            raise RpcError(JsonRpcCode.INVALID_PARAMS, "name must be a string", request_id)
        if name not in self._tool_names:
            raise RpcError(JsonRpcCode.INVALID_PARAMS, f"unknown tool: {name[:64]}", request_id)
        arguments = params.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise RpcError(JsonRpcCode.INVALID_PARAMS, "arguments must be an object", request_id)
        if lone_surrogate(arguments):
            raise RpcError(
                JsonRpcCode.INVALID_PARAMS,
                "arguments hold a lone surrogate (e.g. \\ud800): not valid Unicode text",
                request_id,
            )
        meta = params.get("_meta")
        meta = meta if isinstance(meta, dict) else {}
        token = meta.get("progressToken")
        self._in_flight[request_id] = token if _valid_id(token) else None
        correlation_id = (
            client_correlation_id(meta.get("correlation_id"))
            or self._header_correlation_id
            or self._new_correlation_id()
        )
        self._events.append(ToolCallRequested(request_id, name, arguments, correlation_id))
