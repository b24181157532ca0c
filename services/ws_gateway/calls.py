"""Running one tool call, whatever protocol asked for it.

:meth:`CallRunner.start` starts a call as its own task and returns a :class:`RunningCall`
to cancel it by; :meth:`CallRunner.run` is the whole life of the call: its SERVER span,
an in-flight slot, the call timeout, the tool, and exactly one ending reported to the
connection (result, error or cancelled). The slot is released before the ending is
sent, so a client that reacts to a result by starting its next call never sees a stale
count.

Exactly one ending, however early the call is cancelled. A task cancelled before its
first step never runs its coroutine at all (asyncio throws into a coroutine that has not
started), which would skip the span, the metrics and the ending, and leave the request
id "in flight" in the protocol for good. So :meth:`RunningCall.cancel` never cancels a
task that has not started: it marks the call, and the call ends as ``cancelled`` through
the normal path as soon as it runs. Should the task be cancelled behind the runner's
back before it starts, its done-callback ends the call instead (span, metrics and
:meth:`CallSink.abandoned`), so that case cannot lose a call either.

Outcomes (``exai.outcome`` on the span and on ``exai.gateway.calls`` /
``exai.gateway.call.duration``): ``ok``; ``client_error`` for the caller's mistakes
(:data:`~ws_gateway.errors.CLIENT_ERROR_CODES`: invalid arguments, unknown tool or model,
and a session that already has all its calls in flight — :class:`SessionThrottled`, the
client's own pace), which are no fault of the service; ``error`` for server-side
failures; ``timeout``; ``rejected`` (the gateway's capacity is spent, or it is shutting
down); ``cancelled``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from ws_gateway.errors import CallError, CallTimeout, ErrorCode, OverCapacity, is_client_error
from ws_gateway.limits import InflightLimiter
from ws_gateway.telemetry import CallScope, GatewayTelemetry
from ws_gateway.tools import CallContext, Toolbox, ToolResult
from ws_gateway.types import JSONObject, ProtocolName, RequestId

logger = logging.getLogger(__name__)


class SessionThrottled(OverCapacity):
    """The session already has its `EXAI_MAX_INFLIGHT_PER_SESSION` calls running: the
    client sends faster than it is allowed to, the service is not out of capacity. The
    client still sees OVER_CAPACITY; the outcome is ``client_error``, not ``rejected``."""


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
    mcp_protocol_version: str | None = None  # MCP calls: as negotiated by initialize
    client_id: str = "default"  # from the client's token (see settings), never the token


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

    def abandoned(self, call: CallRequest) -> None:
        """The call's task was cancelled before it ever ran: end the call now, without
        awaiting (this runs in a done-callback); a frame it queues goes out with the
        connection's next flush."""
        ...


class RunningCall:
    """A call started by :meth:`CallRunner.start`; cancel it at any point of its life."""

    def __init__(self, call: CallRequest) -> None:
        self.call = call
        self.task: asyncio.Task[None]
        # Set by the call's first step; from then on, its own code reports its ending.
        self.started = False
        self.cancel_requested = False

    def cancel(self) -> None:
        """Cancel the call (once; more requests change nothing). Before its task ran, the
        call is only marked: it then ends as ``cancelled`` through the normal path, with
        span, metrics and ending frame. A call that already ended is left alone."""
        if self.cancel_requested:
            return
        self.cancel_requested = True
        if self.started:
            self.task.cancel()


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

    def start(self, call: CallRequest, sink: CallSink, *, streaming: bool) -> RunningCall:
        """Run the call as its own task; it ends exactly once, however it ends."""
        running = RunningCall(call)
        running.task = asyncio.create_task(
            self.run(call, sink, streaming=streaming, running=running),
            name=f"call {call.tool} {call.request_id!r}",
        )
        running.task.add_done_callback(partial(self._end_if_never_ran, running, sink))
        return running

    def _end_if_never_ran(
        self, running: RunningCall, sink: CallSink, task: asyncio.Task[None]
    ) -> None:
        if running.started:
            return  # run() reported the ending itself
        # Cancelled before its first step: run() never executed a line.
        with self._call_scope(running.call) as scope:
            scope.outcome = "cancelled"
        sink.abandoned(running.call)

    async def run(
        self,
        call: CallRequest,
        sink: CallSink,
        *,
        streaming: bool,
        running: RunningCall | None = None,
    ) -> None:
        if running is not None:
            running.started = True
        with self._call_scope(call) as scope:
            try:
                if running is not None and running.cancel_requested:
                    # Cancelled before it ran: no slot taken, nothing to abort.
                    raise asyncio.CancelledError
                result = await self._run_tool(call, sink, scope, streaming=streaming)
            except asyncio.CancelledError:
                scope.outcome = "cancelled"
                await sink.cancelled(call)
                raise
            except OverCapacity as exc:
                throttled = isinstance(exc, SessionThrottled)
                scope.failed("client_error" if throttled else "rejected", exc.code)
                await sink.failed(call, exc.code, exc.message, scope)
            except CallTimeout as exc:
                scope.failed("timeout", exc.code)
                await sink.failed(call, exc.code, exc.message, scope)
            except CallError as exc:
                scope.failed("client_error" if is_client_error(exc.code) else "error", exc.code)
                await sink.failed(call, exc.code, exc.message, scope)
            except Exception:
                logger.exception("tool %s failed unexpectedly", call.tool)
                scope.failed("error", ErrorCode.INTERNAL_ERROR)
                await sink.failed(call, ErrorCode.INTERNAL_ERROR, "internal error", scope)
            else:
                scope.succeeded()
                await sink.succeeded(call, result, scope)

    def _call_scope(self, call: CallRequest) -> AbstractContextManager[CallScope]:
        return self._telemetry.call(
            tool=call.tool,
            protocol=call.protocol,
            session_id=call.session_id,
            request_id=call.request_id,
            correlation_id=call.correlation_id,
            route=call.route,
            mcp_protocol_version=call.mcp_protocol_version,
            client_id=call.client_id,
        )

    async def _run_tool(
        self, call: CallRequest, sink: CallSink, scope: CallScope, *, streaming: bool
    ) -> ToolResult:
        if not self._accepting():
            raise OverCapacity("gateway is shutting down; retry on another instance")

        async def progress(stage: str, message: str) -> None:
            await sink.progress(call, stage, message)

        async def chunk(text: str) -> None:
            await sink.chunk(call, text)
            scope.chunk_sent()

        ctx = CallContext(
            call.session_id,
            call.request_id,
            progress,
            chunk if streaming else None,
            client_id=call.client_id,
        )
        limiter = self._limiter
        # The limiter checks the global cap first; with room there, a full session is
        # the client's pace (no await between this check and taking the slot).
        if (
            limiter.global_inflight < limiter.global_max
            and limiter.session_inflight(call.session_id) >= limiter.per_session
        ):
            raise SessionThrottled(
                f"session is at its limit of {limiter.per_session} calls in flight; retry soon"
            )
        with (
            limiter.slot(call.session_id),
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
