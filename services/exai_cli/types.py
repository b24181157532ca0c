"""The shapes every module shares: a span, a trace, a log record.

Both trace stores (Jaeger's API, Tempo's OTLP JSON) and both log sources (the OTLP-JSON
file, Loki) are parsed into these, so the renderer and the JSON document know one model.
IDs are lowercase hex (32 characters for a trace, 16 for a span); times are Unix
nanoseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
# What an OTLP AnyValue or a Jaeger tag value becomes: JSON-serialisable as is.
AttributeValue: TypeAlias = str | bool | int | float | list[Any] | dict[str, Any] | None
Attributes: TypeAlias = Mapping[str, AttributeValue]

# The attribute every span and log record of a request carries (DESIGN §6); the same
# string as exai_telemetry.names.CORRELATION_ID, not imported from there because that
# package pulls in the OpenTelemetry SDK, which the CLI does not need.
CORRELATION_ATTRIBUTE = "exai.correlation_id"
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def looks_like_trace_id(text: str) -> bool:
    """32 hex characters, not all zero: what the gateway prints as `trace_id`."""
    return bool(_TRACE_ID.match(text)) and set(text) != {"0"}


class SpanKind(StrEnum):
    UNSPECIFIED = "unspecified"
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class StatusCode(StrEnum):
    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    status: StatusCode = StatusCode.UNSET
    status_message: str = ""
    attributes: Attributes = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)

    @property
    def is_error(self) -> bool:
        return self.status is StatusCode.ERROR


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=0)

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)

    @property
    def services(self) -> list[str]:
        """Services in the order their first span started."""
        ordered = sorted(self.spans, key=lambda s: s.start_ns)
        return list(dict.fromkeys(s.service for s in ordered))

    @property
    def roots(self) -> list[Span]:
        """Spans whose parent is not in the trace (the root, and any orphan)."""
        ids = {s.span_id for s in self.spans}
        return sorted(
            (s for s in self.spans if s.parent_span_id not in ids), key=lambda s: s.start_ns
        )

    @property
    def error_count(self) -> int:
        return sum(1 for s in self.spans if s.is_error)


@dataclass(frozen=True)
class LogRecord:
    time_ns: int
    service: str
    severity: str
    body: str
    trace_id: str | None = None
    span_id: str | None = None
    attributes: Attributes = field(default_factory=dict)

    @property
    def correlation_id(self) -> str | None:
        value = self.attributes.get(CORRELATION_ATTRIBUTE)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class SearchResult:
    """What a trace store found; `truncated` when the search hit its limit (more may exist)."""

    traces: list[Trace]
    truncated: bool = False


def merge_traces(traces: list[Trace]) -> list[Trace]:
    """One trace per trace ID, spans deduplicated by span ID, ordered by start time.

    Searching every service returns the same trace once per service, and a trace may
    grow between two polls; the union is what the store holds.
    """
    spans: dict[str, dict[str, Span]] = {}
    for trace in traces:
        bucket = spans.setdefault(trace.trace_id, {})
        for span in trace.spans:
            bucket[span.span_id] = span
    merged = [
        Trace(trace_id, tuple(sorted(by_id.values(), key=lambda s: (s.start_ns, s.span_id))))
        for trace_id, by_id in spans.items()
        if by_id
    ]
    return sorted(merged, key=lambda t: t.start_ns)
