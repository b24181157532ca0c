"""`exai trace --json`: the same answer as the waterfall, for scripts.

Shape (stable; add fields, never rename)::

    {"correlation_id": …, "trace_store": {"kind", "url"}, "log_source": {"kind", "location"},
     "trace_status": "found" | "not_stored_yet" | "sampled_out",
     "truncated": {"traces": bool, "logs": bool, "limit": int},
     "traces": [{"trace_id", "start_time", "duration_ms", "services", "span_count",
                 "error_count", "links": {"grafana"?, "jaeger"?},
                 "spans": [{"trace_id", "span_id", "parent_span_id",
                 "depth", "service", "name", "kind", "start_time_unix_nano",
                 "end_time_unix_nano", "offset_ms", "duration_ms", "skew_ms", "status",
                 "status_message", "attributes", "events"}]}],
     "logs": [{"time_unix_nano", "time", "service", "severity", "body", "trace_id",
               "span_id", "span_name", "attributes"}],
     "warnings": [...]}

Spans are in waterfall order (depth-first), so ``depth`` is enough to draw the tree;
every span is listed (the terminal view folds long runs, the document never does).
``skew_ms`` is null, or how far the span lies outside its parent (see
:mod:`exai_cli.skew`). ``truncated`` says whether ``--limit`` (traces) or the log
source's own limit (logs) cut the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from exai_cli.skew import skews
from exai_cli.style import utc
from exai_cli.tree import span_rows
from exai_cli.types import JsonObject, LogRecord, Span, Trace

_MS = 1e6


def _span(span: Span, depth: int, trace_start_ns: int, skew_ns: int | None) -> JsonObject:
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
        "skew_ms": skew_ns / _MS if skew_ns else None,
        "status": span.status.value,
        "status_message": span.status_message,
        "attributes": dict(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.time_ns, "attributes": dict(e.attributes)}
            for e in span.events
        ],
    }


def _trace(trace: Trace, links: Mapping[str, str]) -> JsonObject:
    skew = skews(trace)
    return {
        "trace_id": trace.trace_id,
        "start_time": utc(trace.start_ns),
        "duration_ms": trace.duration_ns / _MS,
        "services": trace.services,
        "span_count": len(trace.spans),
        "error_count": trace.error_count,
        "links": {name.lower(): url for name, url in links.items()},
        "spans": [
            _span(row.span, row.depth, trace.start_ns, skew.get(row.span.span_id))
            for row in span_rows(trace)
        ],
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
    trace_status: str = "found",
    truncated: JsonObject | None = None,
    links: Mapping[str, Mapping[str, str]] | None = None,
) -> JsonObject:
    span_names = {s.span_id: s.name for t in traces for s in t.spans}
    return {
        "correlation_id": correlation_id,
        "trace_store": trace_store,
        "log_source": log_source,
        "trace_status": trace_status,
        "truncated": truncated or {"traces": False, "logs": False},
        "traces": [_trace(t, (links or {}).get(t.trace_id, {})) for t in traces],
        "logs": [_log(r, span_names) for r in sorted(logs, key=lambda r: r.time_ns)],
        "warnings": list(warnings),
    }
