"""Running one tool call, whatever protocol asked for it.

:meth:`CallRunner.run` is the whole life of a call: its SERVER span, an in-flight slot,
the call timeout, the tool, and exactly one ending reported to the connection
(result, error or cancelled). The slot is released before the ending is sent, so a
client that reacts to a result by starting its next call never sees a stale count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ws_gateway.errors import CallError, CallTimeout, ErrorCode, OverCapacity
from ws_gateway.limits import InflightLimiter
from ws_gateway.telemetry import CallScope, GatewayTelemetry
from ws_gateway.tools import CallContext, Toolbox, ToolResult
from ws_gateway.types import JSONObject, ProtocolName, RequestId

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRequest:
    protocol: ProtocolName
    session_id: str
    request_id: RequestId
    tool: str
    arguments: JSONObject
    correlation_id: str
    stream: bool
    route: str


class CallSink(Protocol):
    """How a running call talks back to its connection. Implementations never raise
    when the connection is gone: a call must finish its bookkeeping regardless."""

    async def progress(self, call: CallRequest, stage: str, message: str) -> None: ...

    async def chunk(self, call: CallRequest, text: str) -> None: ...

    async def succeeded(self, call: CallRequest, result: ToolResult, scope: CallScope) -> None: ...

    async def failed(
        self, call: CallRequest, code: ErrorCode, message: str, scope: CallScope
    ) -> None: ...

    async def cancelled(self, call: CallRequest) -> None: ...


class CallRunner:
    def __init__(
        self,
        toolbox: Toolbox,
        limiter: InflightLimiter,
        telemetry: GatewayTelemetry,
        *,
        call_timeout_s: float,
        accepting: Callable[[], bool],
    ) -> None:
        self._toolbox = toolbox
        self._limiter = limiter
        self._telemetry = telemetry
        self._timeout_s = call_timeout_s
        self._accepting = accepting

    async def run(self, call: CallRequest, sink: CallSink, *, streaming: bool) -> None:
        with self._telemetry.call(
            tool=call.tool,
            protocol=call.protocol,
            session_id=call.session_id,
            request_id=call.request_id,
            correlation_id=call.correlation_id,
            route=call.route,
        ) as scope:
            try:
                result = await self._run_tool(call, sink, scope, streaming=streaming)
            except asyncio.CancelledError:
                scope.outcome = "cancelled"
                await sink.cancelled(call)
                raise
            except OverCapacity as exc:
                scope.failed("rejected", exc.code)
                await sink.failed(call, exc.code, exc.message, scope)
            except CallTimeout as exc:
                scope.failed("timeout", exc.code)
                await sink.failed(call, exc.code, exc.message, scope)
            except CallError as exc:
                scope.failed("error", exc.code)
                await sink.failed(call, exc.code, exc.message, scope)
            except Exception:
                logger.exception("tool %s failed unexpectedly", call.tool)
                scope.failed("error", ErrorCode.INTERNAL_ERROR)
                await sink.failed(call, ErrorCode.INTERNAL_ERROR, "internal error", scope)
            else:
                scope.succeeded()
                await sink.succeeded(call, result, scope)

    async def _run_tool(
        self, call: CallRequest, sink: CallSink, scope: CallScope, *, streaming: bool
    ) -> ToolResult:
        if not self._accepting():
            raise OverCapacity("gateway is shutting down; retry on another instance")

        async def progress(stage: str, message: str) -> None:
            await sink.progress(call, stage, message)

        async def chunk(text: str) -> None:
            await sink.chunk(call, text)

        ctx = CallContext(call.session_id, call.request_id, progress, chunk if streaming else None)
        with (
            self._limiter.slot(call.session_id),
            self._telemetry.inflight(call.tool, call.protocol),
        ):
            await sink.progress(call, "started", f"{call.tool} started")
            deadline = asyncio.timeout(self._timeout_s)
            try:
                async with deadline:
                    result = await self._toolbox.call(call.tool, call.arguments, ctx)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                raise CallTimeout(f"{call.tool} exceeded {self._timeout_s:g}s") from exc
            finally:
                scope.attributes.update(ctx.span_attributes)
        return result
