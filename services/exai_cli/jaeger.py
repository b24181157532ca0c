"""Jaeger's HTTP query API (the no-Docker stack's trace store, port 16686).

Search is per service (``GET /api/traces?service=…&tags={"exai.correlation_id":"…"}``),
and a call made straight to the provider-proxy has no gateway span, so every service
Jaeger knows (``GET /api/services``) is searched and the answers are merged. Each answer
holds whole traces: the spans of every service, not only the one searched.

Jaeger's model folds some OTLP fields into tags (``span.kind``, ``otel.status_code``,
``otel.status_description``, ``error``) and the service into a ``processes`` table;
:func:`parse_jaeger_traces` turns them back into :class:`~exai_cli.types.Span` fields.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from exai_cli.errors import BadResponse
from exai_cli.fetch import display_url, get_json
from exai_cli.types import (
    CORRELATION_ATTRIBUTE,
    AttributeValue,
    SearchResult,
    Span,
    SpanEvent,
    SpanKind,
    StatusCode,
    Trace,
    merge_traces,
)

DEFAULT_URL = "http://127.0.0.1:16686"
# Tags Jaeger derives from OTLP span fields; they become Span.kind / Span.status here.
_FIELD_TAGS = frozenset({"span.kind", "otel.status_code", "otel.status_description", "error"})
_US = 1000
# From the page Jaeger serves at "/" when built without its UI.
_UI_PLACEHOLDER = "placeholder for the Jaeger UI"


def _tag_value(tag: dict[str, Any]) -> AttributeValue:
    value = tag.get("value")
    if tag.get("type") == "int64" and isinstance(value, str):
        return int(value)
    if tag.get("type") == "float64" and isinstance(value, str | int):
        return float(value)
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    return str(value)


def _tags(items: object) -> dict[str, AttributeValue]:
    if not isinstance(items, list):
        return {}
    return {str(t["key"]): _tag_value(t) for t in items if isinstance(t, dict) and "key" in t}


def _parent(span: dict[str, Any]) -> str | None:
    for ref in span.get("references") or []:
        if isinstance(ref, dict) and ref.get("refType") == "CHILD_OF" and ref.get("spanID"):
            return str(ref["spanID"]).zfill(16)
    return None


def _status(tags: dict[str, AttributeValue]) -> StatusCode:
    code = str(tags.get("otel.status_code") or "").lower()
    if code == "error" or tags.get("error") is True:
        return StatusCode.ERROR
    return StatusCode.OK if code == "ok" else StatusCode.UNSET


def _kind(tags: dict[str, AttributeValue]) -> SpanKind:
    value = str(tags.get("span.kind") or "").lower()
    try:
        return SpanKind(value)
    except ValueError:
        # Jaeger leaves the tag out for INTERNAL spans.
        return SpanKind.INTERNAL if not value else SpanKind.UNSPECIFIED


def _event(log: dict[str, Any]) -> SpanEvent:
    """A Jaeger span log: OTLP span events become logs whose `event` field is the name."""
    fields = _tags(log.get("fields"))
    name = fields.pop("event", "")
    return SpanEvent(str(name or ""), int(log.get("timestamp") or 0) * _US, fields)


def _span(raw: dict[str, Any], services: dict[str, str]) -> Span:
    tags = _tags(raw.get("tags"))
    start_us = int(raw.get("startTime") or 0)
    events = tuple(_event(log) for log in raw.get("logs") or [] if isinstance(log, dict))
    return Span(
        trace_id=str(raw["traceID"]).zfill(32),
        span_id=str(raw["spanID"]).zfill(16),
        parent_span_id=_parent(raw),
        service=services.get(str(raw.get("processID")), "unknown"),
        name=str(raw.get("operationName") or ""),
        kind=_kind(tags),
        start_ns=start_us * _US,
        end_ns=(start_us + int(raw.get("duration") or 0)) * _US,
        status=_status(tags),
        status_message=str(tags.get("otel.status_description") or ""),
        attributes={k: v for k, v in tags.items() if k not in _FIELD_TAGS},
        events=events,
    )


def parse_jaeger_traces(payload: object) -> list[Trace]:
    """The ``data`` of a ``/api/traces`` or ``/api/traces/<id>`` answer."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data") or [], list):
        raise BadResponse("Jaeger's answer has no trace list (`data`)")
    traces = []
    for raw in payload.get("data") or []:
        try:
            processes = raw.get("processes") or {}
            services = {pid: str(p.get("serviceName") or "unknown") for pid, p in processes.items()}
            spans = tuple(_span(s, services) for s in raw.get("spans") or [])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BadResponse(f"unreadable trace in Jaeger's answer ({exc!r})") from exc
        if spans:
            traces.append(Trace(str(raw.get("traceID") or spans[0].trace_id).zfill(32), spans))
    return merge_traces(traces)


class JaegerStore:
    kind = "jaeger"

    def __init__(self, http: httpx.Client, url: str) -> None:
        self._http = http
        self.url = url
        self.label = f"Jaeger at {display_url(url)}"

    def probe(self) -> None:
        self.services()

    def services(self) -> list[str]:
        payload = get_json(self._http, "/api/services", None, source=self.label)
        if not isinstance(payload, dict) or "data" not in payload:
            raise BadResponse(f"{self.label}: /api/services has no service list")
        # A Jaeger that has stored nothing yet answers `"data": null`: no services.
        data = payload["data"] if payload["data"] is not None else []
        if not isinstance(data, list):
            raise BadResponse(f"{self.label}: /api/services has no service list")
        return sorted(str(s) for s in data)

    def serves_ui(self) -> bool:
        """Whether this Jaeger has its web UI. A build without the UI assets (the
        Go-module build) answers "/" with a placeholder page instead."""
        try:
            response = self._http.get("/")
        except httpx.HTTPError:
            return False
        return (
            response.status_code == 200
            and "html" in response.headers.get("content-type", "")
            and _UI_PLACEHOLDER not in response.text
        )

    def find(self, correlation_id: str, since_s: float, limit: int = 20) -> SearchResult:
        end_us = int(time.time() * 1_000_000)
        start_us = end_us - int(since_s * 1_000_000)
        tags = json.dumps({CORRELATION_ATTRIBUTE: correlation_id})
        found: list[Trace] = []
        truncated = False
        for service in self.services():
            payload = get_json(
                self._http,
                "/api/traces",
                {
                    "service": service,
                    "tags": tags,
                    "start": start_us,
                    "end": end_us,
                    "limit": limit,
                },
                source=self.label,
            )
            traces = parse_jaeger_traces(payload)
            # Jaeger answers at most `limit` traces per search: a full answer may be cut.
            truncated = truncated or len(traces) >= limit
            found += traces
        return SearchResult(merge_traces(found), truncated)

    def get(self, trace_id: str) -> Trace | None:
        """The trace with this ID; None when Jaeger does not have it."""
        payload = get_json(
            self._http, f"/api/traces/{trace_id}", None, source=self.label, missing_ok=True
        )
        traces = parse_jaeger_traces(payload) if payload is not None else []
        return traces[0] if traces else None
