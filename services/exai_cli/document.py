"""`exai trace --json`: the same answer as the waterfall, for scripts.

Shape (stable; add fields, never rename)::

    {"correlation_id": …, "trace_store": {"kind", "url"}, "log_source": {"kind", "location"},
     "traces": [{"trace_id", "start_time", "duration_ms", "services", "span_count",
                 "error_count", "spans": [{"trace_id", "span_id", "parent_span_id",
                 "depth", "service", "name", "kind", "start_time_unix_nano",
                 "end_time_unix_nano", "offset_ms", "duration_ms", "status",
                 "status_message", "attributes", "events"}]}],
     "logs": [{"time_unix_nano", "time", "service", "severity", "body", "trace_id",
               "span_id", "span_name", "attributes"}],
     "warnings": [...]}

Spans are in waterfall order (depth-first), so ``depth`` is enough to draw the tree.
"""

from __future__ import annotations

from collections.abc import Sequence

from exai_cli.render import tree_rows, utc
from exai_cli.types import JsonObject, LogRecord, Span, Trace

_MS = 1e6


def _span(span: Span, depth: int, trace_start_ns: int) -> JsonObject:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "depth": depth,
        "service": span.service,
        "name": span.name,
        "kind": span.kind.value,
        "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": span.end_ns,
        "offset_ms": (span.start_ns - trace_start_ns) / _MS,
        "duration_ms": span.duration_ns / _MS,
        "status": span.status.value,
        "status_message": span.status_message,
        "attributes": dict(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.time_ns, "attributes": dict(e.attributes)}
            for e in span.events
        ],
    }


def _trace(trace: Trace) -> JsonObject:
    return {
        "trace_id": trace.trace_id,
        "start_time": utc(trace.start_ns),
        "duration_ms": trace.duration_ns / _MS,
        "services": trace.services,
        "span_count": len(trace.spans),
        "error_count": trace.error_count,
        "spans": [_span(row.span, row.depth, trace.start_ns) for row in tree_rows(trace)],
    }


def _log(record: LogRecord, span_names: dict[str, str]) -> JsonObject:
    return {
        "time_unix_nano": record.time_ns,
        "time": utc(record.time_ns),
        "service": record.service,
        "severity": record.severity,
        "body": record.body,
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "span_name": span_names.get(record.span_id or ""),
        "attributes": dict(record.attributes),
    }


def document(
    correlation_id: str,
    traces: Sequence[Trace],
    logs: Sequence[LogRecord],
    *,
    trace_store: JsonObject,
    log_source: JsonObject | None,
    warnings: Sequence[str],
) -> JsonObject:
    span_names = {s.span_id: s.name for t in traces for s in t.spans}
    return {
        "correlation_id": correlation_id,
        "trace_store": trace_store,
        "log_source": log_source,
        "traces": [_trace(t) for t in traces],
        "logs": [_log(r, span_names) for r in sorted(logs, key=lambda r: r.time_ns)],
        "warnings": list(warnings),
    }
