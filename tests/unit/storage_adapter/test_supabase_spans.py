"""Supabase REST requests as database operations (the span names and attributes)."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.instrumentation.httpx import RequestInfo
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from storage_adapter.store.supabase import name_rest_span, rest_operation


@pytest.mark.parametrize(
    ("method", "path", "prefer", "expected"),
    [
        ("GET", "/rest/v1/conversations", None, ("select", "conversations")),
        ("HEAD", "/rest/v1/messages", None, ("select", "messages")),
        ("POST", "/rest/v1/messages", "return=representation", ("insert", "messages")),
        (
            "POST",
            "/rest/v1/messages",
            "resolution=ignore-duplicates,return=representation",
            ("upsert", "messages"),
        ),
        ("PATCH", "/rest/v1/conversations", None, ("update", "conversations")),
        ("DELETE", "/rest/v1/conversations", None, ("delete", "conversations")),
        ("GET", "/auth/v1/user", None, ("select", None)),
    ],
)
def test_postgrest_requests_map_to_operations_and_tables(
    method: str, path: str, prefer: str | None, expected: tuple[str, str | None]
) -> None:
    assert rest_operation(method, path, prefer) == expected


async def test_the_hook_names_the_span_and_never_raises() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET") as span:
        url = httpx.URL("https://x.supabase.co/rest/v1/conversations?select=id")
        await name_rest_span(span, RequestInfo(b"GET", url, httpx.Headers(), None, None))
    with tracer.start_as_current_span("GET") as span:
        raw = (b"https", b"x.supabase.co", 443, b"/rest/v1/messages?select=id")
        await name_rest_span(span, RequestInfo(b"GET", raw, None, None, None))
    with tracer.start_as_current_span("POST") as span:
        await name_rest_span(span, RequestInfo(b"POST", object(), None, None, None))  # type: ignore[arg-type]
    first, second, broken = exporter.get_finished_spans()
    assert first.name == "select conversations"
    assert dict(first.attributes or {}) == {
        "db.system.name": "supabase",
        "db.operation.name": "select",
        "db.collection.name": "conversations",
    }
    assert second.name == "select messages"
    assert broken.name == "POST"  # left as it was: a hook never fails the request
