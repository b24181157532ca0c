"""The gateway's telemetry: one SERVER span per call, and the gateway metrics (DESIGN §6).

No instrumentation exists for WebSocket messages, so this is the one place with manual
spans. Each call gets a fresh trace whose root is ``ws call_tool {tool}``; the span and
the call's correlation ID (in baggage) are current while the tool runs, so the httpx
instrumentation makes every downstream request a child span and propagates both
``traceparent`` and ``baggage``.

Metric labels are bounded: tool names come from the fixed catalogue (unknown names are
rejected before a span exists), outcomes and protocols from small enums. Outcomes:
``ok``, ``client_error`` (the caller's mistake, or its session's own in-flight cap: span
status left unset, ``error.type`` set), ``error`` (server-side failure: span status
ERROR), ``timeout`` and ``rejected`` (the gateway's capacity; status ERROR too),
``cancelled`` (no error).

Every call span carries ``exai.client.id``: the client whose token authenticated the
connection (ws_gateway.auth), never the token; spans only, it is unbounded.

MCP calls follow the OpenTelemetry MCP semantic conventions (semantic-conventions-genai,
``docs/gen-ai/mcp.md``): the span is named ``tools/call {tool}`` and carries
``mcp.method.name``, ``mcp.session.id``, ``mcp.protocol.version``,
``jsonrpc.request.id``, ``network.transport`` and ``network.protocol.name``; a failed call
(a result with ``isError: true``) has ``error.type`` ``tool_error`` and our own code in
``exai.error.code``. The metrics ``mcp.server.operation.duration`` (per answered
``tools/call``; a cancelled request gets no answer and is not recorded) and
``mcp.server.session.duration`` (per MCP connection) carry bounded attributes only: never
the session or request ID. Native calls keep their ``ws call_tool {tool}`` name. Both
carry ``gen_ai.tool.name`` and ``gen_ai.operation.name`` ``execute_tool``, as GenAI tool
execution spans do. The client-error rule above holds for MCP too (the MCP conventions
do not count invalid-request errors as server errors either).

Latency the gateway controls (its SLO is not about how long a model thinks):

- ``exai.gateway.time_to_first_chunk`` (streamed calls): from the call's start to its
  first chunk sent to the client, by tool;
- ``exai.gateway.overhead.duration``: the call's duration minus the wall time spent
  waiting on the LLM providers (as provider-proxy reports it, ws_gateway.clients), by
  tool and outcome;
- ``exai.gateway.latency_objective``: per successful call, ``overhead`` (and, when it
  streamed, ``first_chunk``) ``met`` or ``missed`` against the per-tool thresholds of
  :class:`LatencyObjectives` (EXAI_SLO_*).

``exai.gateway.calls`` and ``exai.gateway.latency_objective`` start at 0 for every tool,
protocol and outcome (resp. indicator and result), so that ``rate()`` sees the first
error of a series.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, get_args

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_TOOL_NAME,
    GenAiOperationNameValues,
)
from opentelemetry.semconv._incubating.attributes.jsonrpc_attributes import JSONRPC_REQUEST_ID
from opentelemetry.semconv._incubating.attributes.mcp_attributes import (
    MCP_METHOD_NAME,
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
)
from opentelemetry.semconv._incubating.metrics.mcp_metrics import (
    MCP_SERVER_OPERATION_DURATION,
    MCP_SERVER_SESSION_DURATION,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PROTOCOL_NAME,
    NETWORK_TRANSPORT,
    NetworkTransportValues,
)
from opentelemetry.semconv.attributes.url_attributes import URL_PATH
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from exai_contracts.ids import DEFAULT_CLIENT_ID
from exai_telemetry import names
from exai_telemetry.correlation import GATEWAY_TOOLS, with_correlation_id, with_tool
from exai_telemetry.setup import DURATION_BUCKETS_S, Telemetry
from ws_gateway.clients import ProviderWaits, tracking_provider_waits
from ws_gateway.errors import ErrorCode
from ws_gateway.settings import GatewaySettings
from ws_gateway.types import Outcome, ProtocolName, RequestId

INSTRUMENTATION_NAME = "ws_gateway"
EXECUTE_TOOL = GenAiOperationNameValues.EXECUTE_TOOL.value
MCP_TOOLS_CALL = "tools/call"
MCP_TOOL_ERROR = "tool_error"  # the MCP conventions' error.type for an isError result
# The MCP conventions' advice for both duration histograms (seconds).
MCP_DURATION_BUCKETS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
# MCP over WebSocket: a custom transport, recorded as the conventions' table says.
MCP_TRANSPORT: dict[str, AttributeValue] = {
    NETWORK_TRANSPORT: NetworkTransportValues.TCP.value,
    NETWORK_PROTOCOL_NAME: "websocket",
}
NORMAL_CLOSE_CODES = frozenset({1000, 1001, 1005})  # 1005: a close frame without a code

SloIndicator = Literal["first_chunk", "overhead"]
SloResult = Literal["met", "missed"]


@dataclass(frozen=True)
class LatencyObjectives:
    """Per-tool thresholds (seconds) of the latency objective; the settings' EXAI_SLO_*."""

    first_chunk_s: float = 5.0
    overhead_s: float = 0.5
    first_chunk_s_by_tool: Mapping[str, float] = field(default_factory=dict)
    overhead_s_by_tool: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: GatewaySettings) -> LatencyObjectives:
        return cls(
            settings.slo_first_chunk_s,
            settings.slo_overhead_s,
            settings.slo_first_chunk_s_by_tool,
            settings.slo_overhead_s_by_tool,
        )

    def threshold_s(self, indicator: SloIndicator, tool: str) -> float:
        if indicator == "first_chunk":
            return self.first_chunk_s_by_tool.get(tool, self.first_chunk_s)
        return self.overhead_s_by_tool.get(tool, self.overhead_s)


