"""One chat call, one trace: gateway → proxy → simulator and gateway → storage.

Every service runs for real on loopback with its own Telemetry, all exporting into one
in-memory exporter. The call's spans must form one tree rooted at the gateway's
``ws call_tool chat`` SERVER span, with the right parent across every WebSocket and
HTTP hop, the client's correlation ID on every span, and no secret or prompt anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.integration.ws_gateway.stack import (
    GLM_KEY,
    KIMI_KEY,
    TOKEN,
    eventually,
    final,
    native,
    running_stack,
)
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration

CORRELATION_ID = "e2e-trace-0001"
PROMPT = "Quokka-marmalade-7731 is my private prompt"
SERVICES = {"ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator"}


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def servers_of(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if service(s) == name and s.kind is SpanKind.SERVER]


def parent_of(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return spans.get(span.parent.span_id) if span.parent is not None else None


async def test_one_chat_call_is_one_trace_across_all_four_services(
    captured: CapturedTelemetry, tmp_path: Path
) -> None:
    async with running_stack(captured, tmp_path) as stack:
        captured.exporter.clear()  # start-up work (schema creation) is not the call's
        async with native(stack.gateway) as client:
            frames = await client.run(
                "chat",
                {"prompt": PROMPT, "continuation_id": "e2e-conversation"},
                correlation_id=CORRELATION_ID,
            )
        result = final(frames)
        assert result["op"] == "call_tool_res"
        assert result["correlation_id"] == CORRELATION_ID

        async def all_server_spans_ended() -> bool:
            # get (404), create, store user message, store assistant message
            return len(servers_of(captured.spans(), "storage-adapter")) == 4

        await eventually(all_server_spans_ended)
        # The proxy attributes tokens and cost to the gateway tool (baggage `exai.tool`).
        tools = {
            attrs.get("exai.tool")
            for name in ("exai.provider.tokens", "exai.provider.cost")
            for attrs, _ in metric_points(stack.proxy_reader, name)
        }
        assert tools == {"chat"}

    spans = captured.spans()
    # One trace, and it is the one the client was told about.
    assert {format(s.context.trace_id, "032x") for s in spans} == {result["trace_id"]}
    assert {service(s) for s in spans} == SERVICES
    by_id = {s.context.span_id: s for s in spans}

    # The gateway's call span is the root.
    (root,) = [s for s in spans if s.parent is None]
    assert (root.name, root.kind, service(root)) == (
        "ws call_tool chat",
        SpanKind.SERVER,
        "ws-gateway",
    )
    gateway_clients = {
        s.context.span_id: s
        for s in spans
        if service(s) == "ws-gateway" and s.kind is SpanKind.CLIENT
    }
    assert gateway_clients and all(
        s.parent is not None and s.parent.span_id == root.context.span_id
        for s in gateway_clients.values()
    )

    # Proxy and storage server spans hang off the gateway's httpx client spans.
    (proxy_server,) = servers_of(spans, "provider-proxy")
    assert proxy_server.name == "POST /v1/chat/completions"
    storage_servers = servers_of(spans, "storage-adapter")
    assert sorted(s.name for s in storage_servers) == [
        "GET /v1/conversations/{continuation_id}",
        "POST /v1/conversations",
        "POST /v1/conversations/{continuation_id}/messages",
        "POST /v1/conversations/{continuation_id}/messages",
    ]
    for server in [proxy_server, *storage_servers]:
        assert server.parent is not None and server.parent.span_id in gateway_clients, server.name
        assert server.parent.is_remote

    # The simulator's server span hangs off the proxy's client span for attempt 1.
    (sim_server,) = servers_of(spans, "llm-simulator")
    attempt_client = parent_of(sim_server, by_id)
    assert attempt_client is not None
    assert (service(attempt_client), attempt_client.kind) == ("provider-proxy", SpanKind.CLIENT)
    attempt = parent_of(attempt_client, by_id)
    assert attempt is not None and attempt.attributes is not None
    assert attempt.attributes["exai.provider.attempt"] == 1

    # The correlation ID is on every span of every service.
    missing = [
        f"{service(s)}: {s.name}"
        for s in spans
        if (s.attributes or {}).get("exai.correlation_id") != CORRELATION_ID
    ]
    assert missing == []

    # No API key, WS token or prompt text anywhere.
    for span in spans:
        texts = [span.name, *map(str, (span.attributes or {}).values())]
        for event in span.events:
            texts += [event.name, *map(str, (event.attributes or {}).values())]
        for text in texts:
            for secret in (KIMI_KEY, GLM_KEY, TOKEN, PROMPT, "Quokka-marmalade"):
                assert secret not in text, f"{secret!r} in {service(span)} span {span.name!r}"
