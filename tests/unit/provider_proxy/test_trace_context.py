"""Trace context and baggage reach our own upstreams only; client spans are always kept."""

from __future__ import annotations

import asyncio
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


async def test_requests_through_an_egress_proxy_from_the_environment_carry_no_trace_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY is honoured (by the aiohttp transport), and what the egress proxy
    receives for a third-party API has no trace context or baggage either."""
    heads: list[bytes] = []

    async def egress(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        body = b"{}"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(egress, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = ProxySettings(
        kimi_api_key=SecretStr(KEY), kimi_base_url="http://api.third-party.example/v1"
    )
    adapter = build_adapters(settings)["kimi"]
    telemetry = setup_telemetry(
        "provider-proxy", "test", ServiceSettings(), install_global=False, configure_logs=False
    )
    client = _http_client(adapter, telemetry)
    token = context.attach(baggage.set_baggage("exai.correlation_id", "corr-42"))
    try:
        async with server:
            response = await client.post("/chat/completions", json={})
    finally:
        context.detach(token)
        await client.aclose()
    assert response.status_code == 200
    assert len(heads) == 1
    head = heads[0].decode("latin-1").lower()
    # Absolute-form request line: it went through the proxy, to the third party.
    assert head.startswith("post http://api.third-party.example/v1/chat/completions ")
    assert "traceparent" not in head and "baggage" not in head and "corr-42" not in head
    assert isinstance(client._transport, WithoutTraceContext)
