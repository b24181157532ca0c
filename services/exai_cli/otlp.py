"""OTLP JSON, as Tempo answers it and as the collector's file exporter writes it.

The two writers differ in the details the OTLP/JSON spec leaves to protobuf's JSON
mapping, so every reader here accepts both:

- IDs: hex (the OTLP/JSON spec; the collector) or base64 (Tempo's protobuf JSON);
- enums: integers (``"kind": 2``) or names (``"SPAN_KIND_SERVER"``);
- 64-bit integers: JSON strings (``"startTimeUnixNano": "1700…"``) or numbers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from typing import Any

from exai_cli.errors import BadResponse
from exai_cli.types import (
    AttributeValue,
    JsonObject,
    LogRecord,
    Span,
    SpanEvent,
    SpanKind,
    StatusCode,
)

_HEX = re.compile(r"^[0-9a-fA-F]*$")
_KINDS = {
    0: SpanKind.UNSPECIFIED,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUS = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
# OTLP SeverityNumber ranges (logs data model): 1-4 TRACE, 5-8 DEBUG, …
_SEVERITY_NAMES = (
    (21, "FATAL"),
    (17, "ERROR"),
    (13, "WARN"),
    (9, "INFO"),
    (5, "DEBUG"),
    (1, "TRACE"),
)
SERVICE_NAME = "service.name"
UNKNOWN_SERVICE = "unknown"


def otlp_id(value: object, size: int) -> str | None:
    """A trace (size 16) or span (size 8) ID as lowercase hex; None when absent or zero."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) == size * 2 and _HEX.match(value):
        hex_id = value.lower()
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadResponse(f"unreadable ID {value!r}") from None
        if len(raw) != size:
            raise BadResponse(f"ID {value!r} is {len(raw)} bytes, expected {size}")
        hex_id = raw.hex()
    return None if set(hex_id) == {"0"} else hex_id


def nanos(value: object) -> int:
    if isinstance(value, bool):
        raise BadResponse(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value is None:
        return 0
    raise BadResponse(f"not a timestamp: {value!r}")


def any_value(value: object) -> AttributeValue:
    """An OTLP AnyValue as a plain JSON value."""
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None


def attributes(items: object) -> dict[str, AttributeValue]:
    """An OTLP KeyValue list as a dict."""
    if not isinstance(items, list):
        return {}
    return {
        str(item["key"]): any_value(item.get("value"))
        for item in items
        if isinstance(item, dict) and "key" in item
    }


def span_kind(value: object) -> SpanKind:
    if isinstance(value, int):
        return _KINDS.get(value, SpanKind.UNSPECIFIED)
    try:
        return SpanKind(str(value).removeprefix("SPAN_KIND_").lower())
    except ValueError:
        return SpanKind.UNSPECIFIED


def status(value: object) -> tuple[StatusCode, str]:
    if not isinstance(value, dict):
        return StatusCode.UNSET, ""
    code = value.get("code", 0)
    message = str(value.get("message") or "")
    if isinstance(code, int):
        return _STATUS.get(code, StatusCode.UNSET), message
    try:
        return StatusCode(str(code).removeprefix("STATUS_CODE_").lower()), message
    except ValueError:
        return StatusCode.UNSET, message


def severity_name(number: object, text: object) -> str:
    if isinstance(text, str) and text:
        return text.upper()
    if isinstance(number, int) and number > 0:
        return next(name for floor, name in _SEVERITY_NAMES if number >= floor)
    return "UNSET"


def _list(parent: object, key: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    value = parent.get(key)
    return value if isinstance(value, list) else []


def _service(resource: object) -> str:
    name = attributes(_list(resource, "attributes")).get(SERVICE_NAME)
    return str(name) if name else UNKNOWN_SERVICE


def _scoped(
    resource_items: Iterable[Any], scope_key: str, items_key: str
) -> Iterator[tuple[str, JsonObject]]:
    """(service, item) for every span or log record under resource → scope."""
    for resource_item in resource_items:
        if not isinstance(resource_item, dict):
            continue
        service = _service(resource_item.get("resource"))
        # Before OTLP 1.0 (and in some older Tempo answers) the scope level was
        # "instrumentationLibrarySpans".
        scopes = _list(resource_item, scope_key) or _list(
            resource_item, scope_key.replace("scope", "instrumentationLibrary")
        )
        for scope in scopes:
            for item in _list(scope, items_key):
                if isinstance(item, dict):
                    yield service, item


def parse_resource_spans(resource_spans: Iterable[Any]) -> list[Span]:
    spans = []
    for service, raw in _scoped(resource_spans, "scopeSpans", "spans"):
        trace_id = otlp_id(raw.get("traceId"), 16)
        span_id = otlp_id(raw.get("spanId"), 8)
        if trace_id is None or span_id is None:
            raise BadResponse("a span without traceId/spanId")
        code, message = status(raw.get("status"))
        events = tuple(
            SpanEvent(
                name=str(e.get("name") or ""),
                time_ns=nanos(e.get("timeUnixNano")),
                attributes=attributes(e.get("attributes")),
            )
            for e in _list(raw, "events")
            if isinstance(e, dict)
        )
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=otlp_id(raw.get("parentSpanId"), 8),
                service=service,
                name=str(raw.get("name") or ""),
                kind=span_kind(raw.get("kind")),
                start_ns=nanos(raw.get("startTimeUnixNano")),
                end_ns=nanos(raw.get("endTimeUnixNano")),
                status=code,
                status_message=message,
                attributes=attributes(raw.get("attributes")),
                events=events,
            )
        )
    return spans


def _body(value: object) -> str:
    body = any_value(value)
    if body is None:
        return ""
    return body if isinstance(body, str) else str(body)


def parse_resource_logs(resource_logs: Iterable[Any]) -> list[LogRecord]:
    records = []
    for service, raw in _scoped(resource_logs, "scopeLogs", "logRecords"):
        time_ns = nanos(raw.get("timeUnixNano")) or nanos(raw.get("observedTimeUnixNano"))
        records.append(
            LogRecord(
                time_ns=time_ns,
                service=service,
                severity=severity_name(raw.get("severityNumber"), raw.get("severityText")),
                body=_body(raw.get("body")),
                trace_id=otlp_id(raw.get("traceId"), 16),
                span_id=otlp_id(raw.get("spanId"), 8),
                attributes=attributes(raw.get("attributes")),
            )
        )
    return records