def call_span_name(tool: str, protocol: ProtocolName = "native") -> str:
    if protocol == "mcp":
        return f"{MCP_TOOLS_CALL} {tool}"
    return f"ws call_tool {tool}"


@dataclass
class McpSessionScope:
    """What an MCP connection reports about itself; read when it ends."""

    error_type: str | None = None

    def closed_with(self, code: int | None) -> None:
        """The WebSocket close code: anything but a normal close is a session error."""
        if code is not None and code not in NORMAL_CLOSE_CODES:
            self.error_type = str(code)


@dataclass
class CallScope:
    """What a running call reports about itself; read when the span ends."""

    span: Span
    correlation_id: str
    outcome: Outcome | None = None
    error_code: ErrorCode | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # time.perf_counter() when the call started, and after how long its first
    # streamed chunk went out (None: it streamed nothing).
    started: float = field(default_factory=time.perf_counter)
    first_chunk_s: float | None = None

    def chunk_sent(self) -> None:
        """A stream chunk has just been sent to the client."""
        if self.first_chunk_s is None:
            self.first_chunk_s = time.perf_counter() - self.started

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    def succeeded(self) -> None:
        self.outcome = "ok"

    def failed(self, outcome: Outcome, code: ErrorCode) -> None:
        self.outcome = outcome
        self.error_code = code


