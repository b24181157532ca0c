"""One check: a tool call over the gateway's native protocol, as a user's client makes it.

A fresh connection per check (the upgrade and the hello are part of what a user needs to
work): ``hello`` with the client token, ``call_tool`` with the check's correlation ID,
then frames until that call's ``call_tool_res`` or ``error``. Every way it can go wrong
becomes a :class:`~exai_canary.errors.CheckFailed` with a bounded reason, within one
deadline for the whole exchange.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from exai_canary.errors import (
    CheckFailed,
    CheckTimeout,
    ConnectionLost,
    ErrorFrame,
    GatewayUnreachable,
    ProtocolViolation,
    Unauthorized,
)
from exai_telemetry.correlation import CORRELATION_HEADER

# A `status` answer is a few kilobytes, a short chat's less; the default (1 MiB) is plenty
# and keeps a misbehaving peer from making the canary buffer more.
MAX_FRAME_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ToolCall:
    url: str
    token: str
    tool: str
    arguments: Mapping[str, Any]
    correlation_id: str


async def call_tool(call: ToolCall, timeout_s: float) -> dict[str, Any]:
    """The call's `call_tool_res` frame; CheckFailed otherwise."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(call)
    except TimeoutError:
        raise CheckTimeout(f"no answer from {call.url} within {timeout_s:g}s") from None
    except ConnectionClosed as exc:
        raise ConnectionLost(f"connection closed by the gateway: {exc}") from None
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GatewayUnreachable(f"cannot connect to {call.url}: {detail}") from None


async def _exchange(call: ToolCall) -> dict[str, Any]:
    headers = {CORRELATION_HEADER: call.correlation_id}
    # No keepalive pings: a check lasts seconds and has its own deadline.
    async with connect(
        call.url,
        additional_headers=headers,
        open_timeout=None,
        ping_interval=None,
        max_size=MAX_FRAME_BYTES,
    ) as ws:
        await ws.send(json.dumps({"op": "hello", "token": call.token}))
        ack = _frame(await ws.recv())
        if ack.get("op") != "hello_ack":
            raise ProtocolViolation(f"expected hello_ack, got op {str(ack.get('op'))[:32]!r}")
        if ack.get("ok") is not True:
            raise Unauthorized(f"hello refused: {str(ack.get('error'))[:64]}")
        request_id = uuid.uuid4().hex
        await ws.send(
            json.dumps(
                {
                    "op": "call_tool",
                    "request_id": request_id,
                    "name": call.tool,
                    "arguments": dict(call.arguments),
                    "correlation_id": call.correlation_id,
                }
            )
        )
        async for raw in ws:
            frame = _frame(raw)
            if frame.get("request_id") != request_id:
                continue  # a pong or a frame about nothing of ours
            op = frame.get("op")
            if op == "call_tool_res":
                return frame
            if op == "error":
                error = frame.get("error")
                error = error if isinstance(error, dict) else {}
                raise ErrorFrame(error.get("code"), str(error.get("message", ""))[:200])
            # `progress` and `stream_chunk` frames: the call goes on.
        raise ConnectionLost("connection closed before the call's answer")


def _frame(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolViolation("binary frame from the gateway")
    try:
        frame = json.loads(raw)
    except ValueError:
        raise ProtocolViolation("a frame that is not JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolViolation("a frame that is not a JSON object")
    return frame


__all__ = ["CheckFailed", "ToolCall", "call_tool"]
