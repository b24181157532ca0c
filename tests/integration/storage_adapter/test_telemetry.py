"""Spans: DB and Redis client spans under the request's server span, never content."""

from __future__ import annotations

import json
import uuid

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    make_settings,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_db_and_redis_spans_are_children_without_content(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    secret = f"private-text-{uuid.uuid4().hex}"
    correlation_id = f"corr-{uuid.uuid4().hex[:8]}"
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    # As after a Redis restart: no script is cached on the server.
    async with aioredis.from_url(redis_url) as admin:
        await admin.script_flush()
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        headers = {"X-Correlation-ID": correlation_id}
        await client.post(
            "/v1/conversations",
            json={"continuation_id": "tele-conv", "title": secret, "metadata": {"s": secret}},
            headers=headers,
        )
        stored = await client.post(
            "/v1/conversations/tele-conv/messages",
            json={"role": "user", "content": secret, "idempotency_key": f"key-{secret}"},
            headers=headers,
        )
        assert stored.status_code == 201
        await client.get("/v1/conversations/tele-conv", headers=headers)  # miss + fill
        await client.get("/v1/conversations/tele-conv", headers=headers)  # hit

    spans = captured.spans_of("storage-adapter")
    by_id = {s.context.span_id: s for s in spans}
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == 4
    for server in servers:
        assert server.attributes is not None
        assert server.attributes["exai.continuation_id"] == "tele-conv"

    request_traces = {s.context.trace_id for s in servers}
    db_system = sql_backend.name
    db_spans = [
        s
        for s in spans
        if s.attributes
        and s.attributes.get("db.system.name") == db_system
        and s.context.trace_id in request_traces
    ]
    redis_spans = [
        s for s in spans if s.attributes and s.attributes.get("db.system.name") == "redis"
    ]
    assert db_spans and redis_spans
    for client_span in db_spans + redis_spans:
        assert client_span.kind == SpanKind.CLIENT
        parents = _ancestors(client_span, by_id)
        assert parents and parents[-1].kind == SpanKind.SERVER, client_span.name
        assert client_span.attributes is not None
        assert client_span.attributes["exai.correlation_id"] == correlation_id

    placeholder = "$1" if db_system == "postgresql" else "?"
    inserts = [
        str(s.attributes.get("db.query.text"))
        for s in db_spans
        if s.attributes and "INSERT INTO messages" in str(s.attributes.get("db.query.text"))
    ]
    assert inserts and all(placeholder in statement for statement in inserts)
    for span in redis_spans:
        assert span.attributes is not None
        assert set(str(span.attributes["db.query.text"]).split()) - {"?"} <= {
            "EVAL",
            "HGETALL",
            "ZRANGE",
            "GET",
        }
        # No NOSCRIPT round trip: a healthy Redis never shows a failed command.
        assert span.status.status_code != StatusCode.ERROR, span.attributes

    # Content, title and metadata appear nowhere: attributes, events, names.
    for span in spans:
        assert secret not in json.dumps(json.loads(span.to_json())), span.name

    # The GET that hit the cache never touched the database.
    last_get = max(
        (s for s in servers if s.name.startswith("GET")), key=lambda s: s.start_time or 0
    )
    assert not [s for s in db_spans if s.context.trace_id == last_get.context.trace_id]


async def test_health_probes_make_no_spans(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        captured.exporter.clear()
        for path in ("/health", "/health/ready", "/health/live"):
            assert (await adapter.client.get(path)).status_code == 200
        assert [s.name for s in captured.spans()] == []
