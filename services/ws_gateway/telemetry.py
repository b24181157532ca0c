"""The gateway's telemetry: one SERVER span per call, and the gateway metrics (DESIGN §6).

No instrumentation exists for WebSocket messages, so this is the one place with manual
spans. Each call gets a fresh trace whose root is ``ws call_tool {tool}``; the span and
the call's correlation ID (in baggage) are current while the tool runs, so the httpx
instrumentation makes every downstream request a child span and propagates both
``traceparent`` and ``baggage``.

Metric labels are bounded: tool names come from the fixed catalogue (unknown names are
rejected before a span exists), outcomes and protocols from small enums. Outcomes:
``ok``, ``client_error`` (the caller's mistake: span status left unset, ``error.type``
set), ``error`` (server-side failure: span status ERROR), ``timeout`` and ``rejected``
(status ERROR too), ``cancelled`` (no error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.url_attributes import URL_PATH
from opentelemetry.trace import Span, SpanKind, StatusCode

from exai_telemetry import names
from exai_telemetry.correlation import with_correlation_id
from exai_telemetry.setup import Telemetry
from ws_gateway.errors import ErrorCode
from ws_gateway.types import Outcome, ProtocolName, RequestId

INSTRUMENTATION_NAME = "ws_gateway"


def call_span_name(tool: str) -> str:
    return f"ws call_tool {tool}"


@dataclass
class CallScope:
    """What a running call reports about itself; read when the span ends."""

    span: Span
    correlation_id: str
    outcome: Outcome | None = None
    error_code: ErrorCode | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    def succeeded(self) -> None:
        self.outcome = "ok"

    def failed(self, outcome: Outcome, code: ErrorCode) -> None:
        self.outcome = outcome
        self.error_code = code


class GatewayTelemetry:
    def __init__(self, telemetry: Telemetry) -> None:
        self._tracer = telemetry.tracer(INSTRUMENTATION_NAME)
        meter = telemetry.meter(INSTRUMENTATION_NAME)
        self._connections = meter.create_up_down_counter(
            names.M_GATEWAY_CONNECTIONS,
            unit="{connection}",
            description="Open WebSocket connections",
        )
        self._calls = meter.create_counter(
            names.M_GATEWAY_CALLS, unit="{call}", description="Tool calls by tool and outcome"
        )
        self._duration = meter.create_histogram(
            names.M_GATEWAY_CALL_DURATION,
            unit="s",
            description="Tool call duration by tool and outcome",
        )
        self._inflight = meter.create_up_down_counter(
            names.M_GATEWAY_INFLIGHT, unit="{call}", description="Tool calls running now"
        )

    @contextmanager
    def connection(self, protocol: ProtocolName) -> Iterator[None]:
        attributes = {names.PROTOCOL: protocol}
        self._connections.add(1, attributes)
        try:
            yield
        finally:
            self._connections.add(-1, attributes)

    @contextmanager
    def inflight(self, tool: str, protocol: ProtocolName) -> Iterator[None]:
        attributes = {names.TOOL: tool, names.PROTOCOL: protocol}
        self._inflight.add(1, attributes)
        try:
            yield
        finally:
            self._inflight.add(-1, attributes)

    @contextmanager
    def call(
        self,
        *,
        tool: str,
        protocol: ProtocolName,
        session_id: str,
        request_id: RequestId,
        correlation_id: str,
        route: str,
    ) -> Iterator[CallScope]:
        """The call's SERVER span, current with the correlation ID in baggage.

        The caller reports the outcome on the scope; an exception escaping without one
        counts as ``cancelled`` (CancelledError) or ``error``.
        """
        # A fresh context: a call never inherits the connection's or another call's trace.
        token = context.attach(with_correlation_id(correlation_id, Context()))
        started = time.perf_counter()
        scope: CallScope | None = None
        try:
            with self._tracer.start_as_current_span(
                call_span_name(tool),
                kind=SpanKind.SERVER,
                attributes={
                    names.TOOL: tool,
                    names.PROTOCOL: protocol,
                    names.SESSION_ID: session_id,
                    names.REQUEST_ID: str(request_id),
                    URL_PATH: route,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                scope = CallScope(span, correlation_id)
                try:
                    yield scope
                except BaseException as exc:
                    if scope.outcome is None:
                        cancelled = isinstance(exc, asyncio.CancelledError | GeneratorExit)
                        scope.outcome = "cancelled" if cancelled else "error"
                        if not cancelled:
                            scope.error_code = ErrorCode.INTERNAL_ERROR
                    raise
                finally:
                    self._finish_span(span, scope)
        finally:
            outcome: Outcome = (scope.outcome if scope else None) or "error"
            attributes = {names.TOOL: tool, names.PROTOCOL: protocol, names.OUTCOME: outcome}
            self._calls.add(1, attributes)
            self._duration.record(time.perf_counter() - started, attributes)
            context.detach(token)

    @staticmethod
    def _finish_span(span: Span, scope: CallScope) -> None:
        if not span.is_recording():
            return
        outcome = scope.outcome or "error"
        span.set_attribute(names.OUTCOME, outcome)
        for key, value in scope.attributes.items():
            span.set_attribute(key, value)
        if outcome in ("ok", "cancelled"):
            return  # a cancelled call is the client's choice, not a fault
        code = scope.error_code or ErrorCode.INTERNAL_ERROR
        span.set_attribute(ERROR_TYPE, str(code))
        # The client's mistake is no server failure: the status stays unset (the
        # semantic conventions' rule for a SERVER span and a 4xx).
        if outcome != "client_error":
            span.set_status(StatusCode.ERROR, str(code))
