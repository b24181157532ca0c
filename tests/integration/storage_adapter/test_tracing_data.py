"""Trace context and baggage stay in the traces: never stored, never sent to Supabase.

Baggage can carry anything a caller put into it (user ids, tenant names); traceparent
ties stored rows to traces. The adapter strips tracing keys from the metadata it
stores, stores nothing from request headers, and does not propagate context to
Supabase (a third party): its REST client still makes client spans.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import baggage, context, trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storage_adapter.app import supabase_http_client
from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    make_settings,
    redis_dump,
    running_adapter,
)
from tests.support.asgi import serve_app
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACING = {
    "traceparent": TRACEPARENT,
    "tracestate": "vendor=opaque",
    "Baggage": "user.email=alice@example.com",
    "b3": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
    "X-B3-TraceId": "0af7651916cd43dd8448eb211c80319c",
    "uber-trace-id": "0af7651916cd43dd:b7ad6b7169203331:0:1",
    "sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
}


async def test_tracing_keys_are_not_stored(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    headers = {"traceparent": TRACEPARENT, "baggage": "user.email=alice@example.com"}
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        created = await client.post(
            "/v1/conversations",
            json={"continuation_id": "traced", "metadata": {**TRACING, "topic": "plans"}},
            headers=headers,
        )
        assert created.status_code == 201
        assert created.json()["metadata"] == {"topic": "plans"}
        stored = await client.post(
            "/v1/conversations/traced/messages",
            json={
                "role": "assistant",
                "content": "answer",
                "idempotency_key": "traced-1",
                "metadata": {"model": "m-1", "otel": {**TRACING, "kept": 1}, **TRACING},
            },
            headers=headers,
        )
        assert stored.status_code == 201
        assert stored.json()["metadata"] == {"model": "m-1", "otel": {"kept": 1}}
        history = (await client.get("/v1/conversations/traced", headers=headers)).json()
        assert history["messages"][0]["metadata"] == {"model": "m-1", "otel": {"kept": 1}}
        cached = await redis_dump(redis_url)

    rows: list[Any] = [
        await sql_backend.scalar("SELECT metadata FROM conversations"),
        await sql_backend.scalar("SELECT metadata FROM messages"),
    ]
    for text in [*map(str, rows), cached]:
        for value in ("0af7651916cd43dd", "alice@example.com", "vendor=opaque"):
            assert value not in text


async def test_supabase_requests_carry_no_trace_context_or_baggage(
    captured: CapturedTelemetry,
) -> None:
    seen: list[httpx.Headers] = []

    async def record(request: Request) -> JSONResponse:
        seen.append(httpx.Headers(request.headers.raw))
        return JSONResponse([])

    recorder = Starlette(routes=[Route("/rest/v1/conversations", record)])
    settings = make_settings(SUPABASE_URL="http://127.0.0.1:1", SUPABASE_KEY="sb-test-key-123456")
    telemetry, _ = captured.build("storage-adapter", settings)
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with serve_app(recorder) as url:
        http = supabase_http_client(settings, telemetry)
        try:
            token = context.attach(baggage.set_baggage("user.email", "alice@example.com"))
            try:
                with tracer.start_as_current_span("request") as parent:
                    response = await http.get(f"{url}/rest/v1/conversations")
                    assert response.status_code == 200
            finally:
                context.detach(token)
        finally:
            await http.aclose()

    assert len(seen) == 1
    sent = {name.lower() for name in seen[0]}
    assert not sent & {"traceparent", "tracestate", "baggage"}, sent
    # The call is still traced on our side.
    spans = [s for s in captured.spans() if s.kind == trace.SpanKind.CLIENT]
    assert spans and spans[0].parent is not None
    assert spans[0].parent.span_id == parent.get_span_context().span_id
