"""Trace context and baggage reach our own upstreams only; client spans are always kept."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import SecretStr

from exai_telemetry.settings import ServiceSettings
from exai_telemetry.setup import setup_telemetry
from provider_proxy.adapters import build_adapters
from provider_proxy.app import WithoutTraceContext, _http_client
from provider_proxy.settings import ProxySettings

KEY = "sk-kimi-test-0123456789"


@pytest.fixture(autouse=True)
def w3c_propagators() -> Iterator[None]:
    # What setup_telemetry installs in a service (OTel's own default is the same).
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    yield
    propagate.set_global_textmap(previous)


@pytest.mark.parametrize(("keyed", "propagated"), [(True, False), (False, True)])
async def test_headers_sent_upstream(keyed: bool, propagated: bool) -> None:
    settings = ProxySettings(kimi_api_key=SecretStr(KEY) if keyed else None)
    adapter = build_adapters(settings)["kimi"]  # keyed: api.moonshot.ai; else the simulator
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(
        "provider-proxy",
        "test",
        ServiceSettings(),
        span_exporter=exporter,
        install_global=False,
        configure_logs=False,
    )
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={})

    client = _http_client(adapter, telemetry, httpx.MockTransport(handler))
    token = context.attach(baggage.set_baggage("exai.correlation_id", "corr-42"))
    try:
        await client.post("/chat/completions", json={})
    finally:
        context.detach(token)
        await client.aclose()

    (headers,) = seen
    assert "authorization" in headers
    assert ("traceparent" in headers) is propagated
    assert ("baggage" in headers) is propagated
    # The CLIENT span is recorded either way, correlation ID included.
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST"
    assert (span.attributes or {})["exai.correlation_id"] == "corr-42"
    if propagated:
        assert format(span.context.trace_id, "032x") in headers["traceparent"]


def test_proxy_mounts_from_the_environment_are_wrapped_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.example:3128")
    adapter = build_adapters(ProxySettings(kimi_api_key=SecretStr(KEY)))["kimi"]
    telemetry = setup_telemetry(
        "provider-proxy", "test", ServiceSettings(), install_global=False, configure_logs=False
    )
    client = _http_client(adapter, telemetry)
    mounted = [t for t in client._mounts.values() if t is not None]
    assert mounted
    assert all(isinstance(t, WithoutTraceContext) for t in [client._transport, *mounted])
