"""What the benchmark collector received, counted from its file exporters (OTLP JSON)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORRELATION_ATTRIBUTE = "exai.correlation_id"


@dataclass
class Received:
    spans: Counter[str] = field(default_factory=Counter)  # per span name
    correlation_ids: set[str] = field(default_factory=set)
    spans_without_correlation: int = 0
    # The last cumulative count of http.server.request.duration per route.
    server_requests: dict[str, int] = field(default_factory=dict)

    @property
    def span_total(self) -> int:
        return sum(self.spans.values())


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open() as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        value = item.get("value", {})
        out[item["key"]] = next(iter(value.values()), None) if value else None
    return out


def received(directory: Path, service_name: str) -> Received:
    """Spans and request counts `service_name` exported into `directory`."""
    result = Received()
    for export in _lines(directory / "traces.jsonl"):
        for resource_spans in export.get("resourceSpans", []):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
            if resource.get("service.name") != service_name:
                continue
            for scope in resource_spans.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    result.spans[span["name"]] += 1
                    correlation = _attributes(span.get("attributes")).get(CORRELATION_ATTRIBUTE)
                    if correlation:
                        result.correlation_ids.add(correlation)
                    else:
                        result.spans_without_correlation += 1
    for export in _lines(directory / "metrics.jsonl"):
        for resource_metrics in export.get("resourceMetrics", []):
            resource = _attributes(resource_metrics.get("resource", {}).get("attributes"))
            if resource.get("service.name") != service_name:
                continue
            for scope in resource_metrics.get("scopeMetrics", []):
                for metric in scope.get("metrics", []):
                    if metric["name"] != "http.server.request.duration":
                        continue
                    counts: Counter[str] = Counter()
                    for point in metric.get("histogram", {}).get("dataPoints", []):
                        route = _attributes(point.get("attributes")).get("http.route", "")
                        counts[str(route)] += int(point.get("count", 0))
                    # Cumulative temporality: the latest export holds the totals.
                    result.server_requests.update(counts)
    return result


# --- per span and per metric point (`make bench-chain` counts several services) ------


@dataclass(frozen=True)
class SpanRecord:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    correlation_id: str | None


def span_records(directory: Path) -> Iterator[SpanRecord]:
    """Every span in `directory`'s traces file, whichever service exported it."""
    for export in _lines(directory / "traces.jsonl"):
        for resource_spans in export.get("resourceSpans", []):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
            service = str(resource.get("service.name", ""))
            for scope in resource_spans.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    correlation = _attributes(span.get("attributes")).get(CORRELATION_ATTRIBUTE)
                    yield SpanRecord(
                        service,
                        span["name"],
                        span.get("traceId", ""),
                        span.get("spanId", ""),
                        span.get("parentSpanId", ""),
                        str(correlation) if correlation else None,
                    )


PointKey = tuple[str, frozenset[tuple[str, str]]]  # service.name, the point's attributes


def metric_values(directory: Path, metric_name: str) -> dict[PointKey, float]:
    """The latest value of a cumulative metric per service and attribute set: a sum's
    (counter or up-down counter) value, a histogram's count."""
    latest: dict[PointKey, float] = {}
    for export in _lines(directory / "metrics.jsonl"):
        for resource_metrics in export.get("resourceMetrics", []):
            resource = _attributes(resource_metrics.get("resource", {}).get("attributes"))
            service = str(resource.get("service.name", ""))
            for scope in resource_metrics.get("scopeMetrics", []):
                for metric in scope.get("metrics", []):
                    if metric["name"] != metric_name:
                        continue
                    data = metric.get("sum") or metric.get("histogram") or metric.get("gauge")
                    for point in (data or {}).get("dataPoints", []):
                        attributes = _attributes(point.get("attributes"))
                        key = (service, frozenset((k, str(v)) for k, v in attributes.items()))
                        if "count" in point and "histogram" in metric:
                            latest[key] = float(point["count"])
                        else:  # OTLP JSON writes int64 values as strings
                            latest[key] = float(point.get("asInt", point.get("asDouble", 0)))
    return latest