class GatewayTelemetry:
    def __init__(self, telemetry: Telemetry, objectives: LatencyObjectives | None = None) -> None:
        self._objectives = objectives or LatencyObjectives()
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
        self._mcp_operation = meter.create_histogram(
            MCP_SERVER_OPERATION_DURATION,
            unit="s",
            description="MCP request duration from receipt until its result is sent",
            explicit_bucket_boundaries_advisory=MCP_DURATION_BUCKETS_S,
        )
        self._mcp_session = meter.create_histogram(
            MCP_SERVER_SESSION_DURATION,
            unit="s",
            description="MCP session (WebSocket connection) duration",
            explicit_bucket_boundaries_advisory=MCP_DURATION_BUCKETS_S,
        )
        self._first_chunk = meter.create_histogram(
            names.M_GATEWAY_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Streamed calls: time from the call's start to its first chunk sent",
            # Not matched by the duration View: the same seconds buckets (5 s among them).
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._overhead = meter.create_histogram(
            names.M_GATEWAY_OVERHEAD_DURATION,
            unit="s",
            description="Call duration minus the time spent waiting on the LLM providers",
        )
        self._objective = meter.create_counter(
            names.M_GATEWAY_LATENCY_OBJECTIVE,
            unit="{call}",
            description="Successful calls that met or missed their latency objective",
        )
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Every series the SLO and alerts divide, at 0 before the first call."""
        for tool in sorted(GATEWAY_TOOLS):
            for protocol in get_args(ProtocolName):
                for outcome in get_args(Outcome):
                    self._calls.add(
                        0, {names.TOOL: tool, names.PROTOCOL: protocol, names.OUTCOME: outcome}
                    )
            for indicator in get_args(SloIndicator):
                for result in get_args(SloResult):
                    self._objective.add(0, _objective_labels(tool, indicator, result))

    def _record_latency(
        self, tool: str, outcome: Outcome, elapsed_s: float, scope: CallScope | None, waits: float
    ) -> None:
        overhead_s = max(elapsed_s - waits, 0.0)
        self._overhead.record(overhead_s, {names.TOOL: tool, names.OUTCOME: outcome})
        first_chunk_s = scope.first_chunk_s if scope is not None else None
        if first_chunk_s is not None:
            self._first_chunk.record(first_chunk_s, {names.TOOL: tool})
        if outcome != "ok":
            return  # the objective is about answers; failures have their own SLO
        self._objective_event(tool, "overhead", overhead_s)
        if first_chunk_s is not None:
            self._objective_event(tool, "first_chunk", first_chunk_s)

    def _objective_event(self, tool: str, indicator: SloIndicator, value_s: float) -> None:
        result: SloResult = (
            "met" if value_s <= self._objectives.threshold_s(indicator, tool) else "missed"
        )
        self._objective.add(1, _objective_labels(tool, indicator, result))

    @contextmanager
    def mcp_session(self, protocol_version: Callable[[], str | None]) -> Iterator[McpSessionScope]:
        """Records `mcp.server.session.duration` when the block ends, however it ends;
        `protocol_version` is asked then (the one `initialize` settled on, if any)."""
        started = time.perf_counter()
        scope = McpSessionScope()
        try:
            yield scope
        except BaseException as exc:
            if scope.error_type is None and not isinstance(exc, asyncio.CancelledError):
                scope.error_type = type(exc).__qualname__
            raise
        finally:
            attributes = dict(MCP_TRANSPORT)
            version = protocol_version()
            if version is not None:
                attributes[MCP_PROTOCOL_VERSION] = version
            if scope.error_type is not None:
                attributes[ERROR_TYPE] = scope.error_type
            self._mcp_session.record(time.perf_counter() - started, attributes)

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
        mcp_protocol_version: str | None = None,
        client_id: str | None = None,
    ) -> Iterator[CallScope]:
        """The call's SERVER span, current with the correlation ID in baggage.

        The caller reports the outcome on the scope; an exception escaping without one
        counts as ``cancelled`` (CancelledError) or ``error``.
        """
        # A fresh context: a call never inherits the connection's or another call's trace.
        token = context.attach(with_tool(tool, with_correlation_id(correlation_id, Context())))
        started = time.perf_counter()
        scope: CallScope | None = None
        waits: ProviderWaits | None = None
        attributes: dict[str, AttributeValue] = {
            names.TOOL: tool,
            names.PROTOCOL: protocol,
            names.SESSION_ID: session_id,
            names.REQUEST_ID: str(request_id),
            URL_PATH: route,
            GEN_AI_TOOL_NAME: tool,
            GEN_AI_OPERATION_NAME: EXECUTE_TOOL,
        }
        if client_id is not None:
            attributes[names.CLIENT_ID] = client_id
        # Bounded values only: what the MCP operation metric may carry.
        mcp_labels: dict[str, AttributeValue] = {}
        if protocol == "mcp":
            mcp_labels = {
                MCP_METHOD_NAME: MCP_TOOLS_CALL,
                GEN_AI_TOOL_NAME: tool,
                GEN_AI_OPERATION_NAME: EXECUTE_TOOL,
                **MCP_TRANSPORT,
            }
            if mcp_protocol_version is not None:
                mcp_labels[MCP_PROTOCOL_VERSION] = mcp_protocol_version
            attributes.update(mcp_labels)
            attributes[MCP_SESSION_ID] = session_id
            attributes[JSONRPC_REQUEST_ID] = str(request_id)
        try:
            with (
                tracking_provider_waits(client_id or DEFAULT_CLIENT_ID) as waits,
                self._tracer.start_as_current_span(
                    call_span_name(tool, protocol),
                    kind=SpanKind.SERVER,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span,
            ):
                scope = CallScope(span, correlation_id, started=started)
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
                    self._finish_span(span, scope, protocol)
        finally:
            elapsed = time.perf_counter() - started
            outcome: Outcome = (scope.outcome if scope else None) or "error"
            labels = {names.TOOL: tool, names.PROTOCOL: protocol, names.OUTCOME: outcome}
            self._calls.add(1, labels)
            self._duration.record(elapsed, labels)
            self._record_latency(
                tool, outcome, elapsed, scope, waits.wall_s() if waits is not None else 0.0
            )
            # A cancelled MCP request gets no answer: no operation to time.
            if protocol == "mcp" and outcome != "cancelled":
                if outcome != "ok":
                    mcp_labels[ERROR_TYPE] = MCP_TOOL_ERROR
                self._mcp_operation.record(elapsed, mcp_labels)
            context.detach(token)

    @staticmethod
    def _finish_span(span: Span, scope: CallScope, protocol: ProtocolName) -> None:
        if not span.is_recording():
            return
        outcome = scope.outcome or "error"
        span.set_attribute(names.OUTCOME, outcome)
        for key, value in scope.attributes.items():
            span.set_attribute(key, value)
        if outcome in ("ok", "cancelled"):
            return  # a cancelled call is the client's choice, not a fault
        code = scope.error_code or ErrorCode.INTERNAL_ERROR
        span.set_attribute(names.ERROR_CODE, str(code))
        # MCP: every failure is a CallToolResult with isError, which the MCP conventions
        # name `tool_error`; the native protocol's error.type is the code itself.
        span.set_attribute(ERROR_TYPE, MCP_TOOL_ERROR if protocol == "mcp" else str(code))
        # The client's mistake is no server failure: the status stays unset (the
        # semantic conventions' rule for a SERVER span and a 4xx).
        if outcome != "client_error":
            span.set_status(StatusCode.ERROR, str(code))


def _objective_labels(tool: str, indicator: SloIndicator, result: SloResult) -> dict[str, str]:
    return {names.TOOL: tool, names.SLO_INDICATOR: indicator, names.SLO_RESULT: result}
