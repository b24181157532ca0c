from __future__ import annotations

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry import context, trace

from exai_telemetry.correlation import (
    CORRELATION_HEADER,
    correlation_headers,
    current_correlation_id,
    current_tool_label,
    normalize_correlation_id,
    with_correlation_id,
    with_tool,
)
from exai_telemetry.http_service import add_health_routes, instrument_app
from tests.support.telemetry import CapturedTelemetry


def test_every_span_under_the_baggage_carries_the_correlation_id(
    captured: CapturedTelemetry,
) -> None:
    telemetry, _ = captured.build("svc")
    tracer = telemetry.tracer("t")
    token = context.attach(with_correlation_id("corr-123"))
    try:
        with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
            pass
    finally:
        context.detach(token)
    with tracer.start_as_current_span("unrelated"):
        pass
    by_name = {s.name: s for s in captured.spans()}
    assert by_name["parent"].attributes["exai.correlation_id"] == "corr-123"
    assert by_name["child"].attributes["exai.correlation_id"] == "corr-123"
    assert "exai.correlation_id" not in by_name["unrelated"].attributes


def test_span_started_with_explicit_parent_context_gets_its_baggage(
    captured: CapturedTelemetry,
) -> None:
    telemetry, _ = captured.build("svc")
    with telemetry.tracer("t").start_as_current_span("x", context=with_correlation_id("abc")):
        pass
    assert captured.spans()[0].attributes["exai.correlation_id"] == "abc"


def test_a_child_that_lost_the_baggage_takes_its_parent_spans_id(
    captured: CapturedTelemetry,
) -> None:
    # As SQLAlchemy's pool connects do: the parent span is known, the baggage is not.
    telemetry, _ = captured.build("svc")
    tracer = telemetry.tracer("t")
    parent = tracer.start_span("parent", context=with_correlation_id("corr-9"))
    token = context.attach(trace.set_span_in_context(parent, context.Context()))
    try:
        with tracer.start_as_current_span("child"):
            pass
    finally:
        context.detach(token)
        parent.end()
    by_name = {s.name: s for s in captured.spans()}
    assert by_name["child"].attributes["exai.correlation_id"] == "corr-9"


def test_headers_follow_the_current_baggage() -> None:
    assert correlation_headers() == {}
    token = context.attach(with_correlation_id("id-1"))
    try:
        assert current_correlation_id() == "id-1"
        assert correlation_headers() == {CORRELATION_HEADER: "id-1"}
    finally:
        context.detach(token)


def test_client_ids_are_accepted_only_when_safe() -> None:
    assert normalize_correlation_id("req-42_a.b:c") == "req-42_a.b:c"
    assert normalize_correlation_id("") is None
    assert normalize_correlation_id("x" * 129) is None
    assert normalize_correlation_id("has space") is None
    assert normalize_correlation_id('inj"ect\n') is None
    # `$` also matches before a final newline: a header-splitting id must not pass.
    assert normalize_correlation_id("abc\n") is None
    assert normalize_correlation_id(42) is None


async def test_health_probes_are_not_traced_but_lookalike_paths_are(
    captured: CapturedTelemetry,
) -> None:
    telemetry, _ = captured.build("svc")
    app = FastAPI()

    @app.get("/v1/conversations/{cid}")
    async def conversation(cid: str) -> dict[str, str]:
        return {"id": cid}

    add_health_routes(app, list, "1")
    instrument_app(app, telemetry)
    async with AsyncClient(transport=ASGITransport(app), base_url="http://svc") as client:
        for path in ("/health", "/health/live", "/health/ready", "/v1/conversations/healthcare-1"):
            assert (await client.get(path)).status_code == 200
    names = [s.name for s in captured.spans()]
    assert names == ["GET /v1/conversations/{cid}"]


def test_tool_label_for_metrics_is_bounded() -> None:
    assert current_tool_label(with_tool("consensus")) == "consensus"
    # No baggage: a client that called the proxy directly.
    assert current_tool_label() == "direct"
    # Baggage is client-controlled on the proxy's port: anything else is one value.
    assert current_tool_label(with_tool("drop table; " + "x" * 500)) == "other"
