"""Tempo's HTTP API (compose's trace store, port 3200).

Finding a request takes two steps: a TraceQL search for the spans carrying the
correlation ID (``GET /api/search?q={ span.exai.correlation_id = "…" }``), which
returns trace IDs and a few matching spans, then ``GET /api/traces/<id>`` for each whole
trace, in OTLP JSON (see :mod:`exai_cli.otlp` for the dialect). TraceQL is used rather
than ``tags=`` because tag search matches substrings.
"""

from __future__ import annotations

import time

import httpx

from exai_cli.errors import BadResponse
from exai_cli.fetch import display_url, get_json, ping
from exai_cli.otlp import parse_resource_spans
from exai_cli.types import CORRELATION_ATTRIBUTE, SearchResult, Trace, merge_traces

DEFAULT_URL = "http://127.0.0.1:3200"


def quote(value: str) -> str:
    """A TraceQL (and LogQL) double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def traceql(correlation_id: str) -> str:
    return f"{{ span.{CORRELATION_ATTRIBUTE} = {quote(correlation_id)} }}"


def parse_search(payload: object) -> list[str]:
    """Trace IDs (32 hex characters) from an ``/api/search`` answer."""
    if not isinstance(payload, dict) or not isinstance(payload.get("traces") or [], list):
        raise BadResponse("Tempo's search answer has no trace list (`traces`)")
    ids = []
    for item in payload.get("traces") or []:
        trace_id = item.get("traceID") if isinstance(item, dict) else None
        if not isinstance(trace_id, str) or not trace_id:
            raise BadResponse("a search result without traceID")
        # Tempo trims leading zeros from the IDs it returns.
        ids.append(trace_id.lower().zfill(32))
    return list(dict.fromkeys(ids))


def parse_trace(payload: object) -> Trace | None:
    """A ``/api/traces/<id>`` answer (``batches``) or a v2 one (``trace.resourceSpans``)."""
    if not isinstance(payload, dict):
        raise BadResponse("Tempo's trace answer is not a JSON object")
    inner = payload.get("trace")
    if isinstance(inner, dict):
        payload = inner
    resource_spans = payload.get("batches") or payload.get("resourceSpans") or []
    if not isinstance(resource_spans, list):
        raise BadResponse("Tempo's trace answer has no `batches`")
    traces = merge_traces([Trace(s.trace_id, (s,)) for s in parse_resource_spans(resource_spans)])
    if len(traces) > 1:
        raise BadResponse("Tempo answered one trace ID with spans of several traces")
    return traces[0] if traces else None


class TempoStore:
    kind = "tempo"

    def __init__(self, http: httpx.Client, url: str) -> None:
        self._http = http
        self.url = url
        self.label = f"Tempo at {display_url(url)}"

    def probe(self) -> None:
        ping(self._http, "/api/echo", source=self.label)

    def find(self, correlation_id: str, since_s: float, limit: int = 20) -> SearchResult:
        end = int(time.time()) + 1
        start = end - int(since_s) - 1
        # start/end make Tempo search its backend blocks too, not only recent data.
        payload = get_json(
            self._http,
            "/api/search",
            {"q": traceql(correlation_id), "start": start, "end": end, "limit": limit},
            source=self.label,
        )
        trace_ids = parse_search(payload)
        traces = [t for t in map(self.get, trace_ids) if t is not None]
        # Tempo answers at most `limit` trace IDs: a full answer may be cut.
        return SearchResult(merge_traces(traces), truncated=len(trace_ids) >= limit)

    def get(self, trace_id: str) -> Trace | None:
        """The trace with this ID; None when Tempo does not have it."""
        answer = get_json(
            self._http, f"/api/traces/{trace_id}", None, source=self.label, missing_ok=True
        )
        return parse_trace(answer) if answer is not None else None
