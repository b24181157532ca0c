"""What the component cards read from the storage adapter: which backends are
configured, and Supabase REST calls that are database spans, not bare HTTP ones."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from exai_telemetry import names
from storage_adapter.app import supabase_http_client
from storage_adapter.models import NewMessage, utc_now
from storage_adapter.store.supabase import SupabaseStore
from storage_adapter.telemetry import DURABLE_OPERATIONS
from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    make_settings,
    running_adapter,
)
from tests.support.asgi import serve_app
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration

ROW = {
    "id": 7,
    "continuation_id": "conv-1",
    "client_id": "default",
    "title": None,
    "metadata": {},
    "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:00:00+00:00",
}


def configured(reader: Any) -> set[tuple[str, str]]:
    return {
        (a[names.DEPENDENCY], a["db.system.name"])
        for a, p in metric_points(reader, names.M_STORAGE_DEPENDENCY_CONFIGURED)
        if p.value == 1
    }


async def test_configured_backends_are_reported_and_errors_start_at_zero(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        assert configured(adapter.reader) == {("cache", "memory"), ("durable", sql_backend.name)}
        errors = {
            a[names.OPERATION]: p.value
            for a, p in metric_points(adapter.reader, names.M_STORAGE_DURABLE_ERRORS)
        }
        assert errors == dict.fromkeys(DURABLE_OPERATIONS, 0)
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        assert configured(adapter.reader) == {("cache", "redis"), ("durable", sql_backend.name)}


async def test_supabase_rest_calls_are_database_spans(captured: CapturedTelemetry) -> None:
    async def conversations(request: Request) -> JSONResponse:
        return JSONResponse([ROW] if request.method == "GET" else [])

    async def messages(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse([])
        body = await request.json()
        return JSONResponse([{**body, "id": 1}], status_code=201)

    postgrest = Starlette(
        routes=[
            Route("/rest/v1/conversations", conversations, methods=["GET", "POST", "PATCH"]),
            Route("/rest/v1/messages", messages, methods=["GET", "POST"]),
        ]
    )
    async with serve_app(postgrest) as url:
        settings = make_settings(SUPABASE_URL=url, SUPABASE_KEY="sb-test-key-123456")
        telemetry, _ = captured.build("storage-adapter", settings)
        store = await SupabaseStore.connect(
            url, "sb-test-key-123456", timeout_s=5, http=supabase_http_client(settings, telemetry)
        )
        try:
            history = await store.load_history("conv-1", 10)
            assert history is not None and history.conversation.id == 7
            message = NewMessage("user", "hello", "key-1", {})
            await store.append_message("conv-1", "default", message, utc_now())
        finally:
            await store.close()

    clients = [s for s in captured.spans_of("storage-adapter") if s.kind == SpanKind.CLIENT]
    described = [
        (
            s.name,
            (s.attributes or {}).get("db.system.name"),
            (s.attributes or {}).get("db.operation.name"),
            (s.attributes or {}).get("db.collection.name"),
        )
        for s in clients
    ]
    assert described == [
        ("select conversations", "supabase", "select", "conversations"),
        ("select messages", "supabase", "select", "messages"),
        ("upsert conversations", "supabase", "upsert", "conversations"),
        ("select conversations", "supabase", "select", "conversations"),
        ("upsert messages", "supabase", "upsert", "messages"),
        ("update conversations", "supabase", "update", "conversations"),
    ]
    # Still HTTP underneath: the request's method and address stay on the span.
    assert all((s.attributes or {}).get("http.request.method") for s in clients)
