"""One WebSocket connection: bytes between the socket and a sans-I/O protocol.

Each call runs as its own task (:meth:`CallRunner.start`) so that a slow chat never
blocks a ``ping`` or a ``cancel``; ``cancel`` cancels that call, which closes its
upstream HTTP request. A cancel may be read before the call's task ever ran (both frames
arrived in one read: ``recv()`` returns buffered frames without yielding);
:meth:`RunningCall.cancel` makes that call end as ``cancelled`` like any other. When the
connection ends for any reason, every call still running is cancelled and awaited, so
its in-flight slot is back before the handler returns.

Frames from several tasks go out through one lock: a task's frames leave in the order
the protocol produced them (a ``stream_chunk`` never overtakes an earlier one). Frames
taken from the protocol wait in one outbox until written, so a task cancelled while it
flushes (a cancel arriving during a send) never takes other calls' frames with it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from functools import partial

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ws_gateway import mcp_protocol, protocol
from ws_gateway.auth import DEFAULT_CLIENT_ID
from ws_gateway.calls import CallRequest, CallRunner, CallSink, RunningCall
from ws_gateway.errors import ErrorCode
from ws_gateway.mcp_protocol import McpProtocol
from ws_gateway.protocol import NativeProtocol
from ws_gateway.telemetry import CallScope
from ws_gateway.tools import ToolResult
from ws_gateway.types import RequestId

logger = logging.getLogger(__name__)


class _Connection:
    def __init__(self, ws: ServerConnection, runner: CallRunner, route: str) -> None:
        self._ws = ws
        self._runner = runner
        self._route = route
        self._calls: dict[RequestId, RunningCall] = {}  # by id, for cancel
        # Every call not finished yet, for _cancel_all: a call whose ending is out may
        # still be flushing after a newer call took over its id in _calls.
        self._unfinished: set[RunningCall] = set()
        self._send_lock = asyncio.Lock()
        self._outbox: deque[str] = deque()

    def _pending_frames(self) -> list[str]:
        raise NotImplementedError

    async def _flush(self) -> None:
        async with self._send_lock:
            self._outbox.extend(self._pending_frames())
            while self._outbox:
                # send() writes the frame before it can suspend (to drain): a frame
                # popped here is written even if this task is cancelled right after.
                frame = self._outbox.popleft()
                try:
                    await self._ws.send(frame)
                except ConnectionClosed:
                    self._outbox.clear()
                    return  # the client is gone; its calls are being cancelled

    def _start(self, call: CallRequest, sink: CallSink, *, streaming: bool) -> None:
        running = self._runner.start(call, sink, streaming=streaming)
        self._calls[call.request_id] = running
        self._unfinished.add(running)
        running.task.add_done_callback(partial(self._forget, call.request_id, running))

    def _forget(
        self, request_id: RequestId, running: RunningCall, task: asyncio.Task[None]
    ) -> None:
        self._unfinished.discard(running)
        # A finished call's id may already be reused by a newer call: only drop our own.
        if self._calls.get(request_id) is running:
            del self._calls[request_id]

    def _cancel(self, request_id: RequestId) -> None:
        running = self._calls.get(request_id)
        if running is not None:
            running.cancel()

    async def _cancel_all(self) -> None:
        calls = list(self._unfinished)
        for running in calls:
            running.cancel()
        if calls:
            await asyncio.gather(*(running.task for running in calls), return_exceptions=True)


class NativeConnection(_Connection):
    """The EXAI native protocol on one socket (see :mod:`ws_gateway.protocol`)."""

    def __init__(
        self,
        ws: ServerConnection,
        runner: CallRunner,
        proto: NativeProtocol,
        *,
        route: str,
        hello_timeout_s: float,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(ws, runner, route)
        self.proto = proto
        self._hello_timeout_s = hello_timeout_s
        # The server lifts the pre-hello limits (frame size, unauthenticated place).
        self._on_authenticated = on_authenticated

    def _pending_frames(self) -> list[str]:
        return self.proto.data_to_send()

    async def run(self) -> None:
        hello_deadline = asyncio.get_running_loop().time() + self._hello_timeout_s
        try:
            while self.proto.close is None:
                try:
                    if self.proto.authenticated:
                        message = await self._ws.recv()
                    else:
                        async with asyncio.timeout_at(hello_deadline):
                            message = await self._ws.recv()
                except TimeoutError:
                    self.proto.hello_timed_out()
                else:
                    if isinstance(message, str):
                        self.proto.receive_text(message)
                    else:
                        self.proto.receive_bytes(message)
                self._handle_events()
                await self._flush()
            await self._ws.close(self.proto.close.code, self.proto.close.reason)
        except ConnectionClosed:
            pass
        finally:
            await self._cancel_all()

    def _handle_events(self) -> None:
        for event in self.proto.events_received():
            if isinstance(event, protocol.CallRequested):
                assert self.proto.session_id is not None
                call = CallRequest(
                    protocol="native",
                    session_id=self.proto.session_id,
                    request_id=event.request_id,
                    tool=event.tool,
                    arguments=event.arguments,
                    correlation_id=event.correlation_id,
                    stream=event.stream,
                    route=self._route,
                    client_id=self.proto.client_id or DEFAULT_CLIENT_ID,
                )
                self._start(call, self, streaming=event.stream)
            elif isinstance(event, protocol.CancelRequested):
                self._cancel(event.request_id)
            elif isinstance(event, protocol.HelloAccepted):
                logger.info(
                    "session %s authenticated (client %s)", event.session_id, event.client_id
                )
                if self._on_authenticated is not None:
                    self._on_authenticated()

    # --- CallSink -----------------------------------------------------------------

    async def progress(self, call: CallRequest, stage: str, message: str) -> None:
        self.proto.send_progress(call.request_id, call.tool, stage, message)
        await self._flush()

    async def chunk(self, call: CallRequest, text: str) -> None:
        self.proto.send_chunk(call.request_id, text)
        await self._flush()

    async def succeeded(self, call: CallRequest, result: ToolResult, scope: CallScope) -> None:
        if result.streamed:
            self.proto.send_stream_complete(call.request_id)
        self.proto.complete_call(
            call.request_id,
            result.outputs,
            correlation_id=scope.correlation_id,
            trace_id=scope.trace_id,
            metadata=result.metadata,
        )
        await self._flush()

    async def failed(
        self, call: CallRequest, code: ErrorCode, message: str, scope: CallScope
    ) -> None:
        self.proto.fail_call(
            call.request_id,
            code,
            message,
            correlation_id=scope.correlation_id,
            trace_id=scope.trace_id,
        )
        await self._flush()

    async def cancelled(self, call: CallRequest) -> None:
        self.proto.cancel_call(call.request_id)
        await self._flush()

    def abandoned(self, call: CallRequest) -> None:
        self.proto.cancel_call(call.request_id)  # sent with the next flush


class McpConnection(_Connection):
    """MCP JSON-RPC on one socket (see :mod:`ws_gateway.mcp_protocol`)."""

    def __init__(
        self,
        ws: ServerConnection,
        runner: CallRunner,
        proto: McpProtocol,
        *,
        route: str,
        client_id: str = DEFAULT_CLIENT_ID,
    ) -> None:
        super().__init__(ws, runner, route)
        self.proto = proto
        self.client_id = client_id  # authenticated at the upgrade
        # MCP has no hello: the connection is the session for the per-session limit.
        self.session_id = uuid.uuid4().hex
        self._progress: defaultdict[RequestId, int] = defaultdict(int)

    def _pending_frames(self) -> list[str]:
        return self.proto.data_to_send()

    async def run(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    self.proto.receive_text(message)
                else:
                    self.proto.receive_bytes(message)
                self._handle_events()
                await self._flush()
        except ConnectionClosed:
            pass
        finally:
            await self._cancel_all()

    def _handle_events(self) -> None:
        for event in self.proto.events_received():
            if isinstance(event, mcp_protocol.ToolCallRequested):
                call = CallRequest(
                    protocol="mcp",
                    session_id=self.session_id,
                    request_id=event.request_id,
                    tool=event.tool,
                    arguments=event.arguments,
                    correlation_id=event.correlation_id,
                    stream=False,
                    route=self._route,
                    mcp_protocol_version=self.proto.protocol_version,
                    client_id=self.client_id,
                )
                self._start(call, self, streaming=False)
            else:
                self._cancel(event.request_id)

    # --- CallSink -----------------------------------------------------------------

    async def progress(self, call: CallRequest, stage: str, message: str) -> None:
        self._progress[call.request_id] += 1
        self.proto.send_progress(call.request_id, self._progress[call.request_id], message)
        await self._flush()

    async def chunk(self, call: CallRequest, text: str) -> None:
        return None  # MCP results are whole; calls here never stream

    async def succeeded(self, call: CallRequest, result: ToolResult, scope: CallScope) -> None:
        self._progress.pop(call.request_id, None)
        meta = {**result.metadata, **self._ids(scope)}
        self.proto.complete_call(call.request_id, result.outputs, meta=meta)
        await self._flush()

    async def failed(
        self, call: CallRequest, code: ErrorCode, message: str, scope: CallScope
    ) -> None:
        self._progress.pop(call.request_id, None)
        self.proto.fail_call(call.request_id, code, message, meta=self._ids(scope))
        await self._flush()

    async def cancelled(self, call: CallRequest) -> None:
        self.abandoned(call)
        await self._flush()

    def abandoned(self, call: CallRequest) -> None:
        self._progress.pop(call.request_id, None)
        self.proto.cancel_call(call.request_id)

    @staticmethod
    def _ids(scope: CallScope) -> dict[str, str]:
        return {"correlation_id": scope.correlation_id, "trace_id": scope.trace_id}
